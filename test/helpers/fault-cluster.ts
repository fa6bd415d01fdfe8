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
 */
import { EventEmitter, once } from 'node:events'
import type { Kysely } from 'kysely'
import { decodeEntry, type NoticeChange } from '../../lib/broadcast/notice.js'
import type { AckSummary, PeerStatus } from '../../lib/broadcast/status.js'
import { PolicyCache, type Notifier } from '../../lib/policy-cache.js'
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

interface Envelope { from: number, to: number, changes: NoticeChange[] }

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
}

/** The controllable transport between the engines. */
export class FaultyNetwork {
  /** What happens to notices sent from now on. */
  mode: Fault = 'none'
  /** Instances cut off: nothing reaches them and nothing they send gets out. */
  readonly partitioned = new Set<number>()
  /** Instances whose notifier throws after the commit (a crash between commit and notify). */
  readonly crashed = new Set<number>()
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, delayed: 0, held: 0, failed: 0 }
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
        if (this.crashed.has(from)) throw new CrashedError(from)
        const acks = await Promise.all(this.#engines.map((_engine, to) =>
          to === from ? Promise.resolve(false) : this.#send({ from, to, changes })))
        return { acked: acks.filter(Boolean).length, total }
      },
      status: (): PeerStatus[] => []
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

  /** Sends one envelope under the current mode; resolves whether it was acknowledged at once. */
  async #send (envelope: Envelope): Promise<boolean> {
    this.stats.sent++
    switch (this.mode) {
      case 'drop':
        this.stats.dropped++
        return false
      case 'duplicate': {
        this.stats.duplicated++
        const [first, second] = await Promise.all([this.#deliver(envelope), this.#deliver(envelope)])
        return first && second
      }
      case 'delay':
        this.stats.delayed++
        this.#track(new Promise((resolve) => setTimeout(resolve, this.#random() * this.#maxDelayMs)).then(() => this.#deliver(envelope)))
        return false
      case 'hold':
        this.stats.held++
        this.#held.push(envelope)
        return false
      default:
        return await this.#deliver(envelope)
    }
  }

  /** What the receiver does: catch up, then acknowledge. A partition or a failure is no acknowledgement. */
  async #deliver ({ from, to, changes }: Envelope): Promise<boolean> {
    if (this.partitioned.has(from) || this.partitioned.has(to)) {
      this.stats.dropped++
      return false
    }
    try {
      await this.#engines[to].noticed(changes.map(decodeEntry))
      this.stats.delivered++
      return true
    } catch {
      this.stats.failed++
      return false
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
    write: (tenant, change, origin) => late(store.write(tenant, change, origin)),
    snapshot: (tenant) => late(store.snapshot(tenant)),
    changesSince: (tenant, revision) => late(store.changesSince(tenant, revision)),
    changes: (tenant, after, limit) => late(store.changes(tenant, after, limit)),
    revisions: (tenants) => late(store.revisions(tenants)),
    tenants: (after, limit) => late(store.tenants(after, limit)),
    importTenant: (tenant, groups, origin) => late(store.importTenant(tenant, groups, origin)),
    deleteTenant: (tenant, origin) => late(store.deleteTenant(tenant, origin)),
    ping: () => store.ping(),
    close: () => store.close()
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
}

export interface FaultCluster {
  engines: PolicyCache[]
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
  for (let i = 0; i < instances; i++) {
    engines.push(new PolicyCache({
      store: laggy(new KyselyPolicyStore({ db, tablePrefix }), random, maxDbDelayMs),
      notifier: network.notifier(i),
      serverId: `fault-${i}`,
      maxTenants: 1000,
      catchUpTimeoutMs: 10000,
      log: silent
    }))
  }
  const loops = engines.map((engine) => new SyncLoop(engine, syncIntervalMs, random))
  return {
    engines,
    network,
    truth,
    nextSyncRound: async (capMs = 10000) => { await Promise.all(loops.map((loop) => loop.nextRound(capMs))) },
    close: async () => {
      for (const loop of loops) loop.stop()
      await network.quiesce()
      // Let a round already running finish before the database goes away.
      await Promise.all(loops.map(async (loop) => { while (loop.completed < loop.started) await once(loop, 'round') }))
      if (options.db === undefined) await db.destroy()
    }
  }
}
