/**
 * Prometheus metrics (prom-client), in a registry of their own unless the host passes one.
 *
 * Cheap by construction: counters the engine and the cache keep anyway are read at scrape time
 * (`collect`), so `checkSync` pays nothing beyond one integer increment; the broadcaster reports
 * deliveries through its `observe` callback; the per-tenant lag gauge is computed at scrape time
 * over at most {@link MAX_LAG_TENANTS} cached tenants.
 *
 * prom-client is an optional peer dependency, loaded when a `PolicyMetrics` is created (the
 * `metrics` option): a host without metrics need not install it.
 */
import { LRUCache } from 'lru-cache'
import type { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { NoticeChange } from './broadcast/notice.js'
import type { DeliveryEvent, PeerStatus } from './broadcast/status.js'
import type { TransportStatus } from './broadcast/transport.js'
import { InvalidOptionError } from './errors.js'
import { requireOptional } from './optional-dependency.js'
import type { EngineStats } from './policy-cache.js'

/** The part of a prom-client `Registry` the plugin uses (any prom-client 15 registry fits). */
export interface MetricsRegistry {
  registerMetric (metric: any): void
  getSingleMetric (name: string): unknown
  removeSingleMetric (name: string): void
  metrics (): Promise<string>
  readonly contentType: string
}

/** Every metric's name after the prefix. */
const NAMES = [
  'checks_total', 'writes_total', 'cache_hits_total', 'cache_misses_total', 'cache_loads_total', 'cache_evictions_total',
  'cache_repairs_total', 'catch_ups_total', 'tenants_cached', 'peer_up', 'peer_revision_lag', 'webhook_deliveries_total',
  'webhook_failures_total', 'webhook_retries_total', 'webhook_given_up_total', 'propagation_seconds',
  'transport_up', 'transport_subscriptions_total', 'transport_messages_total', 'watchers', 'watchers_dropped_total', 'watch_buffered_events'
] as const

/** Tenants (most recently used first) the revision-lag gauge reports at most, per peer. */
export const MAX_LAG_TENANTS = 100
/** Writes remembered for the propagation histogram (the newest revision per tenant). */
const MAX_TRACKED_WRITES = 10000

/** Propagation buckets, in seconds: 1 ms … 10 s. */
const PROPAGATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Where the metrics read their values at scrape time. */
export interface MetricsSources {
  stats: () => EngineStats
  peers: () => PeerStatus[]
  cachedRevisions: (limit: number) => Array<[string, number]>
  /** The transport's state and counters. */
  transport: () => TransportStatus
}

export interface PolicyMetricsOptions {
  /** Default: a new Registry for this instance (never prom-client's global one). */
  registry?: MetricsRegistry
  /** Metric name prefix. Default `policy_cache_`. */
  prefix: string
  sources: MetricsSources
}

export class PolicyMetrics {
  /** The registry the metrics are in (scraped by the `/metrics` route). */
  readonly registry: MetricsRegistry
  readonly #names: string[] = []
  /** The metrics read from the engine at scrape time. */
  readonly #collected: Array<Counter<string> | Gauge<string>>
  readonly #lag: Gauge<'peer' | 'tenant'>
  readonly #deliveries: Counter<'peer'>
  readonly #failures: Counter<'peer'>
  readonly #retries: Counter<'peer'>
  readonly #givenUp: Counter<'peer'>
  readonly #propagation: Histogram<'peer'>
  /** Tenant → the newest revision this instance committed and when (ms, performance clock). */
  readonly #commits = new LRUCache<string, { revision: number, at: number }>({ max: MAX_TRACKED_WRITES })
  /** Peer → tenant → the revision the peer last acknowledged being at. */
  readonly #peerRevisions = new Map<string, LRUCache<string, number>>()

  constructor ({ registry, prefix, sources }: PolicyMetricsOptions) {
    const { Counter, Gauge, Histogram, Registry } = requireOptional<typeof import('prom-client')>('prom-client', 'the metrics option')
    this.registry = registry ?? new Registry()
    // A host's registry may hold another instance's metrics: refuse before registering anything.
    const taken = NAMES.find((suffix) => this.registry.getSingleMetric(prefix + suffix) !== undefined)
    if (taken !== undefined) {
      throw new InvalidOptionError('metrics.prefix', `the registry already has a metric named ${prefix}${taken} (give each plugin instance its own prefix)`)
    }
    // Never prom-client's global registry: only the one given or created here.
    const registers = [this.registry as unknown as Registry]
    const name = (suffix: typeof NAMES[number]): string => {
      this.#names.push(prefix + suffix)
      return prefix + suffix
    }
    const fromStats = (suffix: typeof NAMES[number], help: string, read: (stats: EngineStats) => number): Counter =>
      new Counter({
        name: name(suffix),
        help,
        registers,
        collect () {
          this.reset()
          this.inc(read(sources.stats()))
        }
      })
    const byLabel = <L extends string>(suffix: typeof NAMES[number], help: string, label: L, read: (stats: EngineStats) => Record<string, number>): Counter<L> =>
      new Counter({
        name: name(suffix),
        help,
        labelNames: [label],
        registers,
        collect () {
          this.reset()
          for (const [value, count] of Object.entries(read(sources.stats()))) this.inc({ [label]: value } as Record<L, string>, count)
        }
      })

    this.#collected = [
      byLabel('checks_total', 'Permission checks answered, by result (checkSync, check, the route guard, /check-access)', 'result',
        (s) => ({ allowed: s.checksAllowed, denied: s.checksDenied })),
      byLabel('writes_total', 'Writes committed by this instance, by whether they changed anything', 'changed',
        (s) => ({ true: s.writes, false: s.writesUnchanged })),
      fromStats('cache_hits_total', 'Tenant lookups answered from the cache', (s) => s.hits),
      fromStats('cache_misses_total', 'Tenant lookups that had to load the tenant', (s) => s.misses),
      fromStats('cache_loads_total', 'Tenants loaded from a database snapshot', (s) => s.loads),
      fromStats('cache_evictions_total', 'Tenants dropped by the maxTenants bound', (s) => s.evictions),
      fromStats('cache_repairs_total', 'Reloads of a tenant whose cached contents differed from the database (digest), or were ahead of it', (s) => s.repairs),
      byLabel('catch_ups_total', 'Catch-ups of a cached tenant: carried (the change a notice carried), delta (from the changelog) or full (a snapshot reload)', 'kind',
        (s) => ({ carried: s.carriedCatchUps, delta: s.deltaCatchUps, full: s.fullReloads })),
      fromStats('watchers_dropped_total', 'Watch streams closed because their client fell watch.maxBuffered events behind', (s) => s.watchersDropped),
      new Gauge({
        name: name('watchers'),
        help: 'Watch streams open (GET /tenants/:tenant/watch, policyCache.watch)',
        registers,
        collect () { this.set(sources.stats().watchers) }
      }),
      new Gauge({
        name: name('watch_buffered_events'),
        help: 'Events waiting for their watch stream\'s client, all streams together (each at most watch.maxBuffered)',
        registers,
        collect () { this.set(sources.stats().watchBuffered) }
      }),
      new Gauge({
        name: name('tenants_cached'),
        help: 'Tenants held in memory',
        registers,
        collect () { this.set(sources.stats().tenants) }
      }),
      new Gauge({
        name: name('peer_up'),
        help: 'Whether a peer is up (1), down or gone (0), or not heard from yet (-1)',
        labelNames: ['peer'],
        registers,
        collect () {
          this.reset()
          for (const peer of sources.peers()) this.set({ peer: peer.url }, peer.state === 'up' ? 1 : peer.state === 'unknown' ? -1 : 0)
        }
      }),
      new Gauge({
        name: name('transport_up'),
        help: 'Whether the transport\'s subscription is up (1) or not (0: connecting, down, closed), by transport',
        labelNames: ['transport'],
        registers,
        collect () {
          this.reset()
          const status = sources.transport()
          this.set({ transport: status.type }, status.state === 'up' ? 1 : 0)
        }
      }),
      new Counter({
        name: name('transport_subscriptions_total'),
        help: 'Subscriptions the transport made (the first included); each one resynced every cached tenant',
        labelNames: ['transport'],
        registers,
        collect () {
          this.reset()
          const status = sources.transport()
          this.inc({ transport: status.type }, status.subscriptions)
        }
      }),
      new Counter({
        name: name('transport_messages_total'),
        help: 'Transport messages by outcome: published, received (verified, handed to the engine), hint (unverifiable: only the changelog read), dropped (malformed, replayed, own)',
        labelNames: ['transport', 'outcome'],
        registers,
        collect () {
          this.reset()
          const status = sources.transport()
          for (const outcome of ['published', 'received', 'hints', 'dropped'] as const) {
            this.inc({ transport: status.type, outcome: outcome === 'hints' ? 'hint' : outcome }, status[outcome])
          }
        }
      })
    ]
    this.#lag = new Gauge({
      name: name('peer_revision_lag'),
      help: `Revisions a peer last acknowledged being behind this instance, per cached tenant (the ${MAX_LAG_TENANTS} most recently used)`,
      labelNames: ['peer', 'tenant'],
      registers,
      collect: () => this.#collectLag(sources)
    })

    this.#deliveries = new Counter({ name: name('webhook_deliveries_total'), help: 'Notices a peer acknowledged', labelNames: ['peer'], registers })
    this.#failures = new Counter({ name: name('webhook_failures_total'), help: 'Failed delivery attempts', labelNames: ['peer'], registers })
    this.#retries = new Counter({ name: name('webhook_retries_total'), help: 'Delivery retries scheduled', labelNames: ['peer'], registers })
    this.#givenUp = new Counter({ name: name('webhook_given_up_total'), help: 'Notices given up after their retries (the sync heals)', labelNames: ['peer'], registers })
    this.#propagation = new Histogram({
      name: name('propagation_seconds'),
      help: 'From a write handed to the broadcaster (right after its commit) to a peer acknowledging its revision',
      labelNames: ['peer'],
      buckets: PROPAGATION_BUCKETS,
      registers
    })
  }

  /** Per peer and cached tenant (bounded): how far behind the revision the peer last acknowledged is. */
  #collectLag (sources: MetricsSources): void {
    const lag = this.#lag
    lag.reset()
    const cached = sources.cachedRevisions(MAX_LAG_TENANTS)
    for (const { url } of sources.peers()) {
      const known = this.#peerRevisions.get(url)
      if (known === undefined) continue
      for (const [tenant, revision] of cached) {
        const theirs = known.get(tenant)
        if (theirs !== undefined) lag.set({ peer: url, tenant }, Math.max(0, revision - theirs))
      }
    }
  }

  /** Records writes handed to the broadcaster: the start of their propagation. */
  committed (changes: readonly NoticeChange[]): void {
    const at = performance.now()
    for (const { tenant, revision } of changes) this.#commits.set(tenant, { revision, at })
  }

  /** The broadcaster's observer. */
  readonly observe = (event: DeliveryEvent): void => {
    const labels = { peer: event.peer }
    switch (event.kind) {
      case 'delivered': {
        this.#deliveries.inc(labels)
        const now = performance.now()
        let known = this.#peerRevisions.get(event.peer)
        if (known === undefined) this.#peerRevisions.set(event.peer, known = new LRUCache({ max: MAX_TRACKED_WRITES }))
        for (const { tenant, revision } of event.changes) {
          const commit = this.#commits.get(tenant)
          if (commit?.revision === revision) this.#propagation.observe(labels, (now - commit.at) / 1000)
          const theirs = event.revisions?.[tenant]
          if (typeof theirs === 'number') known.set(tenant, theirs)
        }
        break
      }
      case 'failed':
        this.#failures.inc(labels)
        break
      case 'retry':
        this.#retries.inc(labels)
        break
      case 'given-up':
        this.#givenUp.inc(labels)
        break
    }
  }

  /** Removes this instance's metrics from the registry (a host's registry outlives the plugin). */
  close (): void {
    for (const metric of this.#names) this.registry.removeSingleMetric(metric)
  }
}
