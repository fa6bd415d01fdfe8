import type { Change, ChangesPage, GroupData, LoggedChange, TenantSnapshot, TenantSummary, TenantVersion, WriteOptions, WriteResult } from '../model.js'

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
   *
   * Given an array (a batch), applies its changes in order in one transaction — a change sees the
   * effects of those before it (create-group then assign-user works) — bumping the revision once
   * when any had an effect, and logging the effective ones as one changelog entry at that revision:
   * the change itself when one had an effect, else `{ op: 'batch', changes }` (lib/model.ts
   * `loggedBatch`), which `changesSince` returns as it was logged. The result's `effects` says which
   * changes had one. A change that fails (a missing group) writes nothing of the whole batch and
   * throws its error with the message prefixed `changes[<index>]: ` and `index` set (`atIndex`).
   *
   * With `options.ifRevision`, a tenant at another revision (0: never written) — read under the same
   * lock that serialises its writes — writes nothing and throws FST_POLICY_CACHE_REVISION_CONFLICT
   * with `currentRevision` (`revisionConflict`).
   * The changelog entry records `options.actor` (null without one) and the time of the database's
   * clock when the transaction wrote it (`committedAt` of {@link PolicyStore.changes}).
   * @param origin the serverId of the instance writing, kept in the changelog
   * @param options what to do inside the transaction (a transport publishing with the commit);
   *   a store that cannot honour `options.committing` (its `notifies` is not true) may ignore it
   */
  write (tenant: string, change: Change | readonly Change[], origin: string, options?: StoreWriteOptions): Promise<WriteResult>
  /**
   * The tenant's whole policy, revision and digest, read consistently (one transaction). Revision 0,
   * no groups and `EMPTY_DIGEST` for a tenant never written. `exists` says whether the tenant exists
   * (see {@link PolicyStore.tenants}); a store that leaves it out means `revision > 0`.
   */
  snapshot (tenant: string): Promise<TenantSnapshot>
  /**
   * The tenants that exist — written (revision above 0) and not deleted since their latest effective
   * write — with their revisions, sorted by id (the database's order of the tenant column), those
   * after `after` only (exclusive; undefined: from the first), at most `limit` of them.
   */
  tenants (after: string | undefined, limit: number): Promise<TenantSummary[]>
  /**
   * Replaces the tenant's policy with `groups` (valid: `assertGroups`) in one transaction, as a batch
   * `write` of the difference — `replaceChanges(<what it holds>, groups)`, computed under the tenant's
   * lock — at one revision, logged as one entry like a batch's (`loggedBatch`), the digest updated;
   * nothing written when it holds `groups` already. An effective import into a tenant that does not
   * exist (never written, or deleted) creates it. Returns the write's result with `changes`: the
   * changes applied (each had an effect), in order — what the changelog entry holds. `options` as for
   * {@link PolicyStore.write} (`ifRevision`, `actor`, `committing`, which sees that same result).
   */
  importTenant (tenant: string, groups: readonly GroupData[], origin: string, options?: StoreWriteOptions): Promise<ReplaceResult>
  /**
   * Deletes a tenant that exists: as {@link PolicyStore.importTenant} with no groups (one revision
   * when it held any group, none when it was empty), and marks it deleted: it leaves `tenants`,
   * `snapshot` says `exists: false`. Its revision stays: its next effective write (creating it again)
   * takes the next one, so that revisions never repeat. A tenant that does not exist throws
   * `TenantNotFoundError` (404 FST_POLICY_CACHE_TENANT_NOT_FOUND) and writes nothing; then
   * `ifRevision` is checked as for `write`.
   */
  deleteTenant (tenant: string, origin: string, options?: StoreWriteOptions): Promise<ReplaceResult>
  /**
   * The changes after `revision`, in order, up to the current revision; `[]` when `revision` is
   * current; `null` when the changelog no longer reaches back to `revision + 1` (the caller reloads).
   */
  changesSince (tenant: string, revision: number): Promise<LoggedChange[] | null>
  /**
   * The audit feed: the tenant's changelog entries after revision `after`, in order, at most `limit`
   * of them, each with its origin, actor and commit time, read in one transaction with the tenant's
   * current revision and the oldest revision the changelog still holds (null: none). Entries below
   * the oldest kept are gone (pruned); the caller tells that from `oldestRevision`. `after` at or
   * beyond the current revision: no entries. Never throws for a tenant never written (revision 0).
   */
  changes (tenant: string, after: number, limit: number): Promise<ChangesPage>
  /**
   * Current revision and digest of each of the given tenants (`{ revision: 0, digest: EMPTY_DIGEST }`
   * for a tenant never written), in one query. Anti-entropy compares both with the cache.
   */
  revisions (tenants: readonly string[]): Promise<Map<string, TenantVersion>>
  /** Resolves when the database answers a trivial query; used by `/health`. */
  ping (): Promise<void>
  /** Releases what the store itself created; never closes a host-owned connection. */
  close (): Promise<void>
  /**
   * Instances finding each other through the database (the `membership` option, docs/membership.md).
   * Optional: a store without it cannot do membership, and `membership: true` then fails
   * registration with FST_POLICY_CACHE_INVALID_OPTION.
   */
  readonly membership?: MembershipStore | undefined
  /**
   * Whether `write` calls `options.committing` inside its transaction with a {@link WriteTransaction}
   * whose `notify` works (PostgreSQL's `pg_notify`): what the `pg-notify` transport needs. Optional:
   * a store without it cannot be used with that transport (FST_POLICY_CACHE_INVALID_OPTION `transport`).
   */
  readonly notifies?: boolean | undefined
}

/** What `importTenant` and `deleteTenant` answer: a write's result and the changes it applied. */
export interface ReplaceResult extends WriteResult {
  /** The changes applied, in order, each with an effect (empty when `changed` is false). */
  changes: Change[]
}

/** What a write does inside its transaction, beside the change itself (see {@link PolicyStore.write}). */
export interface StoreWriteOptions extends WriteOptions {
  /**
   * Called inside the write's transaction once the mutation, the revision bump and the changelog row
   * are written, before the commit, and only when the write changed something; `result` is what the
   * write will return. A rejection rolls the write back (the write fails). A transaction run again
   * after a deadlock calls it again: what it did in the rolled-back attempt is rolled back too.
   */
  committing?: ((tx: WriteTransaction, result: WriteResult) => Promise<void>) | undefined
}

/** The part of a write's transaction that {@link StoreWriteOptions.committing} may use. */
export interface WriteTransaction {
  /**
   * `pg_notify(channel, payload)` in the write's transaction: PostgreSQL delivers it to the
   * channel's listeners when, and only if, the transaction commits. Rejects on a store whose
   * `notifies` is not true.
   */
  notify (channel: string, payload: string): Promise<void>
}

/** One instance's row of the membership table. Times are epoch ms **of the database's clock**. */
export interface MemberRecord {
  serverId: string
  /** The URL peers POST to, as the instance registered it (validated by the reader, not the store). */
  url: string
  /** New at every start of the instance: a restart with the same serverId is a new incarnation. */
  incarnation: string
  /** `leaving`: closing gracefully; `expired`: its heartbeat stopped for `ttlMs`. */
  status: 'active' | 'leaving' | 'expired'
  startedAt: number
  heartbeatAt: number
  expiresAt: number
}

/** The instance a membership call is about. */
export interface MemberIdentity {
  serverId: string
  url: string
  incarnation: string
}

/** The membership version (one row, bumped on every join, leave and expiry), read with the database's clock. */
export interface MembershipVersion {
  version: number
  /** The database's clock, epoch ms. */
  now: number
  /** The earliest `expiresAt` of an active row (null: none): past `now`, an `expire()` is due. */
  nextExpiry: number | null
}

/** What {@link MembershipStore.heartbeat} found of the instance's own row. */
export type HeartbeatOutcome =
  /** Renewed. */
  | 'renewed'
  /** The row was missing or expired (e.g. the database was unreachable for `ttlMs`): inserted again, version bumped. */
  | 'rejoined'
  /** Another incarnation holds the serverId (a restart elsewhere, or two instances claiming one id): left alone. */
  | 'replaced'

/**
 * The membership part of a store: one row per instance and one version row. Every time is taken
 * from the database's clock, never the caller's: instances' clocks disagree, the database's is one.
 */
export interface MembershipStore {
  /**
   * Inserts the instance's row, or replaces the serverId's row (a new incarnation): `active`,
   * started and renewed now, expiring `ttlMs` later. Bumps the version. Returns the row it
   * replaced when that was still live with another incarnation (a restart before expiry, or a
   * second instance claiming the serverId), so that the caller can report it.
   */
  join (self: MemberIdentity, ttlMs: number): Promise<{ replaced: MemberRecord | undefined }>
  /**
   * One heartbeat: renews the instance's row (only its own incarnation's), marks every active or
   * leaving row past its expiry `expired` (bumping the version once when any), and deletes at most
   * `purgeLimit` rows expired for more than `purgeAfterMs`.
   */
  heartbeat (self: MemberIdentity, ttlMs: number, purge: { afterMs: number, limit: number }): Promise<HeartbeatOutcome>
  /** Marks active rows past their expiry `expired`, bumping the version when any; returns how many. */
  expire (): Promise<number>
  /** One row read: the version, the database's clock and the earliest expiry of an active row. */
  version (): Promise<MembershipVersion>
  /** Every row (any status), with the version and clock they were read at (one consistent read). */
  members (): Promise<{ version: number, now: number, members: MemberRecord[] }>
  /** Marks the instance's row `leaving` (its own incarnation's only) and bumps the version. */
  leave (self: MemberIdentity): Promise<void>
  /** Deletes the instance's row (its own incarnation's only) and bumps the version. */
  remove (self: MemberIdentity): Promise<void>
}
