import type { Operation } from '../model.js'

/** Where a peer's receiver listens, relative to the peer's URL (DESIGN §4). */
export const WEBHOOK_PATH = '/webhook/refresh'
/** The most changes one notice may carry; a receiver rejects more, a sender splits. */
export const MAX_NOTICE_CHANGES = 1000

/** One entry of a webhook notice: tenant `tenant` is at `revision` on the sender. */
export interface NoticeChange {
  tenant: string
  revision: number
  operation?: Operation
}

/** The webhook body (DESIGN §5). */
export interface Notice {
  type: 'policy.changed'
  origin: string
  changes: NoticeChange[]
}

/** What a receiver answers: its revision for each tenant named, `null` when it has the tenant uncached. */
export interface NoticeReply {
  serverId: string
  revisions: Record<string, number | null>
}

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
}
