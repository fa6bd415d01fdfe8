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

/** One peer as `/servers` shows it. Times are ISO strings, `null` until they happen. */
export interface PeerStatus {
  url: string
  serverId: string | null
  state: 'up' | 'down' | 'unknown'
  lastSuccessAt: string | null
  lastFailureAt: string | null
  lastError: string | null
  consecutiveFailures: number
  delivered: number
  failed: number
  latencyMs: number | null
}
