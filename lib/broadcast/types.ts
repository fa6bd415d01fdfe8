import type { Operation } from '../model.js'

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
