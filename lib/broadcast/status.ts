/**
 * What the broadcast layer reports: a write's acknowledgements, each peer's state for `/servers`, and
 * the delivery events the metrics count.
 */
import type { NoticeChange, NoticeReply } from './notice.js'

/** How many peers acknowledged a write within `ackTimeoutMs`, out of how many configured. */
export interface AckSummary {
  acked: number
  total: number
}

/** A tenant whose latest revision a peer has not acknowledged yet. */
export interface PeerLag {
  tenant: string
  /** The highest revision of the tenant the peer acknowledged; null when none (or forgotten). */
  acked: number | null
  /** Our revision of the tenant: the latest this instance sent. */
  revision: number
}

/** One peer as `/servers` shows it. Times are ISO strings, `null` until they happen. */
export interface PeerStatus {
  url: string
  serverId: string | null
  /** `gone`: the peer answered 410 and is sent nothing more (until it is configured anew). */
  state: 'up' | 'down' | 'unknown' | 'gone'
  lastSuccessAt: string | null
  lastFailureAt: string | null
  lastError: string | null
  consecutiveFailures: number
  delivered: number
  failed: number
  latencyMs: number | null
  /** The circuit breaker: `open` sends nothing until `nextAttemptAt`, `half-open` is sending its one probe. */
  circuit: 'closed' | 'open' | 'half-open'
  /** When sending resumes, while an open circuit or a `Retry-After` holds it; else null. */
  nextAttemptAt: string | null
  /** How many tenants the peer has not acknowledged our latest revision of. */
  tenantsBehind: number
  /** Those tenants (at most 100, most recently written first), each with the peer's acknowledged revision vs ours. */
  lag: PeerLag[]
  /** Where the peer comes from: the `peers` option, the database's membership, or both. */
  source: 'static' | 'membership' | 'both'
  /** A member's incarnation (new at each of its starts); null for a static peer. */
  incarnation: string | null
  /** How long ago a member's last heartbeat was (the database's clock); null for a static peer. */
  heartbeatAgeMs: number | null
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
