/**
 * The broadcaster (DESIGN §3, §6): tells every peer which tenants moved to which revision, over signed
 * webhooks, and lets a write wait a bounded time for the peers it believes up.
 *
 * Per peer: a queue that coalesces to the highest revision per tenant, at most one request in flight
 * (what piles up meanwhile goes out as one notice), retries with capped full-jitter backoff, and a
 * state: `unknown` until the first answer, `up` after a 2xx, `down` after a failed attempt or a missed
 * acknowledgement — a `down` peer is not waited for until a later delivery to it succeeds.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { newMessageId, sign, WEBHOOK_HEADERS } from './signature.js'
import { MAX_NOTICE_CHANGES, WEBHOOK_PATH } from './types.js'
import type { AckSummary, Notice, NoticeChange, NoticeReply, PeerStatus } from './types.js'

/** Defaults of {@link BroadcasterOptions}. */
export const BROADCAST_DEFAULTS = Object.freeze({
  requestTimeoutMs: 2000,
  ackTimeoutMs: 200,
  retry: Object.freeze({ retries: 5, minDelayMs: 50, maxDelayMs: 5000 })
})

/** A notice body is split before it grows past this many bytes (receivers accept 64 KiB by default). */
export const MAX_NOTICE_BYTES = 32 * 1024

/** Replies larger than this are treated as a failed delivery. */
const MAX_REPLY_BYTES = 1024 * 1024

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
}

/**
 * One delivery event, for metrics: `delivered` (a receiver's 2xx), `failed` (one failed attempt),
 * `retry` (a retry scheduled after a failure), `given-up` (retries exhausted; the sync heals).
 */
export interface DeliveryEvent {
  kind: 'delivered' | 'failed' | 'retry' | 'given-up'
  /** The peer's configured URL. */
  peer: string
  /** The changes the notice carries. */
  changes: readonly NoticeChange[]
  /** `delivered` and `failed`: how long the attempt took. */
  latencyMs?: number
  /** `delivered`: the receiver's revision per tenant (null: not cached there). */
  revisions?: NoticeReply['revisions']
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
  /** Retry schedule; each field defaults separately (5 retries, 50 ms, 5000 ms). */
  retry?: Partial<RetryOptions>
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
  #pending = new Map<string, NoticeChange>()
  #waiters = new Set<Waiter>()

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
      latencyMs: null
    }
  }

  /** Whether the peer is still configured and the broadcaster open. */
  get active (): boolean {
    return !this.stop.signal.aborted
  }

  /** Whether changes wait to be sent. */
  get hasPending (): boolean {
    return this.#pending.size > 0
  }

  /** Queues changes, keeping the highest revision per tenant. */
  enqueue (changes: NoticeChange[]): void {
    for (const change of changes) {
      const queued = this.#pending.get(change.tenant)
      if (queued === undefined || change.revision > queued.revision) this.#pending.set(change.tenant, change)
    }
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
      latencyMs
    })
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

  /** Records a failed attempt, marks the peer down and releases its waiters. */
  failed (reason: string): void {
    Object.assign(this.status, {
      state: 'down',
      lastFailureAt: new Date().toISOString(),
      lastError: reason,
      consecutiveFailures: this.status.consecutiveFailures + 1,
      failed: this.status.failed + 1
    })
    this.releaseAll()
  }

  /** Marks the peer down for missing an acknowledgement (its request may still be in flight). */
  unresponsive (reason: string): void {
    Object.assign(this.status, { state: 'down', lastFailureAt: new Date().toISOString(), lastError: reason })
    this.releaseAll()
  }
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

  /** A snapshot of every peer's state and counters, in configuration order. */
  status (): PeerStatus[] {
    return [...this.#peers.values()].map((peer) => ({ ...peer.status }))
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

  /** Sends notices until the peer's queue is empty; what is queued meanwhile goes out as one notice. */
  async #drain (peer: Peer): Promise<void> {
    try {
      while (peer.active && peer.hasPending) await this.#deliver(peer, peer.take())
    } finally {
      peer.sending = false
    }
  }

  /** Sends one notice, retrying it under the same message id until it succeeds or is given up. */
  async #deliver (peer: Peer, changes: NoticeChange[]): Promise<void> {
    const id = newMessageId()
    const notice: Notice = { type: 'policy.changed', origin: this.#serverId, changes }
    const body = JSON.stringify(notice)
    for (let attempt = 0; peer.active; attempt++) {
      if (await this.#attempt(peer, id, body, changes)) return
      if (attempt >= this.#retry.retries) break
      this.#emit({ kind: 'retry', peer: peer.url, changes })
      const cap = Math.min(this.#retry.maxDelayMs, this.#retry.minDelayMs * 2 ** attempt)
      try {
        await sleep(Math.random() * cap, undefined, { signal: peer.stop.signal, ref: false })
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

  /** One request; true on a 2xx with a receiver's reply. Updates the peer's state either way. */
  async #attempt (peer: Peer, id: string, body: string, changes: NoticeChange[]): Promise<boolean> {
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
        throw new Error(`HTTP ${response.statusCode}`)
      }
      const reply = await response.body.json() as Partial<NoticeReply> | null
      if (typeof reply?.serverId !== 'string') throw new Error('the reply is not a webhook receiver\'s')
      if (!peer.active) return true
      const wasDown = peer.status.state === 'down'
      const latencyMs = performance.now() - started
      peer.succeeded(reply.serverId, Math.round(latencyMs), changes)
      this.#emit({ kind: 'delivered', peer: peer.url, changes, latencyMs, revisions: reply.revisions })
      if (wasDown) this.#log.info({ peer: peer.url, serverId: reply.serverId }, 'policy-cache: peer is up again')
      return true
    } catch (err) {
      if (!peer.active) return false
      const wasDown = peer.status.state === 'down'
      peer.failed(describe(err))
      this.#emit({ kind: 'failed', peer: peer.url, changes, latencyMs: performance.now() - started })
      if (!wasDown) this.#log.warn({ peer: peer.url, reason: peer.status.lastError }, 'policy-cache: peer is down')
      return false
    }
  }

  #markUnresponsive (peer: Peer): void {
    if (peer.status.state === 'down' || !peer.active) return
    const reason = `no acknowledgement within ${this.#ackTimeoutMs} ms`
    peer.unresponsive(reason)
    this.#log.warn({ peer: peer.url, reason }, 'policy-cache: peer is down')
  }
}
