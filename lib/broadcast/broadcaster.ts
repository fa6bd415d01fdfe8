/**
 * The broadcaster (docs/protocol.md, "A write, step by step" and "Sender robustness"): tells every
 * peer which tenants moved to which revision, over signed webhooks, and lets a write wait a bounded
 * time for the peers it believes up.
 *
 * Per peer (`Peer`): a queue that coalesces to the highest revision per tenant, at most one request
 * in flight (what piles up meanwhile goes out as one notice), retries with capped full-jitter backoff,
 * and a state — a `down` peer is not waited for until a later delivery to it succeeds. Each attempt
 * is one `WebhookClient.post`.
 *
 * Robustness (`CircuitBreakerOptions`, `RetryOptions`): a per-peer circuit breaker (after `failureThreshold`
 * consecutive failed attempts nothing is sent for `cooldownMs`, then one probe), `Retry-After` honoured
 * on 429 and 503, other 4xx not retried, and a 410 ends delivery to that peer for good (`gone`).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { DEFAULTS } from '../defaults.js'
import { classify, describe, WebhookClient } from './delivery.js'
import { encodeNotice, type NoticeChange } from './notice.js'
import { Peer, type CircuitBreakerOptions, type Waiter } from './peer.js'
import { newMessageId } from './signature.js'
import type { AckSummary, DeliveryEvent, PeerStatus } from './status.js'

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

/** What a {@link Broadcaster} is built from. */
export interface BroadcasterOptions {
  /** This instance's id, sent as the notice's `origin`. */
  serverId: string
  /**
   * The id of this instance's database, sent as the notice's `database` (read per notice: it is
   * known once the store is migrated, after the broadcaster is built); none when it returns undefined.
   */
  databaseId?: () => string | undefined
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
  /** This instance's URL as its peers list it: sent in notices, so a peer knows which of its peers wrote. */
  publicUrl?: string
  /** Where state changes are logged; never receives secrets or signatures. */
  log: BroadcastLogger
  /** Told of every delivery event (metrics); must not throw — an exception is ignored. */
  observe?: (event: DeliveryEvent) => void
}

/**
 * Sends `policy.changed` notices to every peer (docs/protocol.md) through one {@link WebhookClient}.
 */
export class Broadcaster {
  #serverId: string
  #databaseId: () => string | undefined
  #publicUrl: string | undefined
  #ackTimeoutMs: number
  #retry: RetryOptions
  #breaker: CircuitBreakerOptions
  #log: BroadcastLogger
  #observe: ((event: DeliveryEvent) => void) | undefined
  #client: WebhookClient
  #peers = new Map<string, Peer>()
  #closing: Promise<void> | null = null

  /** Builds the broadcaster; nothing is sent until `notify`. */
  constructor (options: BroadcasterOptions) {
    this.#serverId = options.serverId
    this.#databaseId = options.databaseId ?? (() => undefined)
    this.#publicUrl = options.publicUrl
    this.#ackTimeoutMs = options.ackTimeoutMs ?? DEFAULTS.ackTimeoutMs
    this.#retry = { ...DEFAULTS.retry, ...options.retry }
    this.#breaker = { ...DEFAULTS.circuitBreaker, ...options.circuitBreaker }
    this.#log = options.log
    this.#observe = options.observe
    this.#client = new WebhookClient({
      keys: options.keys,
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
      maxRetryAfterMs: this.#retry.maxRetryAfterMs
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
    // Stryker disable next-line ConditionalExpression: a shortcut; waiting on none resolves at once with the same answer
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

  /**
   * A peer made contact — its notice arrived, or it announced its start — named by its serverId or
   * its URL: if we had given up on it (down, circuit open, holding), it is revived at once and what
   * is queued for it goes out now, instead of after the circuit's cool-down. (While changes are
   * queued for an active peer its delivery loop runs; `revive` wakes it from its hold.)
   */
  contact (serverId: string, url: string | undefined): void {
    if (this.#closing !== null) return
    for (const peer of this.#peers.values()) {
      if (peer.url !== url && peer.status.serverId !== serverId) continue
      if (peer.revive()) this.#log.info({ peer: peer.url, serverId }, 'policy-cache: peer made contact; delivering to it again at once')
    }
  }

  /**
   * Tells every peer this instance has started: one signed notice without changes, one attempt each,
   * not retried. A peer that had given up on this instance (it was down while restarting) sends to
   * it again at once. Resolves once every attempt has ended; never rejects.
   */
  async announce (): Promise<void> {
    // Stryker disable next-line ConditionalExpression: a shortcut; once closed the client sends nothing anyway
    if (this.#closing !== null) return
    const body = encodeNotice(this.#serverId, [], { database: this.#databaseId(), url: this.#publicUrl })
    await Promise.all([...this.#peers.values()].filter((peer) => !peer.gone).map(async (peer) => {
      try {
        const reply = await this.#client.post(peer.endpoint, newMessageId(), body)
        // Stryker disable next-line ConditionalExpression: a removed peer is not in the list `contact` searches
        if (peer.active) this.contact(reply.serverId, peer.url)
      } catch (err) {
        this.#log.debug({ peer: peer.url, reason: describe(err) }, 'policy-cache: could not announce this instance to a peer')
      }
    }))
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
    await this.#client.close()
    // Stryker disable next-line ArrowFunction: the stopped loops end by themselves and emit nothing more; this lets close() resolve after them
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
          // Woken by `revive` (or stopped: the loop's condition ends it).
          // Stryker disable next-line BooleanLiteral,ArrowFunction: `ref` only decides whether the hold keeps the process alive; the catch's body is empty either way
          await sleep(peer.holdMs, undefined, { signal: AbortSignal.any([peer.stop.signal, peer.wake.signal]), ref: false }).catch(() => {})
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
    const body = encodeNotice(this.#serverId, changes, { database: this.#databaseId(), url: this.#publicUrl })
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
      // Stryker disable next-line all: the backoff's length and jitter decide when a retry goes out, not whether
      const cap = Math.min(this.#retry.maxDelayMs, this.#retry.minDelayMs * 2 ** attempt)
      // Stopped during the backoff: the loop's condition ends it.
      // Stryker disable next-line ArithmeticOperator,ObjectLiteral,BooleanLiteral,ArrowFunction: the jitter, as above; `ref`, whether the wait keeps the process alive; the catch's empty body (a wait shorter than the hold, `Math.min`, is killed: Retry-After)
      await sleep(Math.max(Math.random() * cap, peer.holdMs), undefined, { signal: peer.stop.signal, ref: false }).catch(() => {})
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

  /** One attempt: `ok` on a 2xx with a receiver's reply, else what to do next. Updates the peer's state either way. */
  async #attempt (peer: Peer, id: string, body: string, changes: NoticeChange[]): Promise<'ok' | 'retry' | 'give-up' | 'gone'> {
    const started = performance.now()
    try {
      const reply = await this.#client.post(peer.endpoint, id, body)
      // Stryker disable next-line ConditionalExpression: not pinned — a removed peer's reply landing before its loop ends (one stray 'delivered' event) cannot be ordered by a test
      if (!peer.active) return 'ok'
      // Stryker disable next-line ConditionalExpression: read only by the log line below
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
    // Stryker disable next-line all: defensive; going down, gone or stopped each settles the peer's waiters, so none of them is still waiting here
    if (peer.status.state === 'down' || peer.gone || !peer.active) return
    const reason = `no acknowledgement within ${this.#ackTimeoutMs} ms`
    peer.unresponsive(reason)
    this.#log.warn({ peer: peer.url, reason }, 'policy-cache: peer is down')
  }
}
