/**
 * The `redis` transport (docs/transports.md): Redis pub/sub through ioredis.
 *
 * Sending: `publish` sends the write's signed envelope once (PUBLISH on the channel, from a
 * publishing connection) and does not wait: nobody acknowledges, `peers` is `{ acked: 0, total: 0 }`
 * as with pg-notify; `minRevision` and the anti-entropy sync give the guarantees. An envelope over
 * `maxPayloadBytes` carries only tenant + revision (envelope.ts).
 *
 * Receiving: a dedicated subscriber connection. ioredis reconnects by itself; its own
 * re-subscription is turned off (`autoResubscribe: false`: its `ready` event comes before that
 * SUBSCRIBE is answered), so on every `ready` the transport SUBSCRIBEs itself and, once Redis
 * answered, resyncs every cached tenant. Each message goes through the {@link Inbox}. The subscriber
 * is probed (PING, allowed in subscriber mode) every `probeIntervalMs`; unanswered within
 * `probeTimeoutMs`, the connection is dropped and re-established (ioredis's backoff).
 */
import { requireOptional } from '../optional-dependency.js'
import { encodeEnvelopes } from './envelope.js'
import { Inbox, type InboxLogger } from './inbox.js'
import type { NoticeChange } from './notice.js'
import type { AckSummary, PeerStatus } from './status.js'
import type { Transport, TransportSink, TransportStatus } from './transport.js'

/** The part of an ioredis client the transport uses. */
export interface RedisClientLike {
  connect (): Promise<void>
  subscribe (channel: string): Promise<unknown>
  publish (channel: string, message: string): Promise<number>
  ping (): Promise<string>
  disconnect (reconnect?: boolean): void
  quit (): Promise<unknown>
  on (event: 'message', listener: (channel: string, message: string) => void): unknown
  on (event: 'ready' | 'close', listener: () => void): unknown
  on (event: 'error', listener: (err: Error) => void): unknown
}

/** The part of the `ioredis` module the transport uses. */
interface RedisModule {
  Redis: new (...args: unknown[]) => RedisClientLike
}

/** What a {@link RedisTransport} is built from (the `transport` option, resolved, and the instance's identity). */
export interface RedisTransportOptions {
  /** A Redis URL (`redis://host:port/db`) or an ioredis options object. */
  connection: string | Readonly<Record<string, unknown>>
  channel: string
  /** This instance's id: the envelopes' `origin`; messages with it are dropped. */
  serverId: string
  /** The store's database id, read per message (known once the store is migrated). */
  databaseId: () => string | undefined
  /** This instance's URL, when configured: carried in notices like the webhook's. */
  publicUrl?: string | undefined
  /** Signing and verification keys (`webhookSecret`). */
  keys: readonly Buffer[]
  probeIntervalMs: number
  probeTimeoutMs: number
  maxPayloadBytes: number
  log: InboxLogger & { info (obj: object, msg: string): void }
}

/** A failure's message. */
function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** Rejects after `ms` unless `promise` settles first. */
async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
    timer.unref()
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Notices over Redis pub/sub; not acknowledged. */
export class RedisTransport implements Transport {
  readonly type = 'redis' as const
  readonly #options: RedisTransportOptions
  readonly #redis: RedisModule
  #publisher: RedisClientLike | undefined
  #subscriber: RedisClientLike | undefined
  #inbox: Inbox | undefined
  #sink: TransportSink | undefined
  #state: TransportStatus['state'] = 'connecting'
  #subscribedAt: string | null = null
  #subscriptions = 0
  #lastError: string | null = null
  #published = 0
  #probeTimer: NodeJS.Timeout | undefined
  #closing = false

  /**
   * Loads `ioredis`: throws FST_POLICY_CACHE_MISSING_DEPENDENCY naming it when it is not installed.
   * Connects nothing until `start`.
   */
  constructor (options: RedisTransportOptions) {
    this.#options = options
    this.#redis = requireOptional<RedisModule>('ioredis', 'the redis transport')
  }

  /** Connects both connections and subscribes; rejects when the first connection or SUBSCRIBE fails. */
  async start (sink: TransportSink): Promise<void> {
    const { keys, serverId, log, channel } = this.#options
    this.#sink = sink
    const inbox = new Inbox({ keys, serverId, sink, log })
    this.#inbox = inbox
    const publisher = this.#client('publish')
    const subscriber = this.#client('listen')
    this.#publisher = publisher
    this.#subscriber = subscriber
    publisher.on('error', (err) => { this.#lastError = describe(err) })
    subscriber.on('error', (err) => { this.#lastError = describe(err) })
    subscriber.on('message', (from, message) => {
      if (from !== channel) return
      // The inbox never rejects; the catch only keeps a bug from becoming an unhandled rejection.
      inbox.receive(message).catch(() => {})
    })
    subscriber.on('close', () => {
      if (this.#closing || this.#state !== 'up') return
      this.#state = 'down'
      clearTimeout(this.#probeTimer)
      log.warn({ channel, reason: this.#lastError }, 'policy-cache: the Redis subscriber connection was lost; ioredis reconnects')
    })
    try {
      await subscriber.connect()
      await subscriber.subscribe(channel)
      await publisher.connect()
    } catch (err) {
      this.#lastError = describe(err)
      subscriber.disconnect()
      publisher.disconnect()
      throw new Error(`the redis transport could not subscribe to "${channel}": ${describe(err)}`, { cause: err })
    }
    // From now on every `ready` (a reconnect) subscribes again, then resyncs.
    subscriber.on('ready', () => { this.#resubscribe(subscriber) })
    await this.#subscribed()
  }

  /** PUBLISHes the envelope(s) without waiting for them: nobody acknowledges. Never rejects. */
  async publish (changes: NoticeChange[]): Promise<AckSummary> {
    const publisher = this.#publisher
    if (publisher === undefined || this.#closing) return { acked: 0, total: 0 }
    const { keys, serverId, databaseId, publicUrl, channel, maxPayloadBytes, log } = this.#options
    // Within the limit (at least 512 bytes: one bare entry always fits).
    const envelopes = encodeEnvelopes(keys, { origin: serverId, database: databaseId(), url: publicUrl }, changes, maxPayloadBytes, Math.floor(Date.now() / 1000))
    for (const envelope of envelopes) {
      this.#published++
      // While Redis is away, ioredis queues the command; it fails it after its retries (maxRetriesPerRequest).
      publisher.publish(channel, envelope).catch((err: unknown) => {
        this.#lastError = describe(err)
        log.warn({ err, channel }, 'policy-cache: publishing a notice on Redis failed; the other instances catch up at their next resync or sync')
      })
    }
    return { acked: 0, total: 0 }
  }

  /** No peers to wait for: every subscriber of the channel receives the notices. */
  peers (): PeerStatus[] {
    return []
  }

  /** The subscriber's state and the message counters. */
  status (): TransportStatus {
    const counters = this.#inbox?.counters ?? { received: 0, hints: 0, dropped: 0 }
    return {
      type: 'redis',
      state: this.#state,
      acknowledged: false,
      channel: this.#options.channel,
      subscribedAt: this.#subscribedAt,
      subscriptions: this.#subscriptions,
      lastError: this.#lastError,
      published: this.#published,
      ...counters
    }
  }

  /** Stops probing and closes both connections. Idempotent. */
  async close (): Promise<void> {
    if (this.#closing) return
    this.#closing = true
    this.#state = 'closed'
    clearTimeout(this.#probeTimer)
    for (const client of [this.#subscriber, this.#publisher]) {
      if (client === undefined) continue
      await within(client.quit(), 1000, 'closing a Redis connection').catch(() => {})
      client.disconnect()
    }
  }

  /** A client that reconnects forever, named for CLIENT LIST. */
  #client (role: string): RedisClientLike {
    const { connection, serverId } = this.#options
    const defaults = {
      connectionName: `policy-cache-${role}-${serverId}`.replace(/[^A-Za-z0-9_.-]/g, '_'),
      // Forever, 50 ms more per attempt up to 2 s (an options object may set its own).
      retryStrategy: (times: number) => Math.min(times * 50, 2000)
    }
    // Not overridable: connected in `start`, and re-subscribed by the transport itself.
    const forced = { lazyConnect: true, autoResubscribe: false }
    return typeof connection === 'string'
      ? new this.#redis.Redis(connection, { ...defaults, ...forced })
      : new this.#redis.Redis({ ...defaults, ...connection, ...forced })
  }

  /** After a reconnect: SUBSCRIBE again, then (once Redis answered) resync; a failure drops the connection for another try. */
  #resubscribe (subscriber: RedisClientLike): void {
    if (this.#closing) return
    subscriber.subscribe(this.#options.channel).then(
      () => { if (!this.#closing) return this.#subscribed() },
      (err: unknown) => {
        this.#lastError = describe(err)
        subscriber.disconnect(true)
      }).catch(() => {})
  }

  /** The subscription is (again) made: count it, probe it, and resync every cached tenant. */
  async #subscribed (): Promise<void> {
    const { log, channel } = this.#options
    this.#state = 'up'
    this.#subscribedAt = new Date().toISOString()
    this.#subscriptions++
    this.#scheduleProbe()
    if (this.#subscriptions > 1) log.info({ channel, subscriptions: this.#subscriptions }, 'policy-cache: subscribed on Redis again; resyncing every cached tenant')
    try {
      await this.#sink?.resubscribed()
    } catch (err) {
      log.warn({ err }, 'policy-cache: the resync after subscribing failed; the sync heals')
    }
  }

  /** Every `probeIntervalMs`: PING on the subscriber within `probeTimeoutMs`; else drop it (ioredis reconnects). */
  #scheduleProbe (): void {
    clearTimeout(this.#probeTimer)
    const subscriber = this.#subscriber
    if (this.#closing || subscriber === undefined) return
    const { probeIntervalMs, probeTimeoutMs, channel, log } = this.#options
    this.#probeTimer = setTimeout(() => {
      within(subscriber.ping(), probeTimeoutMs, 'the probe of the subscriber connection').then(
        () => { if (this.#state === 'up') this.#scheduleProbe() },
        (err: unknown) => {
          if (this.#closing || this.#state !== 'up') return
          this.#state = 'down'
          this.#lastError = describe(err)
          log.warn({ channel, reason: this.#lastError }, 'policy-cache: the Redis subscriber did not answer its probe; reconnecting it')
          subscriber.disconnect(true)
        })
    }, probeIntervalMs)
    this.#probeTimer.unref()
  }
}
