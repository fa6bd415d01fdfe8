/**
 * The broadcaster (DESIGN §3, §6): tells every peer which tenants moved to which revision, over signed
 * webhooks, and lets a write wait a bounded time for the peers it believes up.
 *
 * Per peer: a queue that coalesces to the highest revision per tenant, at most one request in flight
 * (what piles up meanwhile goes out as one notice), retries with capped full-jitter backoff, and a
 * state: `unknown` until the first answer, `up` after a 2xx, `down` after a failed attempt or a missed
 * acknowledgement — a `down` peer is not waited for until a later delivery to it succeeds.
 *
 * Robustness (`CircuitBreakerOptions`, `RetryOptions`): a per-peer circuit breaker (after `failureThreshold`
 * consecutive failed attempts nothing is sent for `cooldownMs`, then one probe), `Retry-After` honoured
 * on 429 and 503, other 4xx not retried, and a 410 ends delivery to that peer for good (`gone`).
 * Each peer also tracks, per tenant, the revision it last acknowledged against ours (its lag).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { LRUCache } from 'lru-cache'
import { Agent, request } from 'undici'
import { retryAfterMs } from './retry-after.js'
import { newMessageId, sign, WEBHOOK_HEADERS } from './signature.js'
import { encodeNotice, MAX_NOTICE_BYTES, MAX_NOTICE_CHANGES, WEBHOOK_PATH, type NoticeChange, type NoticeReply } from './notice.js'
import type { AckSummary, DeliveryEvent, PeerLag, PeerStatus } from './status.js'

/** Defaults of {@link BroadcasterOptions}. */
export const BROADCAST_DEFAULTS = Object.freeze({
  requestTimeoutMs: 2000,
  ackTimeoutMs: 200,
  retry: Object.freeze({ retries: 5, minDelayMs: 50, maxDelayMs: 5000, maxRetryAfterMs: 60000 }),
  circuitBreaker: Object.freeze({ failureThreshold: 10, cooldownMs: 30000 })
})

/** Replies larger than this are treated as a failed delivery. */
const MAX_REPLY_BYTES = 1024 * 1024

/** Tenants whose acknowledged revision each peer remembers (least recently written dropped first). */
const MAX_TRACKED_TENANTS = 10000
/** Lagging tenants listed per peer in `status()` (the count covers all). */
const MAX_LAG_LISTED = 100

/** The part of a pino logger the broadcaster writes to. */
export interface BroadcastLogger {
  /** Routine events: a peer's first answer, a message given up after its retries. */
  debug (obj: object, msg: string): void
  /** A peer back up after being down. */
  info (obj: object, msg: string): void
  /** A peer going down (once per transition, not per failed attempt). */
  warn (obj: object, msg: string): void
}

/** How a failed delivery is retried. */
export interface RetryOptions {
  /** Retries after the first attempt before the message is given up (the anti-entropy sync heals). */
  retries: number
  /** Backoff base: the n-th retry waits a random time in [0, min(maxDelayMs, minDelayMs * 2^n)]. */
  minDelayMs: number
  /** Backoff cap. */
  maxDelayMs: number
  /** Longest wait a peer's `Retry-After` (on 429 or 503) is honoured for. */
  maxRetryAfterMs: number
}

/** The per-peer circuit breaker. */
export interface CircuitBreakerOptions {
  /** Consecutive failed attempts after which the circuit opens and nothing is sent to the peer. */
  failureThreshold: number
  /** How long an open circuit stays open; then one probe decides (success closes it, failure reopens it). */
  cooldownMs: number
}

/** What a {@link Broadcaster} is built from. */
export interface BroadcasterOptions {
  /** This instance's id, sent as the notice's `origin`. */
  serverId: string
  /** Signing keys (see `parseSecret`); every one signs each message. */
  keys: Buffer[]
  /** Peer base URLs; the receiver is at `<url>/webhook/refresh`. */
  peers: string[]
  /** Bound on connecting, on waiting for the reply's headers and on each gap in its body. Default 2000. */
  requestTimeoutMs?: number
  /** How long `notify` waits for acknowledgements; 0 returns at once. Default 200. */
  ackTimeoutMs?: number
  /** Retry schedule; each field defaults separately (5 retries, 50 ms, 5000 ms, Retry-After ≤ 60000 ms). */
  retry?: Partial<RetryOptions>
  /** Per-peer circuit breaker; each field defaults separately (10 failures, 30000 ms). */
  circuitBreaker?: Partial<CircuitBreakerOptions>
  /** Where state changes are logged; never receives secrets or signatures. */
  log: BroadcastLogger
  /** Told of every delivery event (metrics); must not throw — an exception is ignored. */
  observe?: (event: DeliveryEvent) => void
}

/** One `notify` call's wait on one peer: done once every tenant it needs got a 2xx at a high enough revision. */
class Waiter {
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
class Peer {
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
      lag: []
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
    let bytes = 0
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

  /** Marks the peer down for missing an acknowledgement (its request may still be in flight). */
  unresponsive (reason: string): void {
    Object.assign(this.status, { state: 'down', lastFailureAt: new Date().toISOString(), lastError: reason })
    this.releaseAll()
  }
}

/** A non-2xx answer, with what it means for retrying. */
class HttpStatusError extends Error {
  constructor (readonly statusCode: number, readonly retryAfterMs: number | undefined) {
    super(`HTTP ${statusCode}`)
  }
}

/** What a failed attempt means: retry (after `waitMs` at least), give this message up, or stop the peer. */
function classify (err: unknown): { next: 'retry' | 'give-up' | 'gone', waitMs: number } {
  if (!(err instanceof HttpStatusError)) return { next: 'retry', waitMs: 0 }
  const { statusCode, retryAfterMs } = err
  if (statusCode === 410) return { next: 'gone', waitMs: 0 }
  // Other 4xx will not succeed by repeating the same request (408 and 429 are about timing).
  const permanent = statusCode >= 400 && statusCode <= 499 && statusCode !== 408 && statusCode !== 429
  return { next: permanent ? 'give-up' : 'retry', waitMs: retryAfterMs ?? 0 }
}

function describe (err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message
}

/**
 * Sends `policy.changed` notices to every peer (DESIGN §5, §6) through one undici dispatcher.
 */
export class Broadcaster {
  #serverId: string
  #keys: Buffer[]
  #requestTimeoutMs: number
  #ackTimeoutMs: number
  #retry: RetryOptions
  #breaker: CircuitBreakerOptions
  #log: BroadcastLogger
  #observe: ((event: DeliveryEvent) => void) | undefined
  #agent: Agent
  #peers = new Map<string, Peer>()
  #closing: Promise<void> | null = null

  /** Builds the broadcaster; nothing is sent until `notify`. */
  constructor (options: BroadcasterOptions) {
    this.#serverId = options.serverId
    this.#keys = options.keys
    this.#requestTimeoutMs = options.requestTimeoutMs ?? BROADCAST_DEFAULTS.requestTimeoutMs
    this.#ackTimeoutMs = options.ackTimeoutMs ?? BROADCAST_DEFAULTS.ackTimeoutMs
    this.#retry = { ...BROADCAST_DEFAULTS.retry, ...options.retry }
    this.#breaker = { ...BROADCAST_DEFAULTS.circuitBreaker, ...options.circuitBreaker }
    this.#log = options.log
    this.#observe = options.observe
    // Keep-alive is undici's default; its 300 s header/body timeouts are not. No redirect interceptor:
    // a 3xx is a failed delivery.
    this.#agent = new Agent({
      connect: { timeout: this.#requestTimeoutMs },
      headersTimeout: this.#requestTimeoutMs,
      bodyTimeout: this.#requestTimeoutMs,
      maxResponseSize: MAX_REPLY_BYTES
    })
    this.setPeers(options.peers)
  }

  /**
   * Queues `changes` for every peer and resolves once the peers believed up (or not yet known) have
   * acknowledged them, or after `ackTimeoutMs`, whichever is first. A peer that fails meanwhile is
   * released at once; one that misses the deadline is marked down. Never rejects.
   */
  async notify (changes: NoticeChange[]): Promise<AckSummary> {
    const total = this.#peers.size
    if (this.#closing !== null || changes.length === 0) return { acked: 0, total }

    const waits: Array<[Peer, Waiter]> = []
    for (const peer of this.#peers.values()) {
      if (peer.gone) continue
      if (this.#ackTimeoutMs > 0 && peer.status.state !== 'down') waits.push([peer, peer.wait(changes)])
      peer.enqueue(changes)
      this.#deliverPending(peer)
    }
    if (waits.length === 0) return { acked: 0, total }

    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#ackTimeoutMs)
      timer.unref()
    })
    await Promise.race([Promise.all(waits.map(([, waiter]) => waiter.acked)), deadline])
    clearTimeout(timer)

    let acked = 0
    for (const [peer, waiter] of waits) {
      if (waiter.pending) {
        peer.forget(waiter)
        this.#markUnresponsive(peer)
      } else if (await waiter.acked) {
        acked++
      }
    }
    return { acked, total }
  }

  /**
   * Replaces the peer list: peers that stay keep their state and queue, removed ones are dropped
   * (their waiters released, their retries stopped), new ones start `unknown`.
   */
  setPeers (urls: string[]): void {
    if (this.#closing !== null) return
    const next = new Map<string, Peer>()
    for (const url of urls) next.set(url, this.#peers.get(url) ?? new Peer(url))
    for (const [url, peer] of this.#peers) {
      if (!next.has(url)) this.#stop(peer)
    }
    this.#peers = next
  }

  /** A snapshot of every peer's state, counters and lag, in configuration order. */
  status (): PeerStatus[] {
    return [...this.#peers.values()].map((peer) => peer.snapshot())
  }

  /**
   * Stops everything: pending retries, in-flight requests, waiting `notify` calls (they resolve), the
   * dispatcher. Idempotent; afterwards `notify` resolves `{ acked: 0, total }` without sending.
   */
  close (): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  async #shutdown (): Promise<void> {
    const peers = [...this.#peers.values()]
    for (const peer of peers) this.#stop(peer)
    await this.#agent.destroy()
    await Promise.all(peers.map((peer) => peer.loop))
  }

  #stop (peer: Peer): void {
    peer.stop.abort()
    peer.releaseAll()
  }

  /** Starts the peer's delivery loop unless one is running. */
  #deliverPending (peer: Peer): void {
    if (peer.sending) return
    peer.sending = true
    peer.loop = this.#drain(peer)
  }

  /**
   * Sends notices until the peer's queue is empty; what is queued meanwhile goes out as one notice.
   * While the circuit is open or a `Retry-After` holds, it waits (the queue keeps coalescing); the
   * first notice after an open circuit's cool-down is the probe.
   */
  async #drain (peer: Peer): Promise<void> {
    try {
      while (peer.active && !peer.gone && peer.hasPending) {
        if (peer.holdMs > 0) {
          try {
            await sleep(peer.holdMs, undefined, { signal: peer.stop.signal, ref: false })
          } catch {
            return
          }
          continue
        }
        if (peer.status.circuit === 'open') peer.status.circuit = 'half-open'
        await this.#deliver(peer, peer.take())
      }
    } finally {
      peer.sending = false
    }
  }

  /** Sends one notice, retrying it under the same message id until it succeeds or is given up. */
  async #deliver (peer: Peer, changes: NoticeChange[]): Promise<void> {
    const id = newMessageId()
    const body = encodeNotice(this.#serverId, changes)
    for (let attempt = 0; peer.active; attempt++) {
      const outcome = await this.#attempt(peer, id, body, changes)
      if (outcome === 'ok' || outcome === 'gone') return
      if (outcome === 'give-up') break
      if (peer.status.circuit === 'open') {
        // The drain loop sends them again (as the probe) once the cool-down is over.
        peer.requeue(changes)
        return
      }
      if (attempt >= this.#retry.retries) break
      this.#emit({ kind: 'retry', peer: peer.url, changes })
      const cap = Math.min(this.#retry.maxDelayMs, this.#retry.minDelayMs * 2 ** attempt)
      try {
        await sleep(Math.max(Math.random() * cap, peer.holdMs), undefined, { signal: peer.stop.signal, ref: false })
      } catch {
        return
      }
    }
    if (!peer.active) return
    this.#emit({ kind: 'given-up', peer: peer.url, changes })
    this.#log.debug({ peer: peer.url, webhookId: id, tenants: changes.length }, 'policy-cache: notice given up after retries')
  }

  #emit (event: DeliveryEvent): void {
    try {
      this.#observe?.(event)
    } catch {}
  }

  /** One request: `ok` on a 2xx with a receiver's reply, else what to do next. Updates the peer's state either way. */
  async #attempt (peer: Peer, id: string, body: string, changes: NoticeChange[]): Promise<'ok' | 'retry' | 'give-up' | 'gone'> {
    const timestamp = Math.floor(Date.now() / 1000)
    const started = performance.now()
    try {
      const response = await request(peer.endpoint, {
        dispatcher: this.#agent,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [WEBHOOK_HEADERS.id]: id,
          [WEBHOOK_HEADERS.timestamp]: String(timestamp),
          [WEBHOOK_HEADERS.signature]: sign(this.#keys, id, timestamp, body)
        },
        body,
        signal: AbortSignal.timeout(this.#requestTimeoutMs)
      })
      if (response.statusCode < 200 || response.statusCode > 299) {
        await response.body.dump()
        const honoured = response.statusCode === 429 || response.statusCode === 503
        throw new HttpStatusError(response.statusCode, honoured
          ? retryAfterMs(response.headers['retry-after'], Date.now(), this.#retry.maxRetryAfterMs)
          : undefined)
      }
      const reply = await response.body.json() as Partial<NoticeReply> | null
      if (typeof reply?.serverId !== 'string') throw new Error('the reply is not a webhook receiver\'s')
      if (!peer.active) return 'ok'
      const wasDown = peer.status.state === 'down'
      const latencyMs = performance.now() - started
      peer.succeeded(reply.serverId, Math.round(latencyMs), changes)
      this.#emit({ kind: 'delivered', peer: peer.url, changes, latencyMs, revisions: reply.revisions })
      if (wasDown) this.#log.info({ peer: peer.url, serverId: reply.serverId }, 'policy-cache: peer is up again')
      return 'ok'
    } catch (err) {
      if (!peer.active) return 'give-up'
      const { next, waitMs } = classify(err)
      if (next === 'gone') {
        peer.goneForGood(describe(err))
        this.#log.warn({ peer: peer.url }, 'policy-cache: peer answered 410 Gone; no more notices are sent to it')
        return 'gone'
      }
      const wasDown = peer.status.state === 'down'
      const opened = peer.failed(describe(err), this.#breaker, waitMs)
      this.#emit({ kind: 'failed', peer: peer.url, changes, latencyMs: performance.now() - started })
      if (!wasDown) this.#log.warn({ peer: peer.url, reason: peer.status.lastError }, 'policy-cache: peer is down')
      if (opened) this.#log.info({ peer: peer.url, cooldownMs: this.#breaker.cooldownMs, consecutiveFailures: peer.status.consecutiveFailures }, 'policy-cache: circuit open, pausing delivery to the peer')
      return next
    }
  }

  #markUnresponsive (peer: Peer): void {
    if (peer.status.state === 'down' || peer.gone || !peer.active) return
    const reason = `no acknowledgement within ${this.#ackTimeoutMs} ms`
    peer.unresponsive(reason)
    this.#log.warn({ peer: peer.url, reason }, 'policy-cache: peer is down')
  }
}
