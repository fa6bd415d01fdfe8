/**
 * The `pg-notify` transport (docs/transports.md): PostgreSQL LISTEN/NOTIFY.
 *
 * Sending: `inTransaction` issues `pg_notify(channel, envelope)` inside the write's own transaction
 * (lib/store/kysely-store.ts, `StoreWriteOptions.committing`), so PostgreSQL delivers the notice exactly
 * when the change commits — a crash between commit and notify cannot lose it. No acknowledgements:
 * `publish` answers `{ acked: 0, total: 0 }`; `minRevision` and the anti-entropy sync give the
 * guarantees. An envelope over `maxPayloadBytes` carries only tenant + revision (envelope.ts).
 *
 * Receiving: one dedicated connection per instance (the `pg` package, loaded when the transport is
 * built) LISTENs on the channel; each message goes through the {@link Inbox} (verified → the
 * engine's notice path; unverifiable → a changelog read at most; own origin dropped). The connection
 * is probed (`select 1`) every `probeIntervalMs`; lost or unanswering, it is dropped and
 * re-established with full-jitter backoff, and every (re)subscription resyncs every cached tenant.
 */
import { requireOptional } from '../optional-dependency.js'
import type { WriteTransaction } from '../store/types.js'
import { encodeEnvelopes } from './envelope.js'
import type { Inbox } from './inbox.js'
import type { NoticeChange } from './notice.js'
import type { AckSummary, PeerStatus } from './status.js'
import { BrokerSubscription, describe, within, type BrokerLogger } from './subscription.js'
import type { Transport, TransportSink, TransportStatus } from './transport.js'

/** One NOTIFY as `pg` delivers it. */
export interface PgNotification {
  channel: string
  payload?: string | undefined
  processId: number
}

/** The part of a `pg` Client the transport uses. */
export interface ListenClient {
  connect (): Promise<unknown>
  query (text: string): Promise<unknown>
  end (): Promise<void>
  on (event: 'notification', listener: (message: PgNotification) => void): unknown
  on (event: 'error', listener: (err: Error) => void): unknown
  on (event: 'end', listener: () => void): unknown
}

/** The part of the `pg` module the transport uses. */
interface PgModule {
  Client: new (config: Record<string, unknown>) => ListenClient
}

/** The part of a pino logger the transport writes to. */
export type PgNotifyLogger = BrokerLogger

/** What a {@link PgNotifyTransport} is built from (the `transport` option, resolved, and the instance's identity). */
export interface PgNotifyTransportOptions {
  /** The listening connection: a connection string or a `pg` client configuration. */
  connection: string | Readonly<Record<string, unknown>>
  /** The channel (validated by the options: a PostgreSQL identifier, quoted as such). */
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
  reconnect: Readonly<{ minDelayMs: number, maxDelayMs: number }>
  maxPayloadBytes: number
  log: PgNotifyLogger
  /** The client module to use instead of loading it (tests pass a fake); loaded with requireOptional when absent. */
  clientModule?: PgModule | undefined
}

/** Notices over PostgreSQL LISTEN/NOTIFY, sent inside the write's transaction; not acknowledged. */
export class PgNotifyTransport implements Transport {
  readonly type = 'pg-notify' as const
  readonly #options: PgNotifyTransportOptions
  readonly #pg: PgModule
  readonly #config: Record<string, unknown>
  readonly #subscription: BrokerSubscription
  /** The subscribed connection; undefined while (re)connecting. */
  #client: ListenClient | undefined
  /** Consecutive failed subscription attempts: the backoff's exponent. */
  #attempt = 0
  #reconnectTimer: NodeJS.Timeout | undefined

  /**
   * Loads `pg`: throws FST_POLICY_CACHE_MISSING_DEPENDENCY naming it when it is not installed.
   * Connects nothing until `start`.
   */
  constructor (options: PgNotifyTransportOptions) {
    this.#options = options
    // Stryker disable next-line StringLiteral: shown only when the package is not installed: test/package/consumer.test.ts (a packed install without it) checks it, too slow for a mutation run
    this.#pg = options.clientModule ?? requireOptional<PgModule>('pg', 'the pg-notify transport')
    const given = typeof options.connection === 'string' ? { connectionString: options.connection } : { ...options.connection }
    // Named, so that operators (and tests) find the listening session in pg_stat_activity.
    this.#config = { application_name: `policy-cache listen ${options.serverId}`.slice(0, 63), keepAlive: true, connectionTimeoutMillis: 5000, ...given }
    const { channel, keys, serverId, log } = options
    this.#subscription = new BrokerSubscription({
      type: 'pg-notify',
      acknowledged: false,
      channel,
      logField: 'channel',
      resubscribedMessage: 'policy-cache: listening on the pg-notify channel again; resyncing every cached tenant',
      keys,
      serverId,
      log
    })
  }

  /**
   * Publishes inside the write's transaction: `pg_notify` of each envelope (one, unless the notice
   * had to be split). PostgreSQL sends them when, and only if, the transaction commits.
   */
  readonly inTransaction = async (tx: WriteTransaction, changes: NoticeChange[]): Promise<void> => {
    const { keys, serverId, databaseId, publicUrl, maxPayloadBytes, channel } = this.#options
    const envelopes = encodeEnvelopes(keys, { origin: serverId, database: databaseId(), url: publicUrl }, changes, maxPayloadBytes, Math.floor(Date.now() / 1000))
    for (const envelope of envelopes) await tx.notify(channel, envelope)
  }

  /** Subscribes (LISTEN) and resolves once subscribed; rejects when the first attempt fails. */
  async start (sink: TransportSink): Promise<void> {
    const inbox = this.#subscription.open(sink)
    try {
      await this.#subscribe(inbox)
    } catch (err) {
      throw new Error(`the pg-notify transport could not LISTEN on "${this.#options.channel}": ${this.#subscription.failed(err)}`, { cause: err })
    }
  }

  /** The notice went out with the commit already: nothing to send, nobody acknowledges. */
  async publish (_changes: NoticeChange[]): Promise<AckSummary> {
    this.#subscription.published++
    return { acked: 0, total: 0 }
  }

  /** No peers to wait for: every listener on the channel receives the notices. */
  peers (): PeerStatus[] {
    return []
  }

  /** The listening connection's state and the message counters. */
  status (): TransportStatus {
    return this.#subscription.status()
  }

  /** Stops probing and reconnecting and closes the listening connection. Idempotent. */
  async close (): Promise<void> {
    if (!this.#subscription.close()) return
    clearTimeout(this.#reconnectTimer)
    const client = this.#client
    this.#client = undefined
    if (client !== undefined) await this.#discard(client)
  }

  /** One subscription attempt: connect, LISTEN, then tell the sink (resync). Rejects when it fails. */
  async #subscribe (inbox: Inbox): Promise<void> {
    const { channel } = this.#options
    const client = new this.#pg.Client(this.#config)
    const retry = (): Promise<void> => this.#subscribe(inbox)
    // Until this client is the subscribed one, its failures are this attempt's (the catch below).
    client.on('error', (err) => this.#lost(client, err, retry))
    client.on('end', () => this.#lost(client, new Error('the listening connection ended'), retry))
    // Only the channel LISTENed on is delivered (a discarded connection's late message is a replayed id).
    client.on('notification', (message) => {
      // The inbox never rejects; the catch only keeps a bug from becoming an unhandled rejection.
      inbox.receive(String(message.payload)).catch(() => {})
    })
    try {
      await client.connect()
      // A validated identifier (CHANNEL_PATTERN), quoted so that its case is kept as pg_notify uses it.
      await client.query(`LISTEN "${channel}"`)
    } catch (err) {
      await this.#discard(client)
      throw err
    }
    if (this.#subscription.closing) {
      await this.#discard(client)
      return
    }
    this.#client = client
    this.#attempt = 0
    // Every `probeIntervalMs`, `select 1` within `probeTimeoutMs` (unless the connection was lost or closed meanwhile).
    const { probeIntervalMs, probeTimeoutMs } = this.#options
    this.#subscription.probe(probeIntervalMs,
      () => within(client.query('select 1'), probeTimeoutMs, 'the probe of the listening connection'),
      (err) => this.#lost(client, err, retry),
      () => client === this.#client)
    await this.#subscription.subscribed()
  }

  /** The subscribed connection failed (error, end, or a probe): drop it and re-establish it. */
  #lost (client: ListenClient, err: unknown, retry: () => Promise<void>): void {
    // Only the subscribed connection (`close` clears it before ending it).
    if (client !== this.#client) return
    this.#client = undefined
    this.#subscription.stopProbe()
    this.#subscription.lost('policy-cache: the pg-notify listening connection was lost; re-establishing it', describe(err))
    this.#discard(client).catch(() => {})
    this.#scheduleReconnect(retry)
  }

  /** Tries `retry` after the backoff's delay, and again after each failure, until it succeeds or `close` is called. */
  #scheduleReconnect (retry: () => Promise<void>): void {
    const { minDelayMs, maxDelayMs } = this.#options.reconnect
    const cap = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(this.#attempt, 30))
    this.#attempt++
    this.#reconnectTimer = setTimeout(() => {
      retry().catch((err: unknown) => {
        // Closed during the attempt: its failure is no news, and nothing is tried again.
        if (this.#subscription.closing) return
        const reason = this.#subscription.failed(err)
        this.#options.log.debug({ channel: this.#options.channel, reason, attempt: this.#attempt }, 'policy-cache: re-establishing the pg-notify listening connection failed; retrying')
        this.#scheduleReconnect(retry)
      })
    }, Math.max(minDelayMs, Math.random() * cap))
    this.#reconnectTimer.unref()
  }

  /** Ends a connection no longer used, and destroys its socket so that a blackholed one cannot linger. */
  async #discard (client: ListenClient): Promise<void> {
    const ending = client.end().catch(() => {})
    const stream = (client as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream
    stream?.destroy?.()
    // Stryker disable next-line StringLiteral: the message of an end() that timed out is swallowed just below (discarding never rejects)
    await within(ending, 1000, 'closing the listening connection').catch(() => {})
  }
}
