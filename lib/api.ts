/**
 * `app.policyCache`: the policy engine's public interface, the same operations as the routes
 * without HTTP. Ids are tenant, group and user identifiers (`^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$`);
 * a malformed one, or a checked permission containing `*`, throws FST_POLICY_CACHE_INVALID_INPUT
 * (400). A database that fails or does not answer within `catchUpTimeoutMs` rejects with
 * FST_POLICY_CACHE_STORE_UNAVAILABLE (503).
 */
import type { preHandlerHookHandler } from 'fastify'
import type { PeerStatus } from './broadcast/status.js'
import type { Watch, WatchOptions } from './cache/watchers.js'
import type { Change, WriteOptions } from './model.js'
import type { PageOptions } from './page.js'
import type {
  AccessCheck, BatchOutcome, ChangesFeed, ChangesOptions, CheckBatchOutcome, CheckOptions, Decision, EngineStats, GroupPermissionsPage, GroupsPage, GroupUsersPage, HoldersPage,
  ImportDocument, TenantDeletion, TenantsOptions, TenantsPage, TenantView, UserView, WriteOutcome
} from './policy-cache.js'
import type { TenantDocument } from './model.js'

export interface PolicyCacheApi {
  /** This instance's id, as its peers and `/servers` see it. */
  readonly serverId: string

  /**
   * The synchronous hot path: may `user` do `permission` in `tenant`, from memory. `undefined` while
   * the tenant is not loaded — the call then starts loading it in the background (one load at a time
   * per tenant; the first failure of an outage is logged, and the recovery), so a later call answers. `warm` or the `preload` option load tenants ahead.
   */
  checkSync (tenant: string, user: string, permission: string): boolean | undefined

  /** May `user` do `permission` in `tenant`? Loads the tenant on first use; `minRevision` catches up first. */
  check (tenant: string, user: string, permission: string, options?: CheckOptions): Promise<boolean>

  /** Like `check`, with the revision the answer was given from. */
  decide (tenant: string, user: string, permission: string, options?: CheckOptions): Promise<Decision>

  /**
   * Many (user, permission) pairs answered from one revision: `results` aligned with `checks`. A
   * malformed check → 400 FST_POLICY_CACHE_INVALID_INPUT naming `checks[<index>]`; more than
   * `maxBatchChecks` → 413 FST_POLICY_CACHE_CHECK_BATCH_TOO_LARGE. `minRevision` as for `check`.
   */
  checkBatch (tenant: string, checks: readonly AccessCheck[], options?: CheckOptions): Promise<CheckBatchOutcome>

  /**
   * A preHandler admitting only requests whose identity (the `identify` option) holds `permission`:
   * 401 FST_POLICY_CACHE_UNIDENTIFIED without an identity, 403 FST_POLICY_CACHE_FORBIDDEN without the
   * permission. Throws FST_POLICY_CACHE_INVALID_OPTION at once without `identify`, or for a
   * permission that is not concrete.
   */
  require (permission: string): preHandlerHookHandler

  /** Loads tenants into memory so that `checkSync` answers them at once (the `preload` option does it at startup). */
  warm (tenants: Iterable<string>): Promise<void>

  /**
   * Creates a group. A write answers once committed, applied here, and acknowledged by the peers (bounded by `ackTimeoutMs`).
   * Every write takes `{ ifRevision }`: write only if the tenant is at that revision (0: never written),
   * else reject with 409 FST_POLICY_CACHE_REVISION_CONFLICT (its `currentRevision` set), nothing written;
   * and `{ actor }`: who makes the write, recorded in the audit feed (`changes`); 1–255 characters,
   * no control characters (else 400 FST_POLICY_CACHE_INVALID_INPUT); absent, the entry's actor is null.
   */
  createGroup (tenant: string, group: string, options?: WriteOptions): Promise<WriteOutcome>
  /** Deletes a group with its grants, memberships and inclusions (those it makes and those naming it). */
  deleteGroup (tenant: string, group: string, options?: WriteOptions): Promise<WriteOutcome>
  /** Grants a permission (a wildcard `documents:*` or `*` allowed) to a group; 404 FST_POLICY_CACHE_GROUP_NOT_FOUND without the group. */
  addPermission (tenant: string, group: string, permission: string, options?: WriteOptions): Promise<WriteOutcome>
  /** Revokes a permission from a group. */
  removePermission (tenant: string, group: string, permission: string, options?: WriteOptions): Promise<WriteOutcome>
  /** Adds a user to a group; 404 FST_POLICY_CACHE_GROUP_NOT_FOUND without the group. */
  assignUser (tenant: string, group: string, user: string, options?: WriteOptions): Promise<WriteOutcome>
  /** Removes a user from a group. */
  unassignUser (tenant: string, group: string, user: string, options?: WriteOptions): Promise<WriteOutcome>
  /**
   * Role hierarchy: members of `group` hold every grant of `includes`, transitively (an admin group
   * including editors including viewers). 404 FST_POLICY_CACHE_GROUP_NOT_FOUND without either group;
   * 409 FST_POLICY_CACHE_INCLUSION_CYCLE (its `path` set, e.g. `['viewers', 'admins', 'editors',
   * 'viewers']`) when `includes` already reaches `group` — a group including itself among them —
   * and nothing is written.
   */
  includeGroup (tenant: string, group: string, includes: string, options?: WriteOptions): Promise<WriteOutcome>
  /** Undoes `includeGroup`. Deleting either group removes the inclusion too. */
  excludeGroup (tenant: string, group: string, includes: string, options?: WriteOptions): Promise<WriteOutcome>
  /**
   * Writes several changes (`{ op: 'assign-user', group, user }`, …) atomically, in order — each sees
   * those before it — at one revision, sent to the peers as one notice; `effects` says which had an
   * effect. A failing change writes nothing (its error's message names `changes[<index>]`, `index`
   * set); more than `maxBatchChanges` → 413 FST_POLICY_CACHE_BATCH_TOO_LARGE. `ifRevision` as above.
   */
  batch (tenant: string, changes: readonly Change[], options?: WriteOptions): Promise<BatchOutcome>

  /**
   * A page of the tenants that exist (written, and not deleted since), sorted by id, each with its
   * revision, read from the database. `{ limit, cursor }` as for the listings (`groups`).
   */
  tenants (options?: TenantsOptions): Promise<TenantsPage>
  /**
   * Deletes a tenant — its groups, grants and memberships — at one revision, sent to the peers like
   * any write: every instance drops the tenant's contents at once. Its revision is kept, so a tenant
   * created again under the id goes on from it. A tenant that does not exist (never written, or
   * deleted) → 404 FST_POLICY_CACHE_TENANT_NOT_FOUND. `ifRevision` and `actor` as for the writes.
   */
  deleteTenant (tenant: string, options?: WriteOptions): Promise<TenantDeletion>
  /**
   * The tenant's whole policy as one document `{ tenant, revision, groups, format: 1 }`, read from the
   * database at one revision. A tenant that does not exist → 404 FST_POLICY_CACHE_TENANT_NOT_FOUND.
   */
  exportTenant (tenant: string): Promise<TenantDocument>
  /**
   * Replaces the tenant's policy with an export document's (its `tenant`, when present, must be this
   * tenant: change or drop it to import under another name), at one
   * revision whose changelog entry holds the difference — the peers apply it as a batch. Nothing
   * changes when the tenant holds it already; a tenant that does not exist is created. A malformed
   * document → 400 FST_POLICY_CACHE_INVALID_INPUT naming the place; more than `maxImportFacts`
   * groups, grants and memberships → 413 FST_POLICY_CACHE_IMPORT_TOO_LARGE; nothing written then.
   * `ifRevision` and `actor` as for the writes.
   */
  importTenant (tenant: string, document: ImportDocument, options?: WriteOptions): Promise<WriteOutcome>

  /**
   * A page of the tenant's audit feed, from the database: the changelog entries after `after`
   * (default 0), at most `limit` (1–1000, default 100), each `{ revision, change, origin, actor,
   * committedAt }` (epoch ms, the database's clock), with the current and the oldest kept revision.
   * Entries after `after` already pruned (`changelogRetention`) → 410 FST_POLICY_CACHE_CHANGES_PRUNED
   * naming the oldest kept (`oldestRevision` set on the error).
   */
  changes (tenant: string, options?: ChangesOptions): Promise<ChangesFeed>

  /**
   * Watches a tenant's changes as this instance applies them — its own writes, peers', catch-ups and
   * reloads alike: an async iterable of events, each change as the audit feed's entry (`change`), in
   * revision order without a gap or a duplicate. `after` resumes: the changes after that revision come
   * from the changelog first (a `reset` event when they were pruned: read the tenant again). One
   * consumer; one that falls `watch.maxBuffered` events behind is dropped (a final `end` event
   * FST_POLICY_CACHE_WATCH_OVERFLOW). Beyond `watch.maxWatchers` open watches → 503
   * FST_POLICY_CACHE_TOO_MANY_WATCHERS; `after` past the database's revision → 412
   * FST_POLICY_CACHE_REVISION_AHEAD. `drain()` ends every watch (FST_POLICY_CACHE_CLOSING).
   *
   * ```ts
   * const watch = await app.policyCache.watch('tenant1', { after: 41 })
   * for await (const event of watch) if (event.type === 'change') console.log(event.entry.revision)
   * ```
   */
  watch (tenant: string, options?: WatchOptions): Promise<Watch>

  /** The tenant's groups with their permissions, users and included groups, as cached here (loading it if needed). */
  tenant (tenant: string, options?: CheckOptions): Promise<TenantView>
  /**
   * One user's groups and effective grants in a tenant — inherited ones included — and each grant
   * with the chain of groups it comes through (`grants: [{ permission, chain }]`).
   */
  user (tenant: string, user: string, options?: CheckOptions): Promise<UserView>
  /**
   * A page of the tenant's group names, sorted, from the cache (loading it if needed). Every listing
   * takes `{ limit, cursor, minRevision }`: `limit` 1 to 1000 (default 100), `cursor` the previous
   * page's `next` (null on the last page; a cursor not made so → 400 FST_POLICY_CACHE_INVALID_INPUT).
   * A cursor resumes after the last key seen, at the revision the next page is served from.
   */
  groups (tenant: string, options?: PageOptions): Promise<GroupsPage>
  /** A page of a group's members, sorted; 404 FST_POLICY_CACHE_GROUP_NOT_FOUND without the group. */
  groupUsers (tenant: string, group: string, options?: PageOptions): Promise<GroupUsersPage>
  /** A page of a group's grants, sorted; 404 FST_POLICY_CACHE_GROUP_NOT_FOUND without the group. */
  groupPermissions (tenant: string, group: string, options?: PageOptions): Promise<GroupPermissionsPage>
  /**
   * Reverse lookup: a page of the users holding `permission` (sorted), each with the groups through
   * which they hold it — a grant of it or a wildcard over it (`documents:*`, `*`), in the group or
   * in a group it includes, transitively — and, aligned with `groups`, the chain of inclusions each
   * holds it through (`[group]` for a group granting it itself). A wildcard asked for
   * (`documents:*`) is held through itself, a shorter wildcard or `*`.
   */
  who (tenant: string, permission: string, options?: PageOptions): Promise<HoldersPage>
  /** Reloads a tenant fully from the database (this instance only). */
  refresh (tenant: string): Promise<{ tenant: string, revision: number }>
  /** The revision this instance answers the tenant from (loading it if needed). */
  revision (tenant: string): Promise<number>

  /**
   * Begins a graceful shutdown (before `app.close()`, e.g. on SIGTERM, to let a load balancer see
   * `/health` answer 503 `closing` while requests in flight finish): new writes are refused with 503
   * FST_POLICY_CACHE_CLOSING, `/health` answers 503 `closing`, this instance leaves the membership;
   * resolves once the writes in flight have answered — committed, applied and sent to the peers, each
   * within `writeTimeoutMs` + `ackTimeoutMs`. Checks and reads are still served. Idempotent; never
   * rejects. `app.close()` calls it first.
   */
  drain (): Promise<void>
  /** Whether a graceful shutdown began (`drain` or `app.close()`). */
  readonly closing: boolean

  /** Each peer's delivery state and stats, as `/servers` shows them. */
  peers (): PeerStatus[]
  /** Cache and engine counters. */
  stats (): EngineStats
  /** Up to `limit` cached tenants with the revision each is answered from, most recently used first. */
  cachedRevisions (limit?: number): Array<[string, number]>
}
