/**
 * The policy engine behind both the routes and the `fastify.policyCache` decorator:
 * validate → store write (one transaction) → own cache → broadcast → bounded wait for acks.
 */
import type { preHandlerHookHandler } from 'fastify'
import { LRUCache } from 'lru-cache'
import type { PolicyCacheApi } from './api.js'
import { DATABASE_ID_PATTERN, noticeChange, type NoticeChange, type NoticeEntry } from './broadcast/notice.js'
import type { AckSummary, PeerStatus } from './broadcast/status.js'
import type { CacheStats, SyncResult } from './cache/tenant-cache.js'
import { TenantCache } from './cache/tenant-cache.js'
import { Watchers, type Watch, type WatchOptions } from './cache/watchers.js'
import { DEFAULTS } from './defaults.js'
import {
  BatchTooLargeError, ChangesPrunedError, CheckBatchTooLargeError, ClosingError, ForeignDatabaseError, GroupNotFoundError, ImportTooLargeError, InvalidInputError, InvalidOptionError,
  RevisionAheadError, StoreUnavailableError, TenantNotFoundError, WriteOutcomeUnknownError
} from './errors.js'
import { createGuard, type IdentifyFunction } from './guard.js'
import {
  assertActor, assertBatch, assertChange, assertGrant, assertGroups, assertIdentifier, assertIfRevision, assertPermission, changeFields, EXPORT_FORMAT, isGrant, isIdentifier,
  isPermission, loggedBatch, type AuditEntry, type BatchChange, type Change, type GroupData, type LoggedChange, type TenantDocument, type TenantSummary, type WriteOptions, type WriteResult
} from './model.js'
import type { PolicyStore, StoreWriteOptions, WriteTransaction } from './store/types.js'
import type { HeldGrant, Holder } from './cache/tenant-state.js'
import { decodeCursor, nextCursor, pageLimit, type PageOptions } from './page.js'

/** Cache counters plus the engine's own: checks by outcome, writes by effect (for metrics). */
export interface EngineStats extends CacheStats {
  /** Checks answered `true` (checkSync, check, decide, the route guard). */
  checksAllowed: number
  /** Checks answered `false`. */
  checksDenied: number
  /** Writes committed with an effect (each bumped a revision). */
  writes: number
  /** Writes that changed nothing. */
  writesUnchanged: number
  /** Watch streams open now (`watch`, the watch route). */
  watchers: number
  /** Watch streams dropped so far because their client fell `watch.maxBuffered` events behind. */
  watchersDropped: number
  /** Events waiting in the watch streams' queues now, all streams together. */
  watchBuffered: number
}

/** What every write answers. `revision` is the token to pass as `minRevision` for read-your-writes. */
export interface WriteOutcome {
  tenant: string
  revision: number
  changed: boolean
  /** Peers that acknowledged within `ackTimeoutMs`; both 0 when nothing changed (nothing is sent). */
  peers: AckSummary
}

/** What a batch answers: a write's outcome, and which of its changes had an effect. */
export interface BatchOutcome extends WriteOutcome {
  /** Whether each change had an effect, aligned with the batch's changes (in order: each saw those before it). */
  effects: boolean[]
}

export interface Decision {
  allowed: boolean
  /** The revision the answer was given from. */
  revision: number
}

export interface TenantView {
  tenant: string
  revision: number
  /** Each group with its grants, members and the groups it includes (`includes` always present). */
  groups: Array<Required<GroupData>>
}

export interface UserView {
  tenant: string
  user: string
  revision: number
  /** The groups the user is a member of. */
  groups: string[]
  /** Every grant the user holds: through their groups and the groups those include, transitively. */
  permissions: string[]
  /** The same grants, each with the chain of groups it comes through (the user's group, …, the group granting it). */
  grants: HeldGrant[]
}

/** A page of a tenant's group names (sorted); `next` resumes after it, null on the last page. */
export interface GroupsPage {
  tenant: string
  revision: number
  groups: string[]
  next: string | null
}

/** A page of a group's members (sorted). */
export interface GroupUsersPage {
  tenant: string
  group: string
  revision: number
  users: string[]
  next: string | null
}

/** A page of a group's grants (sorted). */
export interface GroupPermissionsPage {
  tenant: string
  group: string
  revision: number
  permissions: string[]
  next: string | null
}

/** A page of the reverse lookup: the users (sorted) holding `permission`, each with the groups through which they hold it. */
export interface HoldersPage {
  tenant: string
  permission: string
  revision: number
  users: Holder[]
  next: string | null
}

/** A page of the tenants that exist, sorted by id; `next` resumes after it, null on the last page. */
export interface TenantsPage {
  tenants: TenantSummary[]
  next: string | null
}

/** Which page of the tenants to read: `limit` (1 to 1000, default 100) and the previous page's `next`. */
export type TenantsOptions = Pick<PageOptions, 'limit' | 'cursor'>

/** What deleting a tenant answers. */
export interface TenantDeletion {
  tenant: string
  deleted: true
  /** The tenant's revision after the deletion (kept: the tenant created again goes on from it). */
  revision: number
  /** Peers that acknowledged within `ackTimeoutMs`; both 0 when the tenant held nothing (nothing is sent). */
  peers: AckSummary
}

/**
 * What `importTenant` takes: an export document. `tenant`, when present, must be the tenant imported
 * into (another name: change or drop it); `revision`, when present, says what it was exported at and
 * is checked only as well formed (the precondition is `ifRevision`).
 */
export interface ImportDocument {
  groups: GroupData[]
  format: typeof EXPORT_FORMAT
  tenant?: string | undefined
  revision?: number | undefined
}

/** One (user, permission) pair of a batch check. */
export interface AccessCheck {
  user: string
  permission: string
}

/** A batch check's answers, aligned with its checks, all from one revision. */
export interface CheckBatchOutcome {
  tenant: string
  revision: number
  results: boolean[]
}

/** Which page of a tenant's audit feed to read (see {@link PolicyCache.changes}). */
export interface ChangesOptions {
  /** The entries after this revision. Default 0 (from the oldest kept). */
  after?: number | undefined
  /** At most this many entries, 1 to {@link CHANGES_LIMIT}.max. Default {@link CHANGES_LIMIT}.default. */
  limit?: number | undefined
}

/** A page of a tenant's audit feed. */
export interface ChangesFeed {
  tenant: string
  /** The tenant's current revision (0: never written). */
  revision: number
  /** The oldest revision the changelog still holds; null when it holds none. */
  oldestRevision: number | null
  /** The entries after `after`, in order: the next page is after the last one's revision, until it is `revision`. */
  entries: AuditEntry[]
}

/** The page size of the audit feed: default and most. */
export const CHANGES_LIMIT = Object.freeze({ default: 100, max: 1000 })

export interface CheckOptions {
  /** Answer from revision ≥ minRevision: a cache behind it catches up from the database first. */
  minRevision?: number
}

/** The part of the transport (lib/broadcast/transport.ts) the engine uses. */
export interface Notifier {
  /** After the commit: sends the write's notice (unless `inTransaction` did) and waits for the acknowledgements, bounded. */
  notify (changes: NoticeChange[]): Promise<AckSummary>
  /** The peers, for `/servers` and `/health`. */
  status (): PeerStatus[]
  /** Optional: publishes inside the write's transaction (pg-notify); a rejection fails the write. */
  inTransaction?: ((tx: WriteTransaction, changes: NoticeChange[]) => Promise<void>) | undefined
}

export interface PolicyCacheDeps {
  store: PolicyStore
  notifier: Notifier
  serverId: string
  maxTenants: number
  catchUpTimeoutMs: number
  /** Longest a write waits for the store's commit. Default {@link DEFAULTS.writeTimeoutMs}. */
  writeTimeoutMs?: number
  /** Most changes one batch may hold. Default {@link DEFAULTS.maxBatchChanges}. */
  maxBatchChanges?: number
  /** Most checks one batch check may hold. Default {@link DEFAULTS.maxBatchChecks}. */
  maxBatchChecks?: number
  /** Most facts (groups, grants, memberships) one imported document may hold. Default {@link DEFAULTS.maxImportFacts}. */
  maxImportFacts?: number
  /** The bounds of the watch streams. Default {@link DEFAULTS.watch}. */
  watch?: { maxWatchers: number, maxBuffered: number }
  log: { warn: (obj: object, msg: string) => void, info?: (obj: object, msg: string) => void, error?: (obj: object, msg: string) => void }
  /** The host's identify option, for `require`. */
  identify?: IdentifyFunction
  /** Least time between two repairs of one tenant that notices ask for (see TenantCache). */
  repairSpacingMs?: number
  /** The clock, epoch milliseconds (tests). Default `Date.now`. */
  now?: () => number
  /**
   * What a graceful shutdown does besides refusing writes, in parallel with the writes in flight
   * (the plugin: leave the membership, so that writers stop sending here). Must not reject.
   */
  leave?: () => Promise<void>
}

/** The fields of an import document. */
const DOCUMENT_FIELDS = ['tenant', 'revision', 'groups', 'format']

/** Senders on another database remembered, so that each is logged once (a bound: a flood of ids cannot grow it). */
const FOREIGN_SENDERS_REMEMBERED = 1000

/** How long a write that failed on the database keeps `/health` degraded, unless a write succeeds first. */
export const WRITE_FAILURE_WINDOW_MS = 60_000

/**
 * Known errors pass through; anything else from the store becomes a coded 503 saying what failed, in
 * the plugin's own words. The driver's error is its `cause` — logged with it (Fastify's error log, pino's
 * `err` serializer), never in the message: a driver's message names the database's host and port.
 */
export function storeError (what: string): (err: unknown) => never {
  return (err) => {
    const code = (err as { code?: unknown } | null)?.code
    if (typeof code === 'string' && code.startsWith('FST_POLICY_CACHE_')) throw err
    throw new StoreUnavailableError(`${what} (the cause is in the server log)`, { cause: err })
  }
}

function sameChange (a: LoggedChange | undefined, b: LoggedChange | undefined): boolean {
  return a !== undefined && b !== undefined && JSON.stringify(a) === JSON.stringify(b)
}

/** Who sent a notice, as far as the engine checks it. */
export interface NoticeSender {
  origin: string
  /** The sender's database id; undefined from an older sender (accepted). */
  database: string | undefined
}

/** Tenants `warm` loads at once. */
const WARM_CONCURRENCY = 8

/**
 * What a committed write logged — the change, or a batch's effective changes (`loggedBatch`; null when
 * none had an effect) — and which changes had an effect. A store that reports no effects for a batch
 * (a custom store breaking the contract): every change is taken as effective — applying a no-op again
 * changes nothing, and the digest check catches the rest.
 */
function effective (own: Change | Change[] | undefined, { changed, effects, changes }: Committed): { effects: boolean[], logged: Change | BatchChange | null } {
  // An import or a deletion: the store computed the changes and says which it applied.
  if (own === undefined) return { effects: [], logged: loggedBatch(changes ?? []) }
  if (!Array.isArray(own)) return { effects: [changed], logged: own }
  const outcome = effects ?? own.map(() => changed)
  return { effects: outcome, logged: loggedBatch(own.filter((_change, i) => outcome[i])) }
}

/** What a store's write answers: a batch's effects, an import's or a deletion's changes. */
type Committed = WriteResult & { changes?: Change[] | undefined }

/** A write's store transaction, given the options the engine adds (the transport's `committing`). */
type Commit = (options: StoreWriteOptions) => Promise<Committed>

/** The document's facts, counted on whatever shape it has (what `assertGroups` then checks): the size check comes first. */
function documentFacts (groups: unknown): number {
  if (!Array.isArray(groups)) return 0
  let count = 0
  for (const group of groups as Array<Partial<GroupData> | null>) {
    count += 1
    if (Array.isArray(group?.permissions)) count += group.permissions.length
    if (Array.isArray(group?.users)) count += group.users.length
    if (Array.isArray(group?.includes)) count += group.includes.length
  }
  return count
}

async function bounded<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new StoreUnavailableError(`no answer within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export class PolicyCache implements PolicyCacheApi {
  /** This instance's id, as peers and `/servers` see it. */
  readonly serverId: string
  readonly #store: PolicyStore
  readonly #notifier: Notifier
  readonly #tenants: TenantCache
  readonly #watchers: Watchers
  readonly #catchUpTimeoutMs: number
  readonly #writeTimeoutMs: number
  readonly #maxBatchChanges: number
  readonly #maxBatchChecks: number
  readonly #maxImportFacts: number
  readonly #log: PolicyCacheDeps['log']
  readonly #identify: IdentifyFunction | undefined
  /** The store's database id, once `start` read it. */
  #databaseId: string | undefined
  /** Senders on another database already logged. */
  readonly #foreignSenders = new LRUCache<string, true>({ max: FOREIGN_SENDERS_REMEMBERED })
  /** Tenants `checkSync` is loading in the background: one load each, however often it is asked. */
  readonly #background = new Set<string>()
  /** Background loads failed since one last succeeded: a database outage is logged once, not per tenant. */
  #backgroundFailures = 0
  // Plain counters, read at scrape time: the hot path pays one increment.
  #allowed = 0
  #denied = 0
  #writes = 0
  #unchanged = 0
  /** When the latest write that reached the database failed there (5xx); undefined once one succeeds. */
  #writeFailedAt: number | undefined
  readonly #now: () => number
  readonly #leave: (() => Promise<void>) | undefined
  /** Writes between their validation and their answer: a graceful shutdown waits for them. */
  readonly #inFlight = new Set<Promise<unknown>>()
  /** Set by the first `drain()`: from then on writes are refused and `/health` answers `closing`. */
  #draining: Promise<void> | undefined

  constructor (deps: PolicyCacheDeps) {
    this.serverId = deps.serverId
    this.#store = deps.store
    this.#notifier = deps.notifier
    this.#catchUpTimeoutMs = deps.catchUpTimeoutMs
    this.#writeTimeoutMs = deps.writeTimeoutMs ?? DEFAULTS.writeTimeoutMs
    this.#maxBatchChanges = deps.maxBatchChanges ?? DEFAULTS.maxBatchChanges
    this.#maxBatchChecks = deps.maxBatchChecks ?? DEFAULTS.maxBatchChecks
    this.#maxImportFacts = deps.maxImportFacts ?? DEFAULTS.maxImportFacts
    this.#log = deps.log
    this.#identify = deps.identify
    this.#now = deps.now ?? Date.now
    this.#leave = deps.leave
    const { maxWatchers, maxBuffered } = deps.watch ?? DEFAULTS.watch
    this.#watchers = new Watchers({
      read: (tenant, after, limit) => this.changes(tenant, { after, limit }),
      pin: (tenant) => this.#tenants.pin(tenant),
      unpin: (tenant) => this.#tenants.unpin(tenant),
      maxWatchers,
      maxBuffered
    })
    this.#tenants = new TenantCache({
      store: deps.store,
      maxTenants: deps.maxTenants,
      repairSpacingMs: deps.repairSpacingMs,
      onAdvance: (tenant, revision) => this.#watchers.advanced(tenant, revision)
    })
  }

  /**
   * Migrates the store and reads its database id, which notices then carry. Throws
   * FST_POLICY_CACHE_INVALID_OPTION (`db`) when a custom store's id does not match
   * {@link DATABASE_ID_PATTERN}.
   */
  async start (): Promise<void> {
    await this.#store.migrate()
    const id = await this.#store.databaseId()
    if (typeof id !== 'string' || !new RegExp(DATABASE_ID_PATTERN).test(id)) {
      throw new InvalidOptionError('db', `databaseId() must return a string matching ${DATABASE_ID_PATTERN}`)
    }
    this.#databaseId = id
  }

  /** The id of the database this instance works on (undefined before `start`). */
  get databaseId (): string | undefined {
    return this.#databaseId
  }

  /**
   * The synchronous hot path: the answer for a cached tenant, or `undefined` when the tenant is not
   * loaded yet — then its load starts in the background (one at a time per tenant, however often
   * asked; an outage is logged once, with its recovery), so a later call answers. Throws a coded 400 for a permission containing `*`.
   */
  checkSync (tenant: string, user: string, permission: string): boolean | undefined {
    const state = this.#tenants.lookup(tenant)
    if (state === undefined) {
      this.#loadInBackground(tenant)
      return undefined
    }
    if (!isPermission(permission)) assertPermission(permission)
    const allowed = state.check(user, permission)
    if (allowed) this.#allowed++
    else this.#denied++
    return allowed
  }

  /**
   * A preHandler hook admitting only requests whose identity (the `identify` option) holds
   * `permission`: 401 FST_POLICY_CACHE_UNIDENTIFIED without one, 403 FST_POLICY_CACHE_FORBIDDEN
   * without the permission. Throws FST_POLICY_CACHE_INVALID_OPTION at once without `identify` or for
   * a permission that is not concrete.
   */
  require (permission: string): preHandlerHookHandler {
    return createGuard(this, this.#identify, permission)
  }

  /**
   * Loads tenants into memory (at most {@link WARM_CONCURRENCY} at a time), so that `checkSync`
   * answers them at once. Throws a coded 400 for a malformed id before loading any, and the store's
   * 503 when one cannot be loaded. More tenants than `maxTenants` evict the least recently used.
   */
  async warm (tenants: Iterable<string>): Promise<void> {
    const queue = [...tenants]
    for (const tenant of queue) assertIdentifier('tenant', tenant)
    const worker = async (): Promise<void> => {
      for (let tenant = queue.shift(); tenant !== undefined; tenant = queue.shift()) await this.#state(tenant)
    }
    await Promise.all(Array.from({ length: Math.min(WARM_CONCURRENCY, queue.length) }, worker))
  }

  /** May `user` do `permission` in `tenant`? Loads the tenant on first use. */
  async check (tenant: string, user: string, permission: string, options?: CheckOptions): Promise<boolean> {
    return (await this.decide(tenant, user, permission, options)).allowed
  }

  /** Like `check`, with the revision the answer came from. */
  async decide (tenant: string, user: string, permission: string, options: CheckOptions = {}): Promise<Decision> {
    assertIdentifier('tenant', tenant)
    assertIdentifier('user', user)
    assertPermission(permission)
    const state = await this.#state(tenant, options.minRevision)
    const allowed = state.check(user, permission)
    if (allowed) this.#allowed++
    else this.#denied++
    return { allowed, revision: state.revision }
  }

  /**
   * Answers many (user, permission) pairs from one revision of the tenant. Each check is validated
   * as `decide`'s (a coded 400 naming `checks[<index>]`); more than `maxBatchChecks` → 413
   * FST_POLICY_CACHE_CHECK_BATCH_TOO_LARGE.
   */
  async checkBatch (tenant: string, checks: readonly AccessCheck[], options: CheckOptions = {}): Promise<CheckBatchOutcome> {
    assertIdentifier('tenant', tenant)
    if (!Array.isArray(checks)) throw new InvalidInputError('checks', 'must be an array of { user, permission }')
    if (checks.length > this.#maxBatchChecks) throw new CheckBatchTooLargeError(checks.length, this.#maxBatchChecks)
    for (let i = 0; i < checks.length; i++) {
      const check = checks[i] as Partial<AccessCheck> | null
      if (typeof check !== 'object' || check === null || !isIdentifier(check.user) || !isPermission(check.permission)) {
        throw new InvalidInputError(`checks[${i}]`, 'must be { user, permission } with a user id and a concrete permission (no *)')
      }
    }
    const state = await this.#state(tenant, options.minRevision)
    // Synchronous from here: every answer comes from the same revision.
    const results = checks.map(({ user, permission }) => state.check(user, permission))
    for (const allowed of results) {
      if (allowed) this.#allowed++
      else this.#denied++
    }
    return { tenant, revision: state.revision, results }
  }

  createGroup (tenant: string, group: string, options?: WriteOptions): Promise<WriteOutcome> {
    return this.write(tenant, { op: 'create-group', group }, options)
  }

  deleteGroup (tenant: string, group: string, options?: WriteOptions): Promise<WriteOutcome> {
    return this.write(tenant, { op: 'delete-group', group }, options)
  }

  addPermission (tenant: string, group: string, permission: string, options?: WriteOptions): Promise<WriteOutcome> {
    return this.write(tenant, { op: 'add-permission', group, permission }, options)
  }

  removePermission (tenant: string, group: string, permission: string, options?: WriteOptions): Promise<WriteOutcome> {
    return this.write(tenant, { op: 'remove-permission', group, permission }, options)
  }

  assignUser (tenant: string, group: string, user: string, options?: WriteOptions): Promise<WriteOutcome> {
    return this.write(tenant, { op: 'assign-user', group, user }, options)
  }

  unassignUser (tenant: string, group: string, user: string, options?: WriteOptions): Promise<WriteOutcome> {
    return this.write(tenant, { op: 'unassign-user', group, user }, options)
  }

  includeGroup (tenant: string, group: string, includes: string, options?: WriteOptions): Promise<WriteOutcome> {
    return this.write(tenant, { op: 'include-group', group, includes }, options)
  }

  excludeGroup (tenant: string, group: string, includes: string, options?: WriteOptions): Promise<WriteOutcome> {
    return this.write(tenant, { op: 'exclude-group', group, includes }, options)
  }

  /**
   * Applies one change: committed in the database, applied here, then broadcast to the peers. A
   * commit that takes longer than `writeTimeoutMs` rejects with FST_POLICY_CACHE_WRITE_OUTCOME_UNKNOWN
   * (503); if it commits later, it is applied and broadcast then, so no instance misses it. With
   * `ifRevision`, a tenant at another revision rejects with 409 FST_POLICY_CACHE_REVISION_CONFLICT
   * (its `currentRevision` set) and nothing is written.
   */
  async write (tenant: string, change: Change, options: WriteOptions = {}): Promise<WriteOutcome> {
    assertIdentifier('tenant', tenant)
    assertChange(change)
    assertIfRevision(options.ifRevision)
    assertActor(options.actor)
    // A copy: the caller's object is neither kept in the cache nor changed later.
    const own = changeFields(change)
    const outcome = await this.#tracked(tenant, own, options, (opts) => this.#store.write(tenant, own, this.serverId, opts))
    return { tenant: outcome.tenant, revision: outcome.revision, changed: outcome.changed, peers: outcome.peers }
  }

  /**
   * Applies a batch of changes in order, atomically: one transaction, one revision (none when no
   * change had an effect), one changelog entry, one notice to the peers. `effects` says which changes
   * had an effect. A change that fails (a missing group not created earlier in the batch) writes
   * nothing and rejects with its error, the message prefixed `changes[<index>]: ` and `index` set.
   * More than `maxBatchChanges` changes → 413 FST_POLICY_CACHE_BATCH_TOO_LARGE; an empty batch → 400.
   * `ifRevision` as for {@link write}.
   */
  async batch (tenant: string, changes: readonly Change[], options: WriteOptions = {}): Promise<BatchOutcome> {
    assertIdentifier('tenant', tenant)
    if (!Array.isArray(changes) || changes.length === 0) throw new InvalidInputError('changes', 'must be a non-empty array of changes')
    if (changes.length > this.#maxBatchChanges) throw new BatchTooLargeError(changes.length, this.#maxBatchChanges)
    assertBatch(changes)
    assertIfRevision(options.ifRevision)
    assertActor(options.actor)
    const own = changes.map(changeFields)
    return await this.#tracked(tenant, own, options, (opts) => this.#store.write(tenant, own, this.serverId, opts))
  }

  /**
   * A page of the tenants that exist (written, and not deleted since), sorted by id, with their
   * revisions, read from the database. `limit` 1 to 1000 (default 100); `cursor` the previous page's
   * `next` (null on the last page; a cursor not made so → 400 FST_POLICY_CACHE_INVALID_INPUT).
   */
  async tenants (options: TenantsOptions = {}): Promise<TenantsPage> {
    const limit = pageLimit(options.limit)
    const after = decodeCursor(options.cursor, isIdentifier)
    // One more than the page: whether another page follows.
    const found = await bounded(this.#store.tenants(after, limit + 1), this.#catchUpTimeoutMs).catch(storeError('a read'))
    const tenants = found.slice(0, limit)
    return { tenants, next: found.length > limit ? nextCursor(tenants[limit - 1].tenant) : null }
  }

  /**
   * Deletes a tenant — its groups, grants and memberships — in one revision whose changelog entry
   * holds a `delete-group` of each group, applied here and sent to the peers like any write: every
   * instance holding the tenant drops its contents. The revision is kept (the tenant created again
   * goes on from it). A tenant that does not exist (never written, or deleted) → 404
   * FST_POLICY_CACHE_TENANT_NOT_FOUND; `ifRevision` and `actor` as for {@link write}.
   */
  async deleteTenant (tenant: string, options: WriteOptions = {}): Promise<TenantDeletion> {
    assertIdentifier('tenant', tenant)
    assertIfRevision(options.ifRevision)
    assertActor(options.actor)
    const { revision, peers } = await this.#tracked(tenant, undefined, options, (opts) => this.#store.deleteTenant(tenant, this.serverId, opts))
    return { tenant, deleted: true, revision, peers }
  }

  /**
   * The tenant's whole policy as one document, read from the database at one revision:
   * `{ tenant, revision, groups, format: 1 }`, groups sorted by name, their permissions and users
   * sorted. A tenant that does not exist → 404 FST_POLICY_CACHE_TENANT_NOT_FOUND.
   */
  async exportTenant (tenant: string): Promise<TenantDocument> {
    assertIdentifier('tenant', tenant)
    const { revision, groups, exists } = await bounded(this.#store.snapshot(tenant), this.#catchUpTimeoutMs).catch(storeError('a read'))
    if (!(exists ?? revision > 0)) throw new TenantNotFoundError(tenant)
    return { tenant, revision, groups: groups.map(({ includes = [], ...group }) => ({ ...group, includes })), format: EXPORT_FORMAT }
  }

  /**
   * Replaces the tenant's policy with the document's (an `exportTenant` document; its `tenant`, when
   * present, must be this tenant) in one revision whose changelog entry holds the difference, applied here and sent to the
   * peers as a batch's: they apply the delta. Nothing changes (no revision) when the tenant holds the
   * document's policy already; a tenant that does not exist is created. The document is validated
   * whole first — a malformed one → 400 FST_POLICY_CACHE_INVALID_INPUT naming the place
   * (`groups[2].users[0]`), more than `maxImportFacts` groups, grants and memberships → 413
   * FST_POLICY_CACHE_IMPORT_TOO_LARGE — and nothing is written then. `ifRevision` and `actor` as for
   * {@link write}.
   */
  async importTenant (tenant: string, document: ImportDocument, options: WriteOptions = {}): Promise<WriteOutcome> {
    assertIdentifier('tenant', tenant)
    if (typeof document !== 'object' || document === null || Array.isArray(document)) throw new InvalidInputError('document', 'must be { groups, format: 1 } (an export document)')
    const unknown = Object.keys(document).find((key) => !DOCUMENT_FIELDS.includes(key))
    if (unknown !== undefined) throw new InvalidInputError('document', `takes tenant, revision, groups and format only, not ${JSON.stringify(unknown)}`)
    if (document.format !== EXPORT_FORMAT) throw new InvalidInputError('format', `must be ${EXPORT_FORMAT}`)
    // The tenant a document names is the one it is imported into: a host hook that scopes an admin by
    // the body's `tenant` then sees the tenant really written.
    if (document.tenant !== undefined && document.tenant !== tenant) {
      throw new InvalidInputError('tenant', `the document is of tenant ${JSON.stringify(document.tenant)}, not "${tenant}": set its tenant to "${tenant}" (or leave it out) to import it under that name`)
    }
    if (document.revision !== undefined && (typeof document.revision !== 'number' || !Number.isSafeInteger(document.revision) || document.revision < 0)) {
      throw new InvalidInputError('revision', 'must be a non-negative integer')
    }
    const facts = documentFacts(document.groups)
    if (facts > this.#maxImportFacts) throw new ImportTooLargeError(facts, this.#maxImportFacts)
    assertGroups(document.groups, tenant)
    assertIfRevision(options.ifRevision)
    assertActor(options.actor)
    // Copies: the caller's arrays are neither kept nor changed later.
    const groups = document.groups.map(({ name, permissions, users, includes = [] }) => ({ name, permissions: [...permissions], users: [...users], includes: [...includes] }))
    const { revision, changed, peers } = await this.#tracked(tenant, undefined, options, (opts) => this.#store.importTenant(tenant, groups, this.serverId, opts))
    return { tenant, revision, changed, peers }
  }

  /**
   * A page of the tenant's audit feed, read from the database: the changelog entries after `after`
   * (default 0), at most `limit` (1–1000, default 100), each with its change, origin, actor and
   * commit time (database clock). `after` at or beyond the current revision: no entries. Entries
   * after `after` already pruned (`changelogRetention`) → 410 FST_POLICY_CACHE_CHANGES_PRUNED
   * naming the oldest kept (`oldestRevision` set on the error).
   */
  async changes (tenant: string, options: ChangesOptions = {}): Promise<ChangesFeed> {
    assertIdentifier('tenant', tenant)
    const { after = 0, limit = CHANGES_LIMIT.default } = options
    if (typeof after !== 'number' || !Number.isSafeInteger(after) || after < 0) throw new InvalidInputError('after', 'must be a non-negative integer')
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > CHANGES_LIMIT.max) {
      throw new InvalidInputError('limit', `must be an integer from 1 to ${CHANGES_LIMIT.max}`)
    }
    const page = await bounded(this.#store.changes(tenant, after, limit), this.#catchUpTimeoutMs).catch(storeError('a read'))
    const { revision, oldestRevision } = page
    if (after < revision && (oldestRevision === null || after + 1 < oldestRevision)) {
      const kept = oldestRevision === null ? 'it holds none' : `the oldest kept is revision ${oldestRevision} (ask after ${oldestRevision - 1})`
      throw Object.assign(new ChangesPrunedError(tenant, after, kept), { oldestRevision })
    }
    return { tenant, revision, oldestRevision, entries: page.entries }
  }

  /**
   * Watches a tenant's changes as this instance applies them — its own writes, peers', catch-ups and
   * reloads alike — each as the audit feed's entry, in revision order without a gap or a duplicate
   * (see {@link Watch}). With `after`, the changes after that revision come first from the changelog
   * (a revision this instance is behind is caught up to first, 412 FST_POLICY_CACHE_REVISION_AHEAD
   * past the database's); changes already pruned give a `reset` event. Bounded: beyond
   * `watch.maxWatchers` open watches → 503 FST_POLICY_CACHE_TOO_MANY_WATCHERS; a consumer
   * `watch.maxBuffered` events behind is dropped (a final `end` event). `drain()` ends every watch.
   */
  async watch (tenant: string, options: WatchOptions = {}): Promise<Watch> {
    assertIdentifier('tenant', tenant)
    const { after } = options
    if (after !== undefined && (typeof after !== 'number' || !Number.isSafeInteger(after) || after < 0)) {
      throw new InvalidInputError('after', 'must be a non-negative integer')
    }
    return await this.#watchers.open(tenant, after, async () => (await this.#state(tenant, after)).revision)
  }

  /**
   * A validated write (a change, or a batch's own copies; undefined for an import or a deletion, whose
   * store says what it applied) counted among those in flight, and its failure remembered for `/health`.
   */
  async #tracked (tenant: string, own: Change | Change[] | undefined, { ifRevision, actor }: WriteOptions, commit: Commit): Promise<BatchOutcome> {
    if (this.#draining !== undefined) throw new ClosingError()
    const writing = this.#write(tenant, own, ifRevision, actor, commit)
    this.#inFlight.add(writing)
    try {
      const outcome = await writing
      this.#writeFailedAt = undefined
      return outcome
    } catch (err) {
      // The database's failures, not the client's (a 404 group, a 409 conflict).
      if (((err as { statusCode?: number }).statusCode ?? 500) >= 500) this.#writeFailedAt = this.#now()
      throw err
    } finally {
      this.#inFlight.delete(writing)
    }
  }

  /** Whether a graceful shutdown began (`drain`): writes are refused, `/health` answers 503 `closing`. */
  get closing (): boolean {
    return this.#draining !== undefined
  }

  /**
   * Begins a graceful shutdown: new writes are refused at once (503 FST_POLICY_CACHE_CLOSING) and
   * `/health` answers 503 `closing`; resolves once the writes in flight have answered (each bounded by
   * `writeTimeoutMs` for its commit and `ackTimeoutMs` for its peers) and this instance has left the
   * membership. Checks, reads and peers' notices are still served. Idempotent; never rejects.
   * `app.close()` calls it first.
   */
  drain (): Promise<void> {
    this.#watchers.close({ type: 'end', code: 'FST_POLICY_CACHE_CLOSING', message: 'This instance is shutting down: reconnect, to another instance, with the last event id to continue' })
    this.#draining ??= Promise.all([
      Promise.allSettled(this.#inFlight),
      this.#leave?.()
    ]).then(() => {})
    return this.#draining
  }

  /**
   * Whether writes are failing: the latest write that reached the database failed there, less than
   * {@link WRITE_FAILURE_WINDOW_MS} ago (a database that answers reads but refuses writes, e.g. a
   * full disk). `/health` then answers `status: 'degraded'`.
   */
  writesFailing (): boolean {
    return this.#writeFailedAt !== undefined && this.#now() - this.#writeFailedAt < WRITE_FAILURE_WINDOW_MS
  }

  async #write (tenant: string, own: Change | Change[] | undefined, ifRevision: number | undefined, actor: string | undefined, commit: Commit): Promise<BatchOutcome> {
    const options: StoreWriteOptions = {
      ...(ifRevision === undefined ? {} : { ifRevision }),
      ...(actor === undefined ? {} : { actor })
    }
    const publish = this.#notifier.inTransaction
    // With a transport that publishes in the transaction (pg-notify), the notice is sent with the commit.
    if (publish !== undefined) {
      options.committing = async (tx, result) => {
        const { logged } = effective(own, result)
        if (logged !== null) await publish(tx, [noticeChange(tenant, { ...logged, revision: result.revision }, result.digest)])
      }
    }
    const writing = commit(options)
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'timeout'>((resolve) => { timer = setTimeout(resolve, this.#writeTimeoutMs, 'timeout') })
    let result: Awaited<typeof writing> | 'timeout'
    try {
      result = await Promise.race([writing, deadline]).catch(storeError('a write'))
    } finally {
      clearTimeout(timer)
    }
    if (result === 'timeout') {
      writing.then(async (late) => {
        this.#log.warn({ tenant, revision: late.revision, changed: late.changed, writeTimeoutMs: this.#writeTimeoutMs },
          'policy-cache: a write answered 503 (outcome unknown) committed after writeTimeoutMs; applied and sent to the peers now')
        this.#writeFailedAt = undefined
        await this.#committed(tenant, own, late)
      }).catch((err: unknown) => {
        this.#log.warn({ err, tenant, writeTimeoutMs: this.#writeTimeoutMs }, 'policy-cache: a write answered 503 (outcome unknown) failed after writeTimeoutMs')
      })
      throw new WriteOutcomeUnknownError(tenant, this.#writeTimeoutMs)
    }
    return await this.#committed(tenant, own, result)
  }

  /**
   * A committed write: counted, applied to this instance's cache, then broadcast — a batch as its
   * effective changes at its one revision (the entry the store logged).
   */
  async #committed (tenant: string, own: Change | Change[] | undefined, result: Committed): Promise<BatchOutcome> {
    const { revision, changed, digest } = result
    const { effects: outcomeEffects, logged } = effective(own, result)
    if (!changed || logged === null) {
      this.#unchanged++
      return { tenant, revision, changed, effects: outcomeEffects, peers: { acked: 0, total: 0 } }
    }
    this.#writes++
    const committed: LoggedChange = { ...logged, revision }
    try {
      await this.#tenants.applyOwn(tenant, committed, digest)
    } catch (err) {
      // Committed already: the write stands; the cache heals on the next catch-up or sync.
      this.#log.warn({ err, tenant, revision }, 'policy-cache: applying an own write to the cache failed')
    }
    // The notice carries the change (a small batch's changes) and the digest after it: a peer one
    // revision behind applies it without a query when its result has that digest.
    const peers = await this.#notifier.notify([noticeChange(tenant, committed, digest)])
    return { tenant, revision, changed, effects: outcomeEffects, peers }
  }

  /** The whole tenant as cached (loading it if needed). */
  async tenant (tenant: string, options: CheckOptions = {}): Promise<TenantView> {
    assertIdentifier('tenant', tenant)
    const state = await this.#state(tenant, options.minRevision)
    return { tenant, revision: state.revision, groups: state.view() }
  }

  /** One user's groups and effective grants in a tenant. */
  async user (tenant: string, user: string, options: CheckOptions = {}): Promise<UserView> {
    assertIdentifier('tenant', tenant)
    assertIdentifier('user', user)
    const state = await this.#state(tenant, options.minRevision)
    return { tenant, user, revision: state.revision, ...state.userView(user) }
  }

  /** A page of the tenant's group names, sorted. */
  async groups (tenant: string, options: PageOptions = {}): Promise<GroupsPage> {
    assertIdentifier('tenant', tenant)
    const limit = pageLimit(options.limit)
    const after = decodeCursor(options.cursor, isIdentifier)
    const state = await this.#state(tenant, options.minRevision)
    const { items, last } = state.groupPage(after, limit)
    return { tenant, revision: state.revision, groups: items, next: nextCursor(last) }
  }

  /** A page of a group's members, sorted; 404 FST_POLICY_CACHE_GROUP_NOT_FOUND without the group. */
  async groupUsers (tenant: string, group: string, options: PageOptions = {}): Promise<GroupUsersPage> {
    assertIdentifier('tenant', tenant)
    assertIdentifier('group', group)
    const limit = pageLimit(options.limit)
    const after = decodeCursor(options.cursor, isIdentifier)
    const state = await this.#state(tenant, options.minRevision)
    const page = state.userPage(group, after, limit)
    if (page === undefined) throw new GroupNotFoundError(group, tenant)
    return { tenant, group, revision: state.revision, users: page.items, next: nextCursor(page.last) }
  }

  /** A page of a group's grants, sorted; 404 FST_POLICY_CACHE_GROUP_NOT_FOUND without the group. */
  async groupPermissions (tenant: string, group: string, options: PageOptions = {}): Promise<GroupPermissionsPage> {
    assertIdentifier('tenant', tenant)
    assertIdentifier('group', group)
    const limit = pageLimit(options.limit)
    const after = decodeCursor(options.cursor, isGrant)
    const state = await this.#state(tenant, options.minRevision)
    const page = state.grantPage(group, after, limit)
    if (page === undefined) throw new GroupNotFoundError(group, tenant)
    return { tenant, group, revision: state.revision, permissions: page.items, next: nextCursor(page.last) }
  }

  /**
   * Reverse lookup: a page of the users holding `permission` — through a grant of it, of a wildcard
   * over it (`documents:*`, `*`) — each with the groups through which they hold it. `permission` may
   * itself be a wildcard: `documents:*` is held by a grant `documents:*`, a shorter wildcard or `*`.
   */
  async who (tenant: string, permission: string, options: PageOptions = {}): Promise<HoldersPage> {
    assertIdentifier('tenant', tenant)
    assertGrant(permission)
    const limit = pageLimit(options.limit)
    const after = decodeCursor(options.cursor, isIdentifier)
    const state = await this.#state(tenant, options.minRevision)
    const { items, last } = state.holderPage(permission, after, limit)
    return { tenant, permission, revision: state.revision, users: items, next: nextCursor(last) }
  }

  /** Reloads a tenant fully from the database. */
  async refresh (tenant: string): Promise<{ tenant: string, revision: number }> {
    assertIdentifier('tenant', tenant)
    const revision = await this.#tenants.reload(tenant).catch(storeError('a reload'))
    return { tenant, revision }
  }

  /** The tenant's revision as this instance answers from (loading it if needed). */
  async revision (tenant: string): Promise<number> {
    assertIdentifier('tenant', tenant)
    return (await this.#state(tenant)).revision
  }

  /** Each peer's state and delivery stats. */
  peers (): PeerStatus[] {
    return this.#notifier.status()
  }

  /** Cache and engine counters. */
  stats (): EngineStats {
    return { ...this.#tenants.stats(), checksAllowed: this.#allowed, checksDenied: this.#denied, writes: this.#writes, writesUnchanged: this.#unchanged, ...this.#watchers.stats() }
  }

  /** The revision a tenant is answered from here when it is cached, else null: loads nothing (the board's view of an instance). */
  cachedRevision (tenant: string): number | null {
    return this.#tenants.cachedRevision(tenant)
  }

  /** Up to `limit` cached tenants with the revision each is answered from, most recently used first. */
  cachedRevisions (limit = Infinity): Array<[string, number]> {
    return this.#tenants.revisions(limit)
  }

  /**
   * A peer's notice: catch up cached tenants behind it — with the change an entry carries when the
   * cache is exactly one revision behind it and the result has the entry's digest, else from the
   * changelog — and reload a tenant whose contents at the entry's revision differ from the entry's
   * digest and did not come from the database. Returns this instance's revision per tenant (null:
   * not cached, loads lazily). The entries come decoded (`decodeNotice`): a malformed notice was
   * rejected before reaching here. A notice from an instance on another database (`from.database`)
   * is refused with a coded 409, logged once per sender.
   */
  async noticed (entries: readonly NoticeEntry[], from?: NoticeSender): Promise<Record<string, number | null>> {
    if (from?.database !== undefined && this.#databaseId !== undefined && from.database !== this.#databaseId) {
      if (!this.#foreignSenders.has(from.origin)) {
        this.#foreignSenders.set(from.origin, true)
        const log = this.#log.error ?? this.#log.warn
        log.call(this.#log, { origin: from.origin, database: from.database, ownDatabase: this.#databaseId },
          'policy-cache: refused notices from a server on another database (answered 409): two deployments share a webhook secret and one lists the other as a peer; give each deployment its own secret')
      }
      throw new ForeignDatabaseError(from.origin)
    }
    // The highest revision per tenant, with the change and digest carried at exactly that revision
    // (two entries naming the same revision with different data carry none: the changelog decides).
    const latest = new Map<string, { revision: number, digest: string | undefined, carried: LoggedChange | undefined }>()
    for (const entry of entries) {
      const { carried, digest } = entry
      const seen = latest.get(entry.tenant)
      if (seen === undefined || entry.revision > seen.revision) {
        latest.set(entry.tenant, { revision: entry.revision, digest, carried })
      } else if (entry.revision === seen.revision) {
        if (!sameChange(seen.carried, carried)) seen.carried = undefined
        if (seen.digest !== digest) seen.digest = undefined
      }
    }
    const revisions: Record<string, number | null> = Object.create(null)
    await Promise.all([...latest].map(async ([tenant, { revision, digest, carried }]) => {
      revisions[tenant] = await this.#tenants.noticed(tenant, revision, digest, carried).catch(storeError('a catch-up'))
    }))
    return revisions
  }

  /**
   * Anti-entropy: one query for the revisions and digests of all cached tenants; catches up those
   * behind and reloads those whose contents differ from the database's.
   */
  sync (): Promise<SyncResult> {
    return this.#tenants.sync().catch(storeError('a sync'))
  }

  /** Whether the database answers. */
  async ping (): Promise<void> {
    await bounded(this.#store.ping(), this.#catchUpTimeoutMs).catch(storeError('a ping'))
  }

  /** Starts loading a tenant `checkSync` found cold; the cache's single-flight load shares one query. */
  #loadInBackground (tenant: string): void {
    // An id that is not a tenant id can never be loaded: it holds nothing (checkSync answers for the guard).
    if (this.#background.has(tenant) || !isIdentifier(tenant)) return
    this.#background.add(tenant)
    this.#state(tenant).then(() => {
      this.#background.delete(tenant)
      if (this.#backgroundFailures === 0) return
      this.#log.info?.({ failures: this.#backgroundFailures }, 'policy-cache: background loads (checkSync) succeed again')
      this.#backgroundFailures = 0
    }, (err: unknown) => {
      this.#background.delete(tenant)
      if (this.#backgroundFailures++ > 0) return
      this.#log.warn({ err, tenant }, 'policy-cache: loading a tenant in the background (checkSync) failed; further failures are counted until one succeeds')
    })
  }

  async #state (tenant: string, minRevision?: number) {
    if (minRevision !== undefined && (!Number.isSafeInteger(minRevision) || minRevision < 0)) {
      throw new InvalidInputError('minRevision', 'must be a non-negative integer')
    }
    const cached = this.#tenants.lookup(tenant)
    if (cached !== undefined && (minRevision === undefined || cached.revision >= minRevision)) return cached
    const load = async () => {
      let state = await this.#tenants.get(tenant)
      if (minRevision !== undefined && state.revision < minRevision) {
        await this.#tenants.catchUp(tenant)
        state = this.#tenants.peek(tenant) ?? await this.#tenants.get(tenant)
        if (state.revision < minRevision) throw new RevisionAheadError(tenant, state.revision, minRevision)
      }
      return state
    }
    return await bounded(load(), this.#catchUpTimeoutMs).catch(storeError('a read'))
  }
}
