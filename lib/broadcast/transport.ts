/**
 * The transport interface (docs/transports.md): how a write's notice reaches the other instances,
 * and how theirs reach this one. Every transport carries the same notice (lib/broadcast/notice.ts),
 * signed with the same Standard Webhooks keys (lib/broadcast/signature.ts), and hands what it
 * receives to the engine through one {@link TransportSink}.
 *
 *   write → store transaction [→ `inTransaction` (pg-notify)] → commit → own cache → `publish` → AckSummary
 *   received → verified → `sink.deliver` (the webhook receiver's path) | unverifiable → `sink.hint`
 *   (re)subscribed → `sink.resubscribed` (resync every cached tenant)
 *
 * Implementations: `WebhookTransport` (webhook-transport.ts, the default), `PgNotifyTransport`
 * (pg-notify.ts), `NatsTransport` (nats.ts) and `RedisTransport` (redis.ts): `publish` waits for replies or not, `start`
 * subscribes, `status` reports the subscription.
 */
import type { WriteTransaction } from '../store/types.js'
import type { NoticeChange, NoticeReply, ReceivedNotice } from './notice.js'
import type { AckSummary, PeerStatus } from './status.js'

/** The transports this version has. */
export type TransportType = 'webhook' | 'pg-notify' | 'nats' | 'redis'

/**
 * Where a transport hands what it receives. Implemented by the plugin over the engine; never
 * rejects into the transport for a notice's content (a failure is logged by the caller).
 */
export interface TransportSink {
  /**
   * A verified notice from another instance: the same path as the webhook receiver's — catch up
   * cached tenants behind it, apply a carried change where it fits. Resolves with this instance's
   * revision per tenant named (null: not cached). Rejects with a coded error (e.g. 409 for a
   * notice from another database).
   */
  deliver (notice: ReceivedNotice): Promise<NoticeReply['revisions']>
  /**
   * An unverifiable message naming tenants: nothing it carries is applied; each named tenant that is
   * cached and behind the revision named reads the changelog (what the database says, only).
   */
  hint (tenants: ReadonlyArray<{ tenant: string, revision: number }>): Promise<void>
  /**
   * The subscription was established or re-established: notices may have been missed meanwhile,
   * so every cached tenant is resynced (one anti-entropy pass, at once).
   */
  resubscribed (): Promise<void>
}

/** What a transport reports for `/servers`, `/health` and `/metrics`. */
export interface TransportStatus {
  type: TransportType
  /**
   * `up`: subscribed (or, for webhooks, the receiver route serves); `connecting`: the first
   * subscription is being made; `down`: lost, being re-established; `closed`: after `close`.
   */
  state: 'up' | 'connecting' | 'down' | 'closed'
  /** Whether a write waits for acknowledgements (webhook, nats: yes; pg-notify, redis: no). */
  acknowledged: boolean
  /** The channel or subject listened on; null for webhooks. */
  channel: string | null
  /** When the current subscription was made (ISO), null when none. */
  subscribedAt: string | null
  /** Subscriptions made since start (the first one included): each one resynced every cached tenant. */
  subscriptions: number
  /** The last failure of the subscription (connection lost, probe failed), null when none. */
  lastError: string | null
  /** Messages published (one per pg_notify, NATS publish or Redis PUBLISH), excluding webhook deliveries (see `/servers` peers). */
  published: number
  /** Verified notices from other instances handed to the engine. */
  received: number
  /** Unverifiable messages that only made the receiver read the changelog. */
  hints: number
  /** Messages dropped: malformed, replayed, or this instance's own. */
  dropped: number
}

/** How notices travel between instances: one implementation per transport. */
export interface Transport {
  /** Which transport this is. */
  readonly type: TransportType
  /**
   * Optional: publishes inside the write's transaction, before the commit (pg-notify). The engine
   * passes it to the store's write (`StoreWriteOptions.committing`); a rejection fails the write.
   */
  readonly inTransaction?: ((tx: WriteTransaction, changes: NoticeChange[]) => Promise<void>) | undefined
  /**
   * Starts receiving: subscribes, and tells `sink` of every notice and (re)subscription from then
   * on. Resolves once the first subscription is made; rejects when it cannot be (registration fails).
   */
  start (sink: TransportSink): Promise<void>
  /**
   * After a write committed and was applied here: sends its notice (unless `inTransaction` did) and
   * resolves with the acknowledgements the write waited for — `{ acked: 0, total: 0 }` for a
   * transport without acknowledgements. Never rejects.
   */
  publish (changes: NoticeChange[]): Promise<AckSummary>
  /** The peers a write waits for, as `/servers` lists them (none for a transport without acknowledgements). */
  peers (): PeerStatus[]
  /** The subscription's state and counters. */
  status (): TransportStatus
  /** Unsubscribes and releases what the transport opened. Idempotent. */
  close (): Promise<void>
}
