/**
 * fastify-policy-cache: a multi-tenant RBAC policy cache for Fastify 5, kept consistent across
 * instances by signed webhooks and a revision-numbered changelog.
 *
 *   route → PolicyCache → PolicyStore (one transaction) → own cache → Broadcaster → peers' receiver
 */
import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import type { PolicyCacheApi } from './api.js'
import { Broadcaster } from './broadcast/broadcaster.js'
import { PeerList } from './broadcast/peer-list.js'
import { PeerSet } from './broadcast/peer-set.js'
import { createBrokerTransport } from './broadcast/brokers.js'
import type { Transport, TransportSink } from './broadcast/transport.js'
import { WebhookTransport } from './broadcast/webhook-transport.js'
import { AntiEntropy } from './cache/anti-entropy.js'
import { InvalidOptionError } from './errors.js'
import { guardRoutes, refuseUnguarded } from './guard.js'
import { resolveOptions, type PolicyCacheOptions, type ResolvedOptions } from './options.js'
import { PolicyCache } from './policy-cache.js'
import { Membership } from './membership/membership.js'
import { PolicyMetrics } from './metrics.js'
import { BoardHub } from './board/hub.js'
import { mountRoutes } from './routes/mount.js'
import { startupTimeout, startWithin } from './startup.js'
import { createSqliteDb, isPolicyStore, KyselyPolicyStore, type PolicyStore } from './store/index.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The policy engine: checks, writes, views and peer status, without HTTP (see {@link PolicyCacheApi}). */
    policyCache: PolicyCacheApi
  }
}

function createStore (opts: ResolvedOptions): { store: PolicyStore, owned: boolean } {
  if (isPolicyStore(opts.db)) return { store: opts.db, owned: false }
  const common = { tablePrefix: opts.tablePrefix, changelogRetention: opts.changelogRetention }
  if (opts.db !== undefined) return { store: new KyselyPolicyStore({ db: opts.db, ...common, ownsDb: false }), owned: true }
  let db
  try {
    db = createSqliteDb(opts.sqliteFile)
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code
    if (typeof code === 'string' && code.startsWith('FST_POLICY_CACHE_')) throw err
    throw new InvalidOptionError('sqliteFile', `cannot open ${JSON.stringify(opts.sqliteFile)}: ${(err as Error).message}`, { cause: err })
  }
  return { store: new KyselyPolicyStore({ db, ...common, ownsDb: true }), owned: true }
}

const policyCache: FastifyPluginAsync<PolicyCacheOptions & { prefix?: string }> = async (fastify, options) => {
  const opts = resolveOptions(options)
  const startupTimeoutMs = startupTimeout(fastify, options.startupTimeoutMs, opts.startupTimeoutMs)
  const log = fastify.log.child({ plugin: 'policy-cache' })
  const peerList = new PeerList({ peers: opts.peers, dropped: opts.droppedPeers, publicUrl: opts.publicUrl, log })

  // Before anything that needs closing: a function-valued `peers` that rejects fails registration here.
  const peers = await peerList.resolve()
  // Before the store: a registry conflict fails registration with nothing to close.
  const metrics: PolicyMetrics | undefined = opts.metrics === undefined
    ? undefined
    : new PolicyMetrics({
      registry: opts.metrics.registry,
      prefix: opts.metrics.prefix,
      // Read at scrape time, through the decorator.
      sources: {
        stats: () => fastify.policyCache.stats(),
        peers: () => fastify.policyCache.peers(),
        cachedRevisions: (limit) => fastify.policyCache.cachedRevisions(limit),
        transport: () => transport.status()
      }
    })
  let created: ReturnType<typeof createStore>
  // Built before the store: a missing `pg` fails registration with nothing to close.
  let brokerTransport: Transport | undefined
  // With membership on, the nats transport waits for the live members (kept here by onChange below).
  let liveMembers: readonly string[] = []
  try {
    brokerTransport = createBrokerTransport(opts.transport, {
      serverId: opts.serverId,
      databaseId: (): string | undefined => engine.databaseId,
      publicUrl: opts.publicUrl,
      keys: opts.keys,
      ackTimeoutMs: opts.ackTimeoutMs,
      members: opts.membership === undefined ? undefined : () => liveMembers,
      log
    })
    created = createStore(opts)
  } catch (err) {
    // The host's registry must not keep this instance's metric names.
    metrics?.close()
    throw err
  }
  const { store, owned } = created
  const incarnation = randomUUID()
  const board = opts.board === undefined
    ? undefined
    : new BoardHub({
      serverId: opts.serverId,
      url: opts.publicUrl ?? null,
      incarnation: opts.membership === undefined ? null : incarnation,
      keys: opts.keys,
      path: opts.board.path,
      maxStreams: opts.board.maxStreams,
      intervalMs: opts.board.intervalMs,
      closing: () => engine.closing,
      peers: () => engine.peers(),
      cachedRevision: (tenant) => engine.cachedRevision(tenant),
      cachedRevisions: (limit) => engine.cachedRevisions(limit),
      transport: () => transport.status(),
      log
    })
  const broadcaster = new Broadcaster({
    serverId: opts.serverId,
    // Known once the engine started (migrated the store), before any write can be made.
    databaseId: (): string | undefined => engine.databaseId,
    publicUrl: opts.publicUrl,
    keys: [...opts.keys],
    peers,
    requestTimeoutMs: opts.requestTimeoutMs,
    ackTimeoutMs: opts.ackTimeoutMs,
    retry: opts.retry,
    circuitBreaker: opts.circuitBreaker,
    log,
    observe: metrics === undefined && board === undefined
      ? undefined
      : (event) => { metrics?.observe(event); board?.observe(event) }
  })
  // How notices travel (docs/transports.md): the broadcaster behind the interface, or a broker.
  const transport: Transport = brokerTransport ?? new WebhookTransport({ broadcaster, annotate: (statuses) => peerSet.annotate(statuses) })
  // What every transport hands the engine: the webhook receiver's path for verified notices.
  const sink: TransportSink = {
    deliver: (notice) => engine.noticed(notice.entries, notice),
    hint: async (tenants) => {
      // Nothing carried, no digest: a cached tenant behind the revision named reads the changelog.
      await engine.noticed(tenants.map(({ tenant, revision }) => ({ tenant, revision, digest: undefined, carried: undefined })))
    },
    resubscribed: async () => {
      const { behind, repaired } = await engine.sync()
      if (behind.length > 0 || repaired.length > 0) log.info({ behind, repaired }, 'policy-cache: resync after (re)subscribing caught up tenants')
    }
  }
  // Started once the engine exists, below.
  const antiEntropy = new AntiEntropy({ intervalMs: opts.syncIntervalMs, sync: () => engine.sync(), log })
  // Membership (docs/membership.md): registered before the server listens; its live set joins the seeds.
  const membershipStore = opts.membership === undefined ? undefined : store.membership
  let membership: Membership | undefined
  if (opts.membership !== undefined && membershipStore !== undefined && opts.publicUrl !== undefined) {
    membership = new Membership({
      store: membershipStore,
      self: { serverId: opts.serverId, url: opts.publicUrl, incarnation },
      ...opts.membership,
      onChange: (members) => {
        liveMembers = members.map((member) => member.serverId)
        peerSet.setMembers(members)
      },
      onJoined: () => catchUpAfterJoin(),
      log
    })
  }
  const peerSet = new PeerSet({
    seeds: peerList,
    initialSeeds: peers,
    refreshMs: opts.peerRefreshMs,
    apply: (urls) => broadcaster.setPeers(urls),
    heartbeatAgeMs: membership === undefined ? undefined : (member) => membership.heartbeatAgeMs(member),
    log
  })
  // Join without a gap: a writer that has not polled since this instance joined may commit a change
  // it does not send here. Every writer whose database answers has polled within 1.1 × pollMs; one
  // sync pass after twice that catches up whatever this instance cached meanwhile.
  let joinCatchUp: NodeJS.Timeout | undefined
  const catchUpAfterJoin = (): void => {
    if (opts.membership === undefined) return
    clearTimeout(joinCatchUp)
    joinCatchUp = setTimeout(() => {
      engine.sync().catch((err: unknown) => log.warn({ err }, 'policy-cache: the catch-up pass after joining failed; the sync heals'))
    }, 2.2 * opts.membership.pollMs + 100)
    joinCatchUp.unref()
  }

  // One onClose, tearing down in reverse order and only what the plugin created.
  fastify.addHook('onClose', async () => {
    antiEntropy.stop()
    clearTimeout(joinCatchUp)
    await peerSet.stop()
    await membership?.close()
    await transport.close()
    // The webhook transport closed it already; with another transport it only served announcements.
    await broadcaster.close()
    if (owned) await store.close()
    metrics?.close()
  })

  const engine = new PolicyCache({
    store,
    notifier: {
      // With metrics, a write handed to the broadcaster starts its propagation clock.
      notify: (changes) => { metrics?.committed(changes); board?.committed(changes); return transport.publish(changes) },
      status: () => transport.peers(),
      inTransaction: transport.inTransaction
    },
    serverId: opts.serverId,
    maxTenants: opts.maxTenants,
    catchUpTimeoutMs: opts.catchUpTimeoutMs,
    writeTimeoutMs: opts.writeTimeoutMs,
    maxBatchChanges: opts.maxBatchChanges,
    maxBatchChecks: opts.maxBatchChecks,
    maxImportFacts: opts.maxImportFacts,
    watch: opts.watch,
    log,
    identify: opts.identify,
    leave: async () => {
      // Live board streams end first: an open one would hold app.close() up.
      board?.close()
      await membership?.leave()
    }
  })
  // One preClose: a graceful close (`drain`, README "Start and stop") refuses new writes, leaves the membership
  // — writers stop sending here at their next poll — and waits for the writes in flight.
  fastify.addHook('preClose', async () => {
    await engine.drain()
  })
  await startWithin(startupTimeoutMs, async () => {
    await engine.start()
    // Subscribed before anything is loaded: a change committed after a tenant's load is noticed.
    await transport.start(sink)
    await membership?.join()
    await engine.warm(opts.preload)
  })
  fastify.decorate<PolicyCacheApi>('policyCache', engine)
  // fastify-plugin: this hook lives in the host's scope, so it sees the routes the host (and its
  // child plugins) declare after registering this plugin.
  fastify.addHook('onRoute', guardRoutes(engine, opts.identify))

  antiEntropy.start()
  peerSet.start()
  membership?.start()

  await mountRoutes(fastify, {
    engine,
    opts,
    metrics,
    prefix: options.prefix,
    onContact: (origin, url) => broadcaster.contact(origin, url),
    membership: membership === undefined ? undefined : () => membership.status().state,
    transport: () => transport.status(),
    deliver: transport instanceof WebhookTransport ? (notice) => transport.receive(notice) : sink.deliver,
    board
  })
  // Once listening, tell the peers: one that gave up on this instance while it restarted (its
  // circuit open) delivers to it again at once instead of after the cool-down.
  // (Fastify runs onListen hooks after `listen()` has resolved: a peer that does not answer delays
  // nothing. `announce` never rejects.)
  fastify.addHook('onListen', async () => { await broadcaster.announce() })
  // Last, so that the plugin's own routes do without it: a host route declaring config.policy that
  // the onRoute hook above did not see is refused, never served unguarded.
  fastify.addHook('onRequest', refuseUnguarded())
}

/** The plugin, wrapped by fastify-plugin: its decorator and hooks reach the host's scope. */
const plugin = fp(policyCache, { name: 'fastify-policy-cache', fastify: '5.x' })
export default plugin
export { plugin as policyCache }
export { DEFAULTS } from './defaults.js'
export type { PolicyCacheApi } from './api.js'
export { dnsPeers, type DnsPeersOptions, type DnsPeersFamily } from './broadcast/dns-peers.js'
export type { PolicyCacheOptions, PeersOption, RoutesOption, PolicyRoutesOption, OpsRoutesOption } from './options.js'
export type { WriteOutcome, BatchOutcome, ChangesFeed, ChangesOptions, Decision, TenantView, UserView, CheckOptions } from './policy-cache.js'
export type { AccessCheck, CheckBatchOutcome, GroupsPage, GroupUsersPage, GroupPermissionsPage, HoldersPage } from './policy-cache.js'
export type { ImportDocument, TenantDeletion, TenantsOptions, TenantsPage } from './policy-cache.js'
export type { HeldGrant, Holder } from './cache/tenant-state.js'
export type { PageOptions } from './page.js'
export type { CacheStats } from './cache/tenant-cache.js'
export type { EngineStats } from './policy-cache.js'
export type { Watch, WatchEvent, WatchEnd, WatchOptions } from './cache/watchers.js'
export type { MetricsRegistry } from './metrics.js'
export type { Identity, IdentifyFunction } from './guard.js'
export type { PolicyStore, ReplaceResult } from './store/types.js'
export type { AuditEntry, BatchChange, Change, ChangesPage, LoggedChange, Operation, GroupData, TenantDocument, TenantSnapshot, TenantSummary, TenantVersion, WriteOptions, WriteResult } from './model.js'
export { replaceChanges } from './model.js'
export type { ChangelogRetention } from './store/index.js'
export { EMPTY_DIGEST, digestOf, updateDigest, type Fact } from './digest.js'
export type { Notice, NoticeChange, NoticeReply } from './broadcast/notice.js'
export type { AckSummary, PeerStatus } from './broadcast/status.js'
export type { TransportStatus, TransportType } from './broadcast/transport.js'
export type { BoardOption } from './options.js'
export type { BoardMember, BoardSnapshot, MemberReport, PropagationSample } from './board/hub.js'
export type { TransportOption, PgNotifyTransportOption, NatsTransportOption, RedisTransportOption } from './options.js'
export type { StoreWriteOptions, WriteTransaction } from './store/types.js'
export { KyselyPolicyStore, createSqliteDb } from './store/index.js'
export * as errors from './errors.js'
