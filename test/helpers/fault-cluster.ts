/**
 * A fault-injection cluster for model-based consistency tests: several policy engines in one process,
 * each with its own store on ONE shared database, whose notices pass through a controllable network
 * that can drop, duplicate, delay and hold back (then reorder) them, partition an instance, and crash
 * an instance between commit and notify. Each engine also runs the anti-entropy sync on a timer, as
 * the plugin does, and counts its rounds so that a test can wait for "one sync interval" by events.
 *
 * The network delivers a notice by calling the receiving engine's `noticed` — exactly what the
 * webhook route does after verifying a signature — so what is under test is the consistency protocol
 * (catch-up, coalescing, monotonic revisions, anti-entropy), not HTTP (test/system/cluster.test.ts does that).
 *
 * With `transport` (test/helpers/fault-transports.ts), the notices travel over a real transport
 * instead — pg-notify, nats or redis — and the same faults are injected between the transport's
 * receipt (its sink, after verification) and the engine: a notice meets the faults in force when
 * it was sent, as in process. A crash then means what it can mean on that transport (see
 * {@link FaultyNetwork.transportNotifier}).
 */
import { EventEmitter, once } from 'node:events'
import type { Kysely } from 'kysely'
import { decodeEntry, type NoticeChange, type NoticeEntry, type NoticeReply, type ReceivedNotice } from '../../lib/broadcast/notice.js'
import type { AckSummary, PeerStatus } from '../../lib/broadcast/status.js'
import type { Transport, TransportSink } from '../../lib/broadcast/transport.js'
import type { LoggedChange } from '../../lib/model.js'
import { PolicyCache, type NoticeSender, type Notifier } from '../../lib/policy-cache.js'
import { createSqliteDb, KyselyPolicyStore, type PolicyStore } from '../../lib/store/index.js'

/** What the network does to notices sent while it is set so. */
export type Fault = 'none' | 'drop' | 'duplicate' | 'delay' | 'hold'

/** A small seeded PRNG (mulberry32), so a run's delays and orders follow from its seed. */
export function seededRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** One notice on its way from instance `from` to instance `to`. */
interface Envelope { from: number, to: number, entries: readonly NoticeEntry[], sender?: NoticeSender }

type Revisions = NoticeReply['revisions']

/** A notice entry as a transport handed it to the fault layer of instance `to`, before any fault. */
export interface Receipt {
  to: number
  origin: string
  tenant: string
  revision: number
  carried: LoggedChange | undefined
}

/** What a transport's sink throws for a notice the faults kept from the engine: no acknowledgement. */
export class NotDeliveredError extends Error {
  constructor () {
    super('kept from the engine by a fault')
  }
}

/** The key of one write's notice. */
function noticeKey (origin: string, tenant: string, revision: number): string {
  return `${origin}/${tenant}/${revision}`
}

/** Thrown by a crashed instance's notifier: the write committed, the notice never left. */
export class CrashedError extends Error {
  constructor (instance: number) {
    super(`instance ${instance} crashed between commit and notify`)
  }
}

export interface NetworkStats {
  sent: number
  delivered: number
  dropped: number
  duplicated: number
  delayed: number
  held: number
  failed: number
  /** Writes a crashed instance committed but never sent (in process, nats, redis), or whose NOTIFY went out with the commit (pg-notify). */
  crashedAfterCommit: number
  /** Writes a crashed instance lost whole, change and NOTIFY rolled back together (pg-notify only). */
  crashedBeforeCommit: number
}

/** The controllable transport between the engines. */
export class FaultyNetwork {
  /** What happens to notices sent from now on. */
  mode: Fault = 'none'
  /** Instances cut off: nothing reaches them and nothing they send gets out. */
  readonly partitioned = new Set<number>()
  /** Instances whose notifier throws after the commit (a crash between commit and notify). */
  readonly crashed = new Set<number>()
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, delayed: 0, held: 0, failed: 0, crashedAfterCommit: 0, crashedBeforeCommit: 0 }
  /** Over a transport: every notice entry a transport received, in order of receipt. */
  readonly receipts: Receipt[] = []
  /** Over a transport: the writes (`origin/tenant/revision`) whose notice a crash kept from being sent. */
  readonly unsent = new Set<string>()
  /** Over a transport: the mode each write's notice was sent under (by `origin/tenant/revision`). */
  readonly #sentUnder = new Map<string, Fault>()
  /** Over pg-notify: crashed writes so far; every other one dies before its commit, the rest after it. */
  #crashes = 0
  readonly #engines: PolicyCache[]
  readonly #random: () => number
  readonly #maxDelayMs: number
  #held: Envelope[] = []
  readonly #inFlight = new Set<Promise<unknown>>()

  constructor (engines: PolicyCache[], random: () => number, maxDelayMs: number) {
    this.#engines = engines
    this.#random = random
    this.#maxDelayMs = maxDelayMs
  }

  /** The notifier of instance `from`: sends to every other instance through the faults. */
  notifier (from: number): Notifier {
    return {
      notify: async (changes: NoticeChange[]): Promise<AckSummary> => {
        const total = this.#engines.length - 1
        if (this.crashed.has(from)) {
          this.stats.crashedAfterCommit++
          throw new CrashedError(from)
        }
        const entries = changes.map(decodeEntry)
        const acks = await Promise.all(this.#engines.map((_engine, to) =>
          to === from ? Promise.resolve(undefined) : this.#send({ from, to, entries }, this.mode)))
        return { acked: acks.filter((revisions) => revisions !== undefined).length, total }
      },
      status: (): PeerStatus[] => []
    }
  }

  /**
   * The notifier of instance `from` over a real transport. Each write's notice is stamped with the
   * mode in force when it is sent; the receivers' sinks ({@link FaultyNetwork.received}) apply it.
   * A crashed instance:
   *  - transports that publish after the commit (nats, redis): the write commits, `notify` throws
   *    before `publish` — the notice is never sent (recorded in `unsent`); the sync heals;
   *  - a transport that publishes inside the transaction (pg-notify): the process dies either before
   *    the commit (its NOTIFY is rolled back with the change: nothing committed, nothing sent) or
   *    after it (`notify` throws, but PostgreSQL delivered the NOTIFY with the commit) — in turn, so
   *    that both happen in every run with two crashed writes. Nothing in between can be lost.
   */
  transportNotifier (from: number, transport: Transport): Notifier {
    const publishing = transport.inTransaction
    const origin = (): string => this.#engines[from].serverId
    const stamp = (changes: NoticeChange[]): void => {
      for (const change of changes) this.#sentUnder.set(noticeKey(origin(), change.tenant, change.revision), this.mode)
    }
    return {
      notify: async (changes: NoticeChange[]): Promise<AckSummary> => {
        if (this.crashed.has(from)) {
          this.stats.crashedAfterCommit++
          if (publishing === undefined) for (const change of changes) this.unsent.add(noticeKey(origin(), change.tenant, change.revision))
          throw new CrashedError(from)
        }
        if (publishing === undefined) stamp(changes)
        return await transport.publish(changes)
      },
      status: () => transport.peers(),
      inTransaction: publishing === undefined
        ? undefined
        : async (tx, changes) => {
          stamp(changes)
          await publishing(tx, changes)
          if (this.crashed.has(from) && this.#crashes++ % 2 === 0) {
            this.stats.crashedBeforeCommit++
            throw new CrashedError(from)
          }
        }
    }
  }

  /**
   * What instance `to`'s transport sink does with a verified notice: recorded as received, then
   * through the faults of the mode it was sent under, to the engine. Resolves with the engine's
   * revisions when it was delivered at once (the nats transport then replies: an acknowledgement);
   * rejects with {@link NotDeliveredError} otherwise (dropped, partitioned, delayed or held: no reply).
   */
  async received (to: number, notice: ReceivedNotice): Promise<Revisions> {
    const from = this.#engines.findIndex((engine) => engine.serverId === notice.origin)
    for (const { tenant, revision, carried } of notice.entries) this.receipts.push({ to, origin: notice.origin, tenant, revision, carried })
    const [first] = notice.entries
    const mode = this.#sentUnder.get(noticeKey(notice.origin, first.tenant, first.revision)) ?? 'none'
    const revisions = await this.#send({ from, to, entries: notice.entries, sender: notice }, mode)
    if (revisions === undefined) throw new NotDeliveredError()
    return revisions
  }

  /** The sink of instance `to`'s transport: notices through the faults; hints and resyncs straight to its engine. */
  sink (to: number): TransportSink {
    const engine = this.#engines[to]
    return {
      deliver: (notice) => this.received(to, notice),
      hint: async (tenants) => { await engine.noticed(tenants.map(({ tenant, revision }) => ({ tenant, revision, digest: undefined, carried: undefined }))) },
      resubscribed: async () => { await engine.sync() }
    }
  }

  /** Delivers the held-back notices in the order `order` gives (indices into a shrinking list): a reordering. */
  release (order: number[]): void {
    const held = this.#held
    this.#held = []
    for (const pick of order) {
      if (held.length === 0) break
      const [envelope] = held.splice(pick % held.length, 1)
      this.#track(this.#deliver(envelope))
    }
    for (const envelope of held) this.#track(this.#deliver(envelope))
  }

  /** Faults stop: no more drops, partitions or crashes. Held notices stay held until `release`. */
  heal (): void {
    this.mode = 'none'
    this.partitioned.clear()
    this.crashed.clear()
  }

  /** Resolves once every delayed or released delivery has landed (or failed). */
  async quiesce (): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight])
  }

  /**
   * Sends one envelope under `mode`; resolves with the receiver's revisions when it was delivered at
   * once (an acknowledgement), undefined otherwise.
   */
  async #send (envelope: Envelope, mode: Fault): Promise<Revisions | undefined> {
    this.stats.sent++
    switch (mode) {
      case 'drop':
        this.stats.dropped++
        return undefined
      case 'duplicate': {
        this.stats.duplicated++
        const [first, second] = await Promise.all([this.#deliver(envelope), this.#deliver(envelope)])
        return second === undefined ? undefined : first
      }
      case 'delay':
        this.stats.delayed++
        this.#track(new Promise((resolve) => setTimeout(resolve, this.#random() * this.#maxDelayMs)).then(() => this.#deliver(envelope)))
        return undefined
      case 'hold':
        this.stats.held++
        this.#held.push(envelope)
        return undefined
      default:
        return await this.#deliver(envelope)
    }
  }

  /** What the receiver does: catch up, then acknowledge. A partition or a failure is no acknowledgement. */
  async #deliver ({ from, to, entries, sender }: Envelope): Promise<Revisions | undefined> {
    if (this.partitioned.has(from) || this.partitioned.has(to)) {
      this.stats.dropped++
      return undefined
    }
    try {
      const revisions = await this.#engines[to].noticed(entries, sender)
      this.stats.delivered++
      return revisions
    } catch {
      this.stats.failed++
      return undefined
    }
  }

  #track (promise: Promise<unknown>): void {
    this.#inFlight.add(promise)
    promise.finally(() => this.#inFlight.delete(promise)).catch(() => {})
  }
}

/**
 * A store whose answers arrive after a random delay (read first, delivered late): a database across
 * a network. It makes loads, catch-ups, reloads and notices interleave as they do in production.
 */
function laggy (store: PolicyStore, random: () => number, maxMs: number): PolicyStore {
  const late = async <T>(answer: Promise<T>): Promise<T> => {
    const value = await answer
    await new Promise((resolve) => setTimeout(resolve, random() * maxMs))
    return value
  }
  return {
    migrate: () => store.migrate(),
    databaseId: () => store.databaseId(),
    // With the options: a transport publishing inside the transaction (pg-notify) is called there.
    write: (tenant, change, origin, options) => late(store.write(tenant, change, origin, options)),
    snapshot: (tenant) => late(store.snapshot(tenant)),
    changesSince: (tenant, revision) => late(store.changesSince(tenant, revision)),
    changes: (tenant, after, limit) => late(store.changes(tenant, after, limit)),
    revisions: (tenants) => late(store.revisions(tenants)),
    tenants: (after, limit) => late(store.tenants(after, limit)),
    importTenant: (tenant, groups, origin) => late(store.importTenant(tenant, groups, origin)),
    deleteTenant: (tenant, origin) => late(store.deleteTenant(tenant, origin)),
    ping: () => store.ping(),
    close: () => store.close(),
    notifies: store.notifies
  }
}

/** One engine's anti-entropy timer: `syncIntervalMs` ± 10 %, rounds counted. */
class SyncLoop extends EventEmitter {
  started = 0
  completed = 0
  errors = 0
  #timer: NodeJS.Timeout | undefined
  #stopped = false

  constructor (readonly engine: PolicyCache, readonly intervalMs: number, readonly random: () => number) {
    super()
    this.#schedule()
  }

  #schedule (): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.started++
      this.engine.sync()
        .catch(() => { this.errors++ })
        .finally(() => {
          this.completed++
          this.emit('round')
          this.#schedule()
        })
    }, this.intervalMs * (0.9 + this.random() * 0.2))
  }

  /**
   * Resolves when a round that starts after this call has completed: what "within one sync interval"
   * means, counted in rounds instead of measured in time. Rejects after `capMs` (a hung sync).
   */
  async nextRound (capMs: number): Promise<void> {
    const target = this.started + 1
    const cap = setTimeout(() => this.emit('error', new Error(`no sync round completed within ${capMs} ms`)), capMs)
    try {
      while (this.completed < target) await once(this, 'round')
    } finally {
      clearTimeout(cap)
    }
  }

  stop (): void {
    this.#stopped = true
    clearTimeout(this.#timer)
  }
}

export interface FaultClusterOptions {
  /** How many engines. Default 3. */
  instances?: number
  /** Anti-entropy interval of every engine. */
  syncIntervalMs: number
  /** Seed of the network's delays. */
  seed: number
  /** Longest delay of a delayed notice. Default 20. */
  maxDelayMs?: number
  /** Longest delay of a database answer (see `laggy`). Default 3. */
  maxDbDelayMs?: number
  /** The shared database; default a fresh in-memory SQLite (closed by `close`). */
  db?: Kysely<any>
  /** Table prefix on `db`. Default `policy_`. */
  tablePrefix?: string
  /** Notices over this real transport instead of in process. */
  transport?: FaultTransport
}

/** How a fault cluster's instances send their notices over a real transport (test/helpers/fault-transports.ts). */
export interface FaultTransport {
  /** Which one, for messages. */
  name: string
  /** The transport of the instance `serverId`; `databaseId` reads its engine's database id. */
  create (serverId: string, databaseId: () => string | undefined): Transport
}

export interface FaultCluster {
  engines: PolicyCache[]
  /** The real transports, one per engine; empty in process. */
  transports: Transport[]
  network: FaultyNetwork
  /** A store of its own on the shared database: the ground truth. */
  truth: KyselyPolicyStore
  /** Resolves when every engine completed a sync round that started after this call. */
  nextSyncRound (capMs?: number): Promise<void>
  /** Stops the timers, lets in-flight deliveries land, closes what the cluster created. */
  close (): Promise<void>
}

export async function startFaultCluster (options: FaultClusterOptions): Promise<FaultCluster> {
  const { instances = 3, syncIntervalMs, seed, maxDelayMs = 20, maxDbDelayMs = 3, tablePrefix = 'policy_' } = options
  const db = options.db ?? createSqliteDb(':memory:')
  const truth = new KyselyPolicyStore({ db, tablePrefix })
  await truth.migrate()
  const engines: PolicyCache[] = []
  const random = seededRandom(seed)
  const network = new FaultyNetwork(engines, random, maxDelayMs)
  const silent = { warn: () => {} }
  const transports: Transport[] = []
  for (let i = 0; i < instances; i++) {
    const serverId = `fault-${i}`
    const transport = options.transport?.create(serverId, () => engines[i].databaseId)
    if (transport !== undefined) transports.push(transport)
    engines.push(new PolicyCache({
      store: laggy(new KyselyPolicyStore({ db, tablePrefix }), random, maxDbDelayMs),
      notifier: transport === undefined ? network.notifier(i) : network.transportNotifier(i, transport),
      serverId,
      maxTenants: 1000,
      catchUpTimeoutMs: 10000,
      log: silent
    }))
  }
  const closeTransports = async (): Promise<void> => { await Promise.all(transports.map((transport) => transport.close())) }
  try {
    // As the plugin does: the database id (which notices carry), then the subscription.
    for (const [i, transport] of transports.entries()) {
      await engines[i].start()
      await transport.start(network.sink(i))
    }
  } catch (err) {
    await closeTransports()
    if (options.db === undefined) await db.destroy()
    throw err
  }
  const loops = engines.map((engine) => new SyncLoop(engine, syncIntervalMs, random))
  return {
    engines,
    transports,
    network,
    truth,
    nextSyncRound: async (capMs = 10000) => { await Promise.all(loops.map((loop) => loop.nextRound(capMs))) },
    close: async () => {
      for (const loop of loops) loop.stop()
      // No more receipts, then the deliveries already under way land.
      await closeTransports()
      await network.quiesce()
      // Let a round already running finish before the database goes away.
      await Promise.all(loops.map(async (loop) => { while (loop.completed < loop.started) await once(loop, 'round') }))
      if (options.db === undefined) await db.destroy()
    }
  }
}
