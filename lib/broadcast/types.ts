import { InvalidInputError } from '../errors.js'
import { assertChange, type Change, type LoggedChange, type Operation } from '../model.js'

/** Where a peer's receiver listens, relative to the peer's URL (DESIGN §4). */
export const WEBHOOK_PATH = '/webhook/refresh'
/** The most changes one notice may carry; a receiver rejects more, a sender splits. */
export const MAX_NOTICE_CHANGES = 1000

/**
 * One entry of a webhook notice: tenant `tenant` is at `revision` on the sender. It may carry the
 * change committed AT that revision (`operation` and `group`, plus `permission` or `user` as the
 * operation needs): a receiver cached at exactly `revision - 1` applies it without reading the
 * database. An entry is one object from writer to wire, so coalescing never pairs a revision with
 * another revision's data.
 */
export interface NoticeChange {
  tenant: string
  revision: number
  operation?: Operation
  group?: string
  permission?: string
  user?: string
}

/** The notice entry of a committed change: its revision, its operation and its data. */
export function noticeChange (tenant: string, change: LoggedChange): NoticeChange {
  const { op, revision, ...data } = change
  return { tenant, revision, operation: op, ...data }
}

/**
 * The change an entry carries, or undefined when it carries none (no `group`, `permission` or
 * `user`: an older sender's entry). Throws a coded 400 when the data is malformed or does not fit
 * `operation` (missing, or a field the operation has no use for).
 */
export function carriedChange (entry: NoticeChange): LoggedChange | undefined {
  const { operation: op, group, permission, user, revision } = entry
  if (group === undefined && permission === undefined && user === undefined) return undefined
  if (op === undefined) throw new InvalidInputError('change', 'carried data needs an operation')
  const needs = op === 'add-permission' || op === 'remove-permission'
    ? 'permission'
    : op === 'assign-user' || op === 'unassign-user' ? 'user' : 'group'
  if ((needs !== 'permission' && permission !== undefined) || (needs !== 'user' && user !== undefined)) {
    throw new InvalidInputError('change', `${op} carries ${needs === 'group' ? 'only group' : `group and ${needs} only`}`)
  }
  const change = (needs === 'permission' ? { op, group, permission } : needs === 'user' ? { op, group, user } : { op, group }) as Change
  // Presence and patterns (a missing group, permission or user is a 400 here).
  assertChange(change)
  return { ...change, revision }
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
