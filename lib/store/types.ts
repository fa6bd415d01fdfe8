import type { Change, LoggedChange, TenantSnapshot, WriteResult } from '../model.js'

/**
 * Where policies live. The built-in implementation (`KyselyPolicyStore`) works on any Kysely;
 * a host may pass its own object of this shape instead. Every method may throw; the plugin wraps
 * failures in `FST_POLICY_CACHE_STORE_UNAVAILABLE` except the coded errors listed below.
 */
export interface PolicyStore {
  /** Creates or upgrades the store's own tables. Safe to run from several processes at once. */
  migrate (): Promise<void>
  /**
   * Applies one change in one transaction: the mutation, the tenant's revision bump and a changelog
   * row. A change that changes nothing (already present / already absent) bumps nothing and returns
   * `{ changed: false, revision: <current> }`. `add-permission` and `assign-user` on a missing group
   * throw `GroupNotFoundError` (FST_POLICY_CACHE_GROUP_NOT_FOUND) and write nothing. Concurrent
   * writes to one tenant get unique, gap-free revisions.
   * @param origin the serverId of the instance writing, kept in the changelog
   */
  write (tenant: string, change: Change, origin: string): Promise<WriteResult>
  /** The tenant's whole policy and revision, read consistently (one transaction). Revision 0 and no groups for a tenant never written. */
  snapshot (tenant: string): Promise<TenantSnapshot>
  /**
   * The changes after `revision`, in order, up to the current revision; `[]` when `revision` is
   * current; `null` when the changelog no longer reaches back to `revision + 1` (the caller reloads).
   */
  changesSince (tenant: string, revision: number): Promise<LoggedChange[] | null>
  /** Current revisions of the given tenants (0 for a tenant never written), in one query. */
  revisions (tenants: readonly string[]): Promise<Map<string, number>>
  /** Resolves when the database answers a trivial query; used by `/health`. */
  ping (): Promise<void>
  /** Releases what the store itself created; never closes a host-owned connection. */
  close (): Promise<void>
}
