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
import type { NoticeChange } from './notice.js'
import type { AckSummary, PeerStatus } from './status.js'
import { BrokerSubscription, within, type BrokerLogger } from './subscription.js'
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
  log: BrokerLogger
  /** The client module to use instead of loading it (tests pass a fake); loaded with requireOptional when absent. */
  clientModule?: RedisModule | undefined
}

/** Notices over Redis pub/sub; not acknowledged. */
export class RedisTransport implements Transport {
  readonly type = 'redis' as const
  readonly #options: RedisTransportOptions
  readonly #redis: RedisModule
  readonly #subscription: BrokerSubscription
  #publisher: RedisClientLike | undefined
  #subscriber: RedisClientLike | undefined

  /**
   * Loads `ioredis`: throws FST_POLICY_CACHE_MISSING_DEPENDENCY naming it when it is not installed.
   * Connects nothing until `start`.
   */
  constructor (options: RedisTransportOptions) {
    this.#options = options
    // Stryker disable next-line StringLiteral: shown only when the package is not installed: test/package/consumer.test.ts (a packed install without it) checks it, too slow for a mutation run
    this.#redis = options.clientModule ?? requireOptional<RedisModule>('ioredis', 'the redis transport')
    const { channel, keys, serverId, log } = options
    this.#subscription = new BrokerSubscription({
      type: 'redis',
      acknowledged: false,
      channel,
      logField: 'channel',
      resubscribedMessage: 'policy-cache: subscribed on Redis again; resyncing every cached tenant',
      keys,
      serverId,
      log
    })
  }

  /** Connects both connections and subscribes; rejects when the first connection or SUBSCRIBE fails. */
  async start (sink: TransportSink): Promise<void> {
    const { channel } = this.#options
    const subscription = this.#subscription
    const inbox = subscription.open(sink)
    const publisher = this.#client('publish')
    const subscriber = this.#client('listen')
    this.#publisher = publisher
    this.#subscriber = subscriber
    publisher.on('error', (err) => { subscription.failed(err) })
    subscriber.on('error', (err) => { subscription.failed(err) })
    subscriber.on('message', (from, message) => {
      if (from !== channel) return
      // The inbox never rejects; the catch only keeps a bug from becoming an unhandled rejection.
      inbox.receive(message).catch(() => {})
    })
    subscriber.on('close', () => {
      if (subscription.state !== 'up') return
      subscription.stopProbe()
      subscription.lost('policy-cache: the Redis subscriber connection was lost; ioredis reconnects')
    })
    try {
      await subscriber.connect()
      await subscriber.subscribe(channel)
      await publisher.connect()
    } catch (err) {
      const reason = subscription.failed(err)
      subscriber.disconnect()
      publisher.disconnect()
      throw new Error(`the redis transport could not subscribe to "${channel}": ${reason}`, { cause: err })
    }
    // From now on every `ready` (a reconnect) subscribes again, then resyncs.
    subscriber.on('ready', () => { this.#resubscribe(subscriber) })
    await this.#subscribed()
  }

  /** PUBLISHes the envelope(s) without waiting for them: nobody acknowledges. Never rejects. */
  async publish (changes: NoticeChange[]): Promise<AckSummary> {
    const publisher = this.#publisher
    const subscription = this.#subscription
    if (publisher === undefined || subscription.closing) return { acked: 0, total: 0 }
    const { keys, serverId, databaseId, publicUrl, channel, maxPayloadBytes, log } = this.#options
    // Within the limit (at least 512 bytes: one bare entry always fits).
    const envelopes = encodeEnvelopes(keys, { origin: serverId, database: databaseId(), url: publicUrl }, changes, maxPayloadBytes, Math.floor(Date.now() / 1000))
    for (const envelope of envelopes) {
      subscription.published++
      // While Redis is away, ioredis queues the command; it fails it after its retries (maxRetriesPerRequest).
      publisher.publish(channel, envelope).catch((err: unknown) => {
        subscription.failed(err)
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
    return this.#subscription.status()
  }

  /** Stops probing and closes both connections. Idempotent. */
  async close (): Promise<void> {
    if (!this.#subscription.close()) return
    for (const client of [this.#subscriber, this.#publisher]) {
      if (client === undefined) continue
      // Stryker disable next-line StringLiteral: the message of a QUIT that timed out is swallowed just below (close never rejects)
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
    const subscription = this.#subscription
    if (subscription.closing) return
    subscriber.subscribe(this.#options.channel).then(
      () => this.#subscribed(),
      (err: unknown) => {
        subscription.failed(err)
        subscriber.disconnect(true)
      }).catch(() => {})
  }

  /**
   * The subscription is (again) made: probed — PING on the subscriber every `probeIntervalMs`, within
   * `probeTimeoutMs`, else it is dropped (ioredis reconnects) — and every cached tenant resynced.
   */
  async #subscribed (): Promise<void> {
    const subscriber = this.#subscriber as RedisClientLike
    const subscription = this.#subscription
    const { probeIntervalMs, probeTimeoutMs } = this.#options
    subscription.probe(probeIntervalMs,
      () => within(subscriber.ping(), probeTimeoutMs, 'the probe of the subscriber connection'),
      (err: unknown) => {
        // Only a subscription still up (after `close` the state is 'closed').
        if (subscription.state !== 'up') return
        subscription.lost('policy-cache: the Redis subscriber did not answer its probe; reconnecting it', subscription.failed(err))
        subscriber.disconnect(true)
      },
      () => subscription.state === 'up')
    await subscription.subscribed()
  }
}
