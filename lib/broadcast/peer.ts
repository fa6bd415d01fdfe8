/**
 * One peer of the broadcaster: its queue, which coalesces to the highest revision per tenant; the
 * writes waiting for its acknowledgement; its state and counters for `/servers`; its circuit breaker;
 * and, per tenant, the revision it last acknowledged against ours (its lag).
 *
 * State: `unknown` until the first answer, `up` after a 2xx, `down` after a failed attempt or a
 * missed acknowledgement, `gone` after a 410 (nothing is sent to it any more).
 */
import { LRUCache } from 'lru-cache'
import { MAX_NOTICE_BYTES, MAX_NOTICE_CHANGES, WEBHOOK_PATH, type NoticeChange } from './notice.js'
import type { PeerLag, PeerStatus } from './status.js'

/** Tenants whose acknowledged revision each peer remembers (least recently written dropped first). */
const MAX_TRACKED_TENANTS = 10000
/** Lagging tenants listed per peer in `status()` (the count covers all). */
const MAX_LAG_LISTED = 100

/** The per-peer circuit breaker. */
export interface CircuitBreakerOptions {
  /** Consecutive failed attempts after which the circuit opens and nothing is sent to the peer. */
  failureThreshold: number
  /** How long an open circuit stays open; then one probe decides (success closes it, failure reopens it). */
  cooldownMs: number
}

/** One `notify` call's wait on one peer: done once every tenant it needs got a 2xx at a high enough revision. */
export class Waiter {
  /** Tenant → the revision a delivery must carry for this waiter. */
  readonly need = new Map<string, number>()
  /** Resolves `true` when acknowledged, `false` when released without. */
  readonly acked: Promise<boolean>
  #resolve!: (acked: boolean) => void
  #pending = true

  constructor (changes: NoticeChange[]) {
    for (const { tenant, revision } of changes) this.need.set(tenant, Math.max(this.need.get(tenant) ?? 0, revision))
    this.acked = new Promise((resolve) => { this.#resolve = resolve })
  }

  /** Whether the waiter is still waiting. */
  get pending (): boolean {
    return this.#pending
  }

  /** Ends the wait; later calls do nothing. */
  settle (acked: boolean): void {
    if (!this.#pending) return
    this.#pending = false
    this.#resolve(acked)
  }
}

/** One peer: its queue, its waiters, its stats. */
export class Peer {
  /** The configured base URL. */
  readonly url: string
  /** The receiver's URL: `<url>/webhook/refresh`. */
  readonly endpoint: string
  /** What `status()` reports, updated in place. */
  readonly status: PeerStatus
  /** Aborted when the peer is removed or the broadcaster closes: stops backoff sleeps and the loop. */
  readonly stop = new AbortController()
  /** Whether a delivery loop runs (at most one request in flight per peer). */
  sending = false
  /** The latest delivery loop, awaited on close. */
  loop: Promise<void> = Promise.resolve()
  /** Epoch ms before which nothing is sent: an open circuit's cool-down or a `Retry-After`. */
  notBefore = 0
  /** Aborted by `revive` to end a wait on `notBefore` early; replaced after each use. */
  wake = new AbortController()
  #pending = new Map<string, NoticeChange>()
  #waiters = new Set<Waiter>()
  /** Tenant → the highest revision this peer acknowledged. */
  #acked = new LRUCache<string, number>({ max: MAX_TRACKED_TENANTS })
  /** Tenant → our revision, for tenants whose latest revision this peer has not acknowledged yet. */
  #behind = new LRUCache<string, number>({ max: MAX_TRACKED_TENANTS })

  constructor (url: string) {
    this.url = url
    this.endpoint = url.replace(/\/+$/, '') + WEBHOOK_PATH
    this.status = {
      url,
      serverId: null,
      state: 'unknown',
      lastSuccessAt: null,
      lastFailureAt: null,
      lastError: null,
      consecutiveFailures: 0,
      delivered: 0,
      failed: 0,
      latencyMs: null,
      circuit: 'closed',
      nextAttemptAt: null,
      tenantsBehind: 0,
      lag: [],
      // The peer set fills these in (lib/broadcast/peer-set.ts).
      source: 'static',
      incarnation: null,
      heartbeatAgeMs: null
    }
  }

  /** Whether the peer is still configured and the broadcaster open. */
  get active (): boolean {
    return !this.stop.signal.aborted
  }

  /** Whether the peer answered 410 Gone: nothing is sent to it any more. */
  get gone (): boolean {
    return this.status.state === 'gone'
  }

  /** Whether changes wait to be sent. */
  get hasPending (): boolean {
    return this.#pending.size > 0
  }

  /** Milliseconds until the next attempt is allowed (0: now). */
  get holdMs (): number {
    return Math.max(0, this.notBefore - Date.now())
  }

  /** Queues changes, keeping the highest revision per tenant, and notes them as not yet acknowledged. */
  enqueue (changes: NoticeChange[]): void {
    for (const change of changes) {
      const queued = this.#pending.get(change.tenant)
      if (queued === undefined || change.revision > queued.revision) this.#pending.set(change.tenant, change)
      if (change.revision > (this.#acked.get(change.tenant) ?? 0) && change.revision > (this.#behind.get(change.tenant) ?? 0)) {
        this.#behind.set(change.tenant, change.revision)
      }
    }
  }

  /** Puts back changes that were taken but not delivered (an open circuit); newer queued ones win. */
  requeue (changes: NoticeChange[]): void {
    for (const change of changes) {
      const queued = this.#pending.get(change.tenant)
      if (queued === undefined || change.revision > queued.revision) this.#pending.set(change.tenant, change)
    }
  }

  /** `status` plus the lag: tenants whose latest revision the peer has not acknowledged, most recent first. */
  snapshot (): PeerStatus {
    const lag: PeerLag[] = []
    for (const [tenant, revision] of this.#behind.entries()) {
      if (lag.length === MAX_LAG_LISTED) break
      lag.push({ tenant, acked: this.#acked.get(tenant) ?? null, revision })
    }
    const nextAttemptAt = this.holdMs > 0 ? new Date(this.notBefore).toISOString() : null
    return { ...this.status, nextAttemptAt, tenantsBehind: this.#behind.size, lag }
  }

  /** Takes the next notice's worth of queued changes (bounded in count and size). */
  take (): NoticeChange[] {
    const batch: NoticeChange[] = []
    // The batch's JSON, exactly: `[`, each change and its `,` (the last one's stands for the `]`).
    let bytes = 1
    for (const [tenant, change] of this.#pending) {
      bytes += JSON.stringify(change).length + 1
      if (batch.length === MAX_NOTICE_CHANGES || (batch.length > 0 && bytes > MAX_NOTICE_BYTES)) break
      batch.push(change)
      this.#pending.delete(tenant)
    }
    return batch
  }

  /** Registers a wait for `changes` to be acknowledged. */
  wait (changes: NoticeChange[]): Waiter {
    const waiter = new Waiter(changes)
    this.#waiters.add(waiter)
    return waiter
  }

  /** Ends one wait without acknowledgement. */
  forget (waiter: Waiter): void {
    this.#waiters.delete(waiter)
    waiter.settle(false)
  }

  /** Ends every wait without acknowledgement. */
  releaseAll (): void {
    for (const waiter of this.#waiters) waiter.settle(false)
    this.#waiters.clear()
  }

  /** Records a 2xx for a notice carrying `changes` and settles the waiters it satisfies. */
  succeeded (serverId: string, latencyMs: number, changes: NoticeChange[]): void {
    Object.assign(this.status, {
      serverId,
      state: 'up',
      lastSuccessAt: new Date().toISOString(),
      consecutiveFailures: 0,
      delivered: this.status.delivered + 1,
      latencyMs,
      circuit: 'closed'
    })
    this.notBefore = 0
    for (const { tenant, revision } of changes) {
      if (revision > (this.#acked.get(tenant) ?? 0)) this.#acked.set(tenant, revision)
      if ((this.#behind.get(tenant) ?? Infinity) <= revision) this.#behind.delete(tenant)
    }
    for (const waiter of this.#waiters) {
      for (const { tenant, revision } of changes) {
        if ((waiter.need.get(tenant) ?? Infinity) <= revision) waiter.need.delete(tenant)
      }
      if (waiter.need.size === 0) {
        this.#waiters.delete(waiter)
        waiter.settle(true)
      }
    }
  }

  /**
   * Records a failed attempt, marks the peer down and releases its waiters. Opens the circuit for
   * `breaker.cooldownMs` when the failures reach the threshold or a probe failed; honours a
   * `Retry-After` wait. Returns whether this failure opened the circuit.
   */
  failed (reason: string, breaker: CircuitBreakerOptions, waitMs = 0): boolean {
    const now = Date.now()
    const consecutiveFailures = this.status.consecutiveFailures + 1
    const opens = this.status.circuit === 'half-open' || (this.status.circuit === 'closed' && consecutiveFailures >= breaker.failureThreshold)
    Object.assign(this.status, {
      state: 'down',
      lastFailureAt: new Date(now).toISOString(),
      lastError: reason,
      consecutiveFailures,
      failed: this.status.failed + 1
    })
    if (opens) {
      this.status.circuit = 'open'
      this.notBefore = Math.max(this.notBefore, now + breaker.cooldownMs)
    }
    this.notBefore = Math.max(this.notBefore, now + waitMs)
    this.releaseAll()
    return opens
  }

  /** Records a 410 Gone: nothing is sent to this peer any more; its queue and waiters are dropped. */
  goneForGood (reason: string): void {
    Object.assign(this.status, {
      state: 'gone',
      lastFailureAt: new Date().toISOString(),
      lastError: reason,
      failed: this.status.failed + 1
    })
    this.#pending.clear()
    this.releaseAll()
  }

  /**
   * The peer made contact (its notice reached us, or it announced its start): whatever made us give
   * up on it is over. A down peer becomes `unknown` (writes wait for it again), an open circuit
   * closes, a hold ends and its failures are forgotten; a waiting delivery loop wakes. Returns
   * whether anything changed. A `gone` peer stays gone.
   */
  revive (): boolean {
    if (this.gone || (this.status.state !== 'down' && this.status.circuit === 'closed' && this.notBefore === 0)) return false
    Object.assign(this.status, { state: this.status.state === 'down' ? 'unknown' : this.status.state, circuit: 'closed', consecutiveFailures: 0 })
    this.notBefore = 0
    this.wake.abort()
    this.wake = new AbortController()
    return true
  }

  /** Marks the peer down for missing an acknowledgement (its request may still be in flight). */
  unresponsive (reason: string): void {
    Object.assign(this.status, { state: 'down', lastFailureAt: new Date().toISOString(), lastError: reason })
    this.releaseAll()
  }
}
