import type { Change, LoggedChange, TenantSnapshot, TenantVersion, WriteResult } from '../model.js'

/**
 * Where policies live. The built-in implementation (`KyselyPolicyStore`) works on any Kysely;
 * a host may pass its own object of this shape instead. Every method may throw; the plugin wraps
 * failures in `FST_POLICY_CACHE_STORE_UNAVAILABLE` except the coded errors listed below.
 */
export interface PolicyStore {
  /**
   * Creates or upgrades the store's own tables. Safe to run from several processes at once. The first
   * run on a database also creates its {@link PolicyStore.databaseId}.
   */
  migrate (): Promise<void>
  /**
   * The id of the database (after `migrate`): random, created once with the store's tables, the same
   * for every process sharing them, different for every other database. Notices carry it, and an
   * instance refuses notices from another database (409 FST_POLICY_CACHE_FOREIGN_DATABASE).
   */
  databaseId (): Promise<string>
  /**
   * Applies one change in one transaction: the mutation, the tenant's revision bump and a changelog
   * row, and the tenant's digest updated by the facts the change adds and removes (lib/digest.ts;
   * `delete-group` removes the group's grants and memberships too). A change that changes nothing
   * (already present / already absent) bumps nothing and returns
   * `{ changed: false, revision: <current>, digest: <current> }`. `add-permission` and `assign-user` on a missing group
   * throw `GroupNotFoundError` (FST_POLICY_CACHE_GROUP_NOT_FOUND) and write nothing. Concurrent
   * writes to one tenant get unique, gap-free revisions.
   * @param origin the serverId of the instance writing, kept in the changelog
   */
  write (tenant: string, change: Change, origin: string): Promise<WriteResult>
  /**
   * The tenant's whole policy, revision and digest, read consistently (one transaction). Revision 0,
   * no groups and `EMPTY_DIGEST` for a tenant never written.
   */
  snapshot (tenant: string): Promise<TenantSnapshot>
  /**
   * The changes after `revision`, in order, up to the current revision; `[]` when `revision` is
   * current; `null` when the changelog no longer reaches back to `revision + 1` (the caller reloads).
   */
  changesSince (tenant: string, revision: number): Promise<LoggedChange[] | null>
  /**
   * Current revision and digest of each of the given tenants (`{ revision: 0, digest: EMPTY_DIGEST }`
   * for a tenant never written), in one query. Anti-entropy compares both with the cache.
   */
  revisions (tenants: readonly string[]): Promise<Map<string, TenantVersion>>
  /** Resolves when the database answers a trivial query; used by `/health`. */
  ping (): Promise<void>
  /** Releases what the store itself created; never closes a host-owned connection. */
  close (): Promise<void>
}
