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
import { Inbox, type InboxLogger } from './inbox.js'
import type { NoticeChange } from './notice.js'
import type { AckSummary, PeerStatus } from './status.js'
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
export interface PgNotifyLogger extends InboxLogger {
  info (obj: object, msg: string): void
}

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

/** A failure's message (pg and `within` reject with Errors). */
function describe (err: unknown): string {
  return String((err as Error).message)
}

/** Notices over PostgreSQL LISTEN/NOTIFY, sent inside the write's transaction; not acknowledged. */
export class PgNotifyTransport implements Transport {
  readonly type = 'pg-notify' as const
  readonly #options: PgNotifyTransportOptions
  readonly #pg: PgModule
  readonly #config: Record<string, unknown>
  #inbox: Inbox | undefined
  /** The subscribed connection; undefined while (re)connecting. */
  #client: ListenClient | undefined
  #state: TransportStatus['state'] = 'connecting'
  #subscribedAt: string | null = null
  #subscriptions = 0
  #lastError: string | null = null
  #published = 0
  /** Consecutive failed subscription attempts: the backoff's exponent. */
  #attempt = 0
  #reconnectTimer: NodeJS.Timeout | undefined
  #probeTimer: NodeJS.Timeout | undefined
  #closing = false

  /**
   * Loads `pg`: throws FST_POLICY_CACHE_MISSING_DEPENDENCY naming it when it is not installed.
   * Connects nothing until `start`.
   */
  constructor (options: PgNotifyTransportOptions) {
    this.#options = options
    this.#pg = requireOptional<PgModule>('pg', 'the pg-notify transport')
    const given = typeof options.connection === 'string' ? { connectionString: options.connection } : { ...options.connection }
    // Named, so that operators (and tests) find the listening session in pg_stat_activity.
    this.#config = { application_name: `policy-cache listen ${options.serverId}`.slice(0, 63), keepAlive: true, connectionTimeoutMillis: 5000, ...given }
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
    const { keys, serverId, log } = this.#options
    const inbox = new Inbox({ keys, serverId, sink, log })
    this.#inbox = inbox
    try {
      await this.#subscribe(inbox, sink)
    } catch (err) {
      this.#lastError = describe(err)
      throw new Error(`the pg-notify transport could not LISTEN on "${this.#options.channel}": ${describe(err)}`, { cause: err })
    }
  }

  /** The notice went out with the commit already: nothing to send, nobody acknowledges. */
  async publish (_changes: NoticeChange[]): Promise<AckSummary> {
    this.#published++
    return { acked: 0, total: 0 }
  }

  /** No peers to wait for: every listener on the channel receives the notices. */
  peers (): PeerStatus[] {
    return []
  }

  /** The listening connection's state and the message counters. */
  status (): TransportStatus {
    const counters = this.#inbox?.counters ?? { received: 0, hints: 0, dropped: 0 }
    return {
      type: 'pg-notify',
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

  /** Stops probing and reconnecting and closes the listening connection. Idempotent. */
  async close (): Promise<void> {
    if (this.#closing) return
    this.#closing = true
    this.#state = 'closed'
    clearTimeout(this.#reconnectTimer)
    clearTimeout(this.#probeTimer)
    const client = this.#client
    this.#client = undefined
    if (client !== undefined) await this.#discard(client)
  }

  /** One subscription attempt: connect, LISTEN, then tell the sink (resync). Rejects when it fails. */
  async #subscribe (inbox: Inbox, sink: TransportSink): Promise<void> {
    const { channel, log } = this.#options
    const client = new this.#pg.Client(this.#config)
    const retry = (): Promise<void> => this.#subscribe(inbox, sink)
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
    if (this.#closing) {
      await this.#discard(client)
      return
    }
    this.#client = client
    this.#state = 'up'
    this.#subscribedAt = new Date().toISOString()
    this.#subscriptions++
    this.#attempt = 0
    this.#scheduleProbe(client, retry)
    if (this.#subscriptions > 1) log.info({ channel, subscriptions: this.#subscriptions }, 'policy-cache: listening on the pg-notify channel again; resyncing every cached tenant')
    try {
      await sink.resubscribed()
    } catch (err) {
      log.warn({ err }, 'policy-cache: the resync after subscribing failed; the sync heals')
    }
  }

  /** The subscribed connection failed (error, end, or a probe): drop it and re-establish it. */
  #lost (client: ListenClient, err: unknown, retry: () => Promise<void>): void {
    // Only the subscribed connection (`close` clears it before ending it).
    if (client !== this.#client) return
    this.#client = undefined
    this.#state = 'down'
    this.#lastError = describe(err)
    clearTimeout(this.#probeTimer)
    this.#options.log.warn({ channel: this.#options.channel, reason: this.#lastError }, 'policy-cache: the pg-notify listening connection was lost; re-establishing it')
    this.#discard(client).catch(() => {})
    this.#scheduleReconnect(retry)
  }

  #scheduleReconnect (retry: () => Promise<void>): void {
    if (this.#closing) return
    const { minDelayMs, maxDelayMs } = this.#options.reconnect
    const cap = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(this.#attempt, 30))
    this.#attempt++
    this.#reconnectTimer = setTimeout(() => {
      retry().catch((err: unknown) => {
        this.#lastError = describe(err)
        this.#options.log.debug({ channel: this.#options.channel, reason: this.#lastError, attempt: this.#attempt }, 'policy-cache: re-establishing the pg-notify listening connection failed; retrying')
        this.#scheduleReconnect(retry)
      })
    }, Math.max(minDelayMs, Math.random() * cap))
    this.#reconnectTimer.unref()
  }

  /** Every `probeIntervalMs`: `select 1` on the listening connection, within `probeTimeoutMs`. */
  #scheduleProbe (client: ListenClient, retry: () => Promise<void>): void {
    const { probeIntervalMs, probeTimeoutMs } = this.#options
    // Cleared when the connection is lost or the transport closes.
    this.#probeTimer = setTimeout(() => {
      within(client.query('select 1'), probeTimeoutMs, 'the probe of the listening connection').then(
        // Unless it was lost or closed meanwhile.
        () => { if (client === this.#client) this.#scheduleProbe(client, retry) },
        (err: unknown) => this.#lost(client, err, retry))
    }, probeIntervalMs)
    this.#probeTimer.unref()
  }

  /** Ends a connection no longer used, and destroys its socket so that a blackholed one cannot linger. */
  async #discard (client: ListenClient): Promise<void> {
    const ending = client.end().catch(() => {})
    const stream = (client as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream
    stream?.destroy?.()
    await within(ending, 1000, 'closing the listening connection').catch(() => {})
  }
}
