/**
 * The built-in PolicyStore: prefixed tables on any Kysely (SQLite, PostgreSQL, MySQL).
 * Writes to one tenant serialize on the tenant's row, so revisions are unique and gap-free
 * across connections and processes.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { Migrator, sql, type ExpressionBuilder, type Kysely } from 'kysely'
import { DEFAULTS } from '../defaults.js'
import { EMPTY_DIGEST, factHash, formatDigest, parseDigest } from '../digest.js'
import { GroupNotFoundError, InvalidOptionError, TenantNotFoundError } from '../errors.js'
import { assertNoCycle } from '../hierarchy.js'
import {
  assertActor, assertBatch, assertChange, assertGroups, assertIdentifier, assertIfRevision, checkRevision, loggedBatch, replaceChanges,
  type AuditEntry, type BatchChange, type Change, type ChangesPage, type GroupData, type LoggedChange, type TenantSnapshot, type TenantSummary, type TenantVersion, type WriteResult
} from '../model.js'
import { BatchPlan, type BatchFacts, type Pair } from './batch-plan.js'
import { clock, dialectOf, isTransientError, seeingOnly, type Dialect } from './dialect.js'
import { KyselyMembershipStore } from './kysely-membership.js'
import { DATABASE_ID, storeMigrations, tableNames, type TableNames } from './migrations.js'
import type { MembershipStore, PolicyStore, ReplaceResult, StoreWriteOptions, WriteTransaction } from './types.js'

/** What `tablePrefix` must match: a short SQL identifier start, so every table name stays valid. */
export const TABLE_PREFIX_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,40}$'

/** Options of {@link KyselyPolicyStore}. */
export interface KyselyPolicyStoreOptions {
  /** The database. Its plugins (e.g. CamelCasePlugin) are not applied to the store's queries. */
  db: Kysely<any>
  /** Prefix of every table the store creates, its migration tables included. Default `policy_`. */
  tablePrefix?: string
  /**
   * Which changelog rows are kept: a row goes once it is beyond the tenant's newest `changes` rows
   * **and** older than `days` days (database clock). A number n is `{ changes: n, days: 0 }`.
   * Default {@link DEFAULTS.changelogRetention}.
   */
  changelogRetention?: number | { changes: number, days?: number | undefined }
  /** Whether `close()` destroys `db`: true only when the caller created it for the store. Default false. */
  ownsDb?: boolean
}

/** How long the changelog keeps a tenant's rows: the newest `changes` rows, and every row younger than `days` days. */
export interface ChangelogRetention {
  /** The newest rows kept whatever their age (catch-up reads them): at least 1. */
  changes: number
  /** Rows younger than this many days (database clock) are kept whatever their number (the audit feed reads them); 0: none by age. */
  days: number
}

/** Most days `changelogRetention.days` may say (a century). */
const MAX_RETENTION_DAYS = 36500

/**
 * `changelogRetention` as an object, validated: a positive integer n is `{ changes: n, days: 0 }`;
 * an object needs `changes` (a positive integer) and may give `days` (an integer from 0 to 36500,
 * default 0). Throws FST_POLICY_CACHE_INVALID_OPTION naming the bad part.
 */
export function resolveRetention (value: unknown): Readonly<ChangelogRetention> {
  const changesOf = (changes: unknown, name: string): number => {
    if (typeof changes !== 'number' || !Number.isSafeInteger(changes) || changes < 1) throw new InvalidOptionError(name, 'must be a positive integer')
    return changes
  }
  if (typeof value === 'number') return Object.freeze({ changes: changesOf(value, 'changelogRetention'), days: 0 })
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError('changelogRetention', 'must be a positive integer or { changes, days }')
  }
  const unknown = Object.keys(value).find((key) => key !== 'changes' && key !== 'days')
  if (unknown !== undefined) throw new InvalidOptionError('changelogRetention', `takes changes and days only, not ${JSON.stringify(unknown)}`)
  const { changes, days = 0 } = value as { changes?: unknown, days?: unknown }
  if (typeof days !== 'number' || !Number.isInteger(days) || days < 0 || days > MAX_RETENTION_DAYS) {
    throw new InvalidOptionError('changelogRetention.days', `must be an integer from 0 to ${MAX_RETENTION_DAYS}`)
  }
  return Object.freeze({ changes: changesOf(changes, 'changelogRetention.changes'), days })
}

/** A changelog row as the drivers return it (`revision` may be a string: pg returns bigints so). */
interface ChangelogRow {
  revision: number | string
  op: LoggedChange['op']
  group_name: string
  permission: string | null
  user_id: string | null
  /** A batch entry's changes, as JSON (0004); null for a single change. */
  changes: string | null
  /** The included group of include-group and exclude-group (0007); null otherwise. */
  includes: string | null
}

/** A changelog row with its audit columns (0005). */
interface AuditRow extends ChangelogRow {
  origin: string
  actor: string | null
  committed_at: number | string | null
  created_at: number | string
}

/** Old changelog rows are pruned on every revision that is a multiple of this. */
const PRUNE_EVERY = 64
/** Most changelog rows one pruning deletes (the write's cost stays bounded; PRUNE_EVERY revisions add fewer). */
const PRUNE_LIMIT = 500
const DAY_MS = 86_400_000
/** `where in` lists are split into chunks of this size. */
const IN_CHUNK = 500
/** Multi-row inserts and tuple `in` lists of a batch are split into chunks of this many rows (≤ 1 000 parameters). */
const ROW_CHUNK = 300
/** Attempts of a transaction that a deadlock or a busy SQLite database rolled back. */
const MAX_ATTEMPTS = 10
const RETRY_BASE_MS = 10
const RETRY_CAP_MS = 1000

/** The built-in {@link PolicyStore} on any Kysely with a SQLite, PostgreSQL or MySQL dialect. */
export class KyselyPolicyStore implements PolicyStore {
  readonly #db: Kysely<any>
  readonly #dialect: Dialect
  readonly #tables: TableNames
  readonly #retention: Readonly<ChangelogRetention>
  readonly #ownsDb: boolean
  #databaseId: Promise<string> | undefined
  /** Instances finding each other through the database (docs/membership.md). */
  readonly membership: MembershipStore

  /** Throws `FST_POLICY_CACHE_INVALID_OPTION` for an unsupported `db` or a bad option. */
  constructor ({ db, tablePrefix = DEFAULTS.tablePrefix, changelogRetention = DEFAULTS.changelogRetention, ownsDb = false }: KyselyPolicyStoreOptions) {
    this.#dialect = dialectOf(db)
    if (typeof tablePrefix !== 'string' || !new RegExp(TABLE_PREFIX_PATTERN).test(tablePrefix)) {
      throw new InvalidOptionError('tablePrefix', `must match ${TABLE_PREFIX_PATTERN}`)
    }
    this.#db = db.withoutPlugins()
    this.#tables = tableNames(tablePrefix)
    this.#retention = resolveRetention(changelogRetention)
    this.#ownsDb = ownsDb
    this.membership = new KyselyMembershipStore({
      db: this.#db,
      dialect: this.#dialect,
      tables: this.#tables,
      transaction: (fn) => this.#retrying(() => this.#writeTransaction(fn))
    })
  }

  /**
   * Runs the pending migrations. Concurrent runs serialize on kysely's migration lock
   * (PostgreSQL, MySQL) or on an immediate transaction (SQLite). Throws with the failure as `cause`.
   */
  async migrate (): Promise<void> {
    // A migration is all-or-nothing (one transaction), so running it again after a lock conflict is safe.
    await this.#retrying(() => this.#dialect === 'sqlite'
      ? this.#immediateTransaction((conn) => this.#runMigrator(conn))
      : this.#runMigrator(seeingOnly(this.#db, [this.#tables.migrations, this.#tables.migrationsLock])))
  }

  /** The database's id, created by the first migration that made the tables; read once. */
  databaseId (): Promise<string> {
    this.#databaseId ??= this.#db.selectFrom(this.#tables.meta).select('value').where('name', '=', DATABASE_ID)
      .executeTakeFirstOrThrow().then((row) => row.value as string)
    // A failed read is not remembered: the next call asks again.
    this.#databaseId.catch(() => { this.#databaseId = undefined })
    return this.#databaseId
  }

  /**
   * Applies one change, or a batch of changes in order: mutation, revision bump, digest update and one
   * changelog row in one transaction; with `ifRevision`, only when the tenant is at that revision.
   * See {@link PolicyStore.write}.
   */
  async write (tenant: string, change: Change | readonly Change[], origin: string, options: StoreWriteOptions = {}): Promise<WriteResult> {
    assertIdentifier('tenant', tenant)
    const batch = Array.isArray(change) ? change as readonly Change[] : undefined
    if (batch === undefined) assertChange(change as Change)
    else assertBatch(batch)
    return await this.#writing(tenant, origin, options, false, async (trx) => {
      if (batch === undefined) {
        const delta = await this.#apply(trx, tenant, change as Change)
        return { logged: delta === null ? null : change as Change, delta: delta ?? 0n }
      }
      const outcome = await this.#applyBatch(trx, tenant, batch)
      return { logged: loggedBatch(outcome.effective), delta: outcome.delta, effects: outcome.effects }
    })
  }

  /** Replaces the tenant's policy with `groups`: the difference, as one batch. See {@link PolicyStore.importTenant}. */
  async importTenant (tenant: string, groups: readonly GroupData[], origin: string, options: StoreWriteOptions = {}): Promise<ReplaceResult> {
    assertIdentifier('tenant', tenant)
    assertGroups(groups, tenant)
    return await this.#replace(tenant, groups, origin, options, false)
  }

  /** Deletes a tenant that exists: its groups as one batch, and the deleted flag. See {@link PolicyStore.deleteTenant}. */
  async deleteTenant (tenant: string, origin: string, options: StoreWriteOptions = {}): Promise<ReplaceResult> {
    assertIdentifier('tenant', tenant)
    return await this.#replace(tenant, [], origin, options, true)
  }

  async #replace (tenant: string, groups: readonly GroupData[], origin: string, options: StoreWriteOptions, deleting: boolean): Promise<ReplaceResult> {
    const result = await this.#writing(tenant, origin, options, deleting, async (trx) => {
      const changes = replaceChanges(await this.#contents(trx, tenant), groups)
      if (changes.length === 0) return { logged: null, delta: 0n, changes }
      const outcome = await this.#applyBatch(trx, tenant, changes)
      return { logged: loggedBatch(outcome.effective), delta: outcome.delta, changes: outcome.effective }
    })
    return { ...result, changes: result.changes ?? [] }
  }

  /**
   * One write transaction of `tenant`: locks its row (creating it at revision 0), refuses a tenant
   * that does not exist when `deleting` (404), checks `ifRevision`, runs `mutate`; when that changed
   * something, bumps the revision, updates the digest and the deleted flag (set when `deleting`,
   * cleared by any other effective write), appends the changelog entry, prunes, and calls
   * `options.committing` with the result. Deleting an empty tenant only sets the flag.
   */
  async #writing (tenant: string, origin: string, options: StoreWriteOptions, deleting: boolean, mutate: (trx: Kysely<any>) => Promise<Mutation>): Promise<WriteResult & { changes?: Change[] }> {
    const { ifRevision, actor } = options
    assertIfRevision(ifRevision)
    assertActor(actor)
    const { tenants, changelog } = this.#tables
    return await this.#retrying(() => this.#writeTransaction(async (trx) => {
      const current = await this.#lockTenant(trx, tenant)
      if (deleting && !current.exists) throw new TenantNotFoundError(tenant)
      checkRevision(tenant, current.revision, ifRevision)
      const { logged, delta, effects, changes } = await mutate(trx)
      const extra = { ...(effects === undefined ? {} : { effects }), ...(changes === undefined ? {} : { changes }) }
      if (logged === null) {
        if (deleting) await trx.updateTable(tenants).set({ deleted: 1 }).where('tenant', '=', tenant).execute()
        return { revision: current.revision, changed: false, digest: current.digest, ...extra }
      }

      const revision = current.revision + 1
      const digest = formatDigest(parseDigest(current.digest) + delta)
      await trx.updateTable(tenants).set({ revision, digest, deleted: deleting ? 1 : 0 }).where('tenant', '=', tenant).execute()
      await trx.insertInto(changelog).values({
        tenant,
        revision,
        op: logged.op,
        group_name: logged.op === 'batch' ? '' : logged.group,
        permission: 'permission' in logged ? logged.permission : null,
        user_id: 'user' in logged ? logged.user : null,
        includes: 'includes' in logged ? logged.includes : null,
        ...(logged.op === 'batch' ? { changes: JSON.stringify(logged.changes) } : {}),
        origin,
        actor: actor ?? null,
        created_at: Date.now(),
        committed_at: clock(this.#dialect)
      }).execute()
      if (revision % PRUNE_EVERY === 0) await this.#prune(trx, tenant, revision)
      const result = { revision, changed: true, digest, ...extra }
      if (options.committing !== undefined) await options.committing(this.#transactionHandle(trx), result)
      return result
    }))
  }

  /** The tenant's groups (sorted by name, their permissions and users sorted) at one revision. */
  async snapshot (tenant: string): Promise<TenantSnapshot> {
    const { tenants } = this.#tables
    const read = this.#db.transaction()
    return await (this.#dialect === 'sqlite' ? read : read.setIsolationLevel('repeatable read')).execute(async (trx) => {
      const row = await trx.selectFrom(tenants).select(['revision', 'digest', 'deleted']).where('tenant', '=', tenant).executeTakeFirst()
      if (row === undefined) return { revision: 0, groups: [], digest: EMPTY_DIGEST, exists: false }
      const revision = Number(row.revision)
      return { revision, groups: await this.#contents(trx, tenant), digest: row.digest as string, exists: exists(revision, row.deleted) }
    })
  }

  /** The tenants that exist, sorted, after `after`, at most `limit`. See {@link PolicyStore.tenants}. */
  async tenants (after: string | undefined, limit: number): Promise<TenantSummary[]> {
    let query = this.#db.selectFrom(this.#tables.tenants).select(['tenant', 'revision']).where('revision', '>', 0).where('deleted', '=', 0)
    if (after !== undefined) query = query.where('tenant', '>', after)
    const rows = await query.orderBy('tenant').limit(limit).execute()
    return rows.map((row) => ({ tenant: row.tenant as string, revision: Number(row.revision) }))
  }

  /** The tenant's groups, sorted by name, their permissions and users sorted, read in `trx`. */
  async #contents (trx: Kysely<any>, tenant: string): Promise<GroupData[]> {
    const { groups, grants, members, inclusions } = this.#tables
    const byName = new Map<string, Required<GroupData>>()
    const groupRows = await trx.selectFrom(groups).select('name').where('tenant', '=', tenant).execute()
    for (const { name } of groupRows) byName.set(name, { name, permissions: [], users: [], includes: [] })
    const grantRows = await trx.selectFrom(grants).select(['group_name', 'permission']).where('tenant', '=', tenant).execute()
    for (const { group_name: group, permission } of grantRows) byName.get(group)?.permissions.push(permission)
    const inclusionRows = await trx.selectFrom(inclusions).select(['group_name', 'includes']).where('tenant', '=', tenant).execute()
    for (const { group_name: group, includes } of inclusionRows) byName.get(group)?.includes.push(includes)
    if (this.#dialect === 'mysql') {
      const memberRows = await trx.selectFrom(members).select(['group_name', 'user_id']).where('tenant', '=', tenant).execute()
      for (const { group_name: group, user_id: user } of memberRows) byName.get(group)?.users.push(user)
    } else {
      // One row per group, its users joined in the database: on a large tenant, materialising a row
      // object per membership dominated the reload (docs/benchmarks.md, section 5). ',' is never in
      // an id (every write is validated); MySQL's GROUP_CONCAT truncates silently, so it reads rows.
      const joined = this.#dialect === 'sqlite' ? sql<string>`group_concat(user_id, ',')` : sql<string>`string_agg(user_id, ',')`
      const memberRows = await trx.selectFrom(members).select(['group_name', joined.as('users')])
        .where('tenant', '=', tenant).groupBy('group_name').execute()
      for (const { group_name: group, users } of memberRows) {
        const data = byName.get(group)
        if (data !== undefined) data.users = users.split(',')
      }
    }

    const result = [...byName.values()].sort((a, b) => a.name < b.name ? -1 : 1)
    for (const group of result) {
      group.permissions.sort()
      group.users.sort()
      group.includes.sort()
    }
    return result
  }

  /** The changes after `revision`, in order; `[]` when current; `null` when pruned or when `revision` is ahead. */
  async changesSince (tenant: string, revision: number): Promise<LoggedChange[] | null> {
    const rows: ChangelogRow[] = await this.#db.selectFrom(this.#tables.changelog)
      .select(['revision', 'op', 'group_name', 'permission', 'user_id', 'changes', 'includes'])
      .where('tenant', '=', tenant)
      .where('revision', '>', revision)
      .orderBy('revision')
      .execute()
    if (rows.length === 0) {
      const current = (await this.revisions([tenant])).get(tenant)?.revision
      return current === revision ? [] : null
    }
    return Number(rows[0].revision) === revision + 1 ? rows.map(toLoggedChange) : null
  }

  /** The audit feed: entries after `after` (at most `limit`), the current and the oldest kept revision, in one read transaction. */
  async changes (tenant: string, after: number, limit: number): Promise<ChangesPage> {
    const { tenants, changelog } = this.#tables
    const read = this.#db.transaction()
    return await (this.#dialect === 'sqlite' ? read : read.setIsolationLevel('repeatable read')).execute(async (trx) => {
      const head = await trx.selectFrom(tenants).select('revision').where('tenant', '=', tenant).executeTakeFirst()
      const oldest = await trx.selectFrom(changelog).select('revision').where('tenant', '=', tenant)
        .orderBy('revision').limit(1).executeTakeFirst()
      const rows: AuditRow[] = await trx.selectFrom(changelog)
        .select(['revision', 'op', 'group_name', 'permission', 'user_id', 'changes', 'includes', 'origin', 'actor', 'committed_at', 'created_at'])
        .where('tenant', '=', tenant)
        .where('revision', '>', after)
        .orderBy('revision')
        .limit(limit)
        .execute()
      return {
        revision: head === undefined ? 0 : Number(head.revision),
        oldestRevision: oldest === undefined ? null : Number(oldest.revision),
        entries: rows.map(toAuditEntry)
      }
    })
  }

  /** Current revisions and digests, revision 0 for tenants never written; one query per 500 distinct tenants. */
  async revisions (tenants: readonly string[]): Promise<Map<string, TenantVersion>> {
    const unique = [...new Set(tenants)]
    const result = new Map<string, TenantVersion>(unique.map((tenant) => [tenant, { revision: 0, digest: EMPTY_DIGEST }]))
    for (let start = 0; start < unique.length; start += IN_CHUNK) {
      const rows = await this.#db.selectFrom(this.#tables.tenants)
        .select(['tenant', 'revision', 'digest'])
        .where('tenant', 'in', unique.slice(start, start + IN_CHUNK))
        .execute()
      for (const row of rows) result.set(row.tenant, { revision: Number(row.revision), digest: row.digest })
    }
    return result
  }

  /** Whether `write`'s `committing` hook can `notify`: PostgreSQL only (`pg_notify`). */
  get notifies (): boolean {
    return this.#dialect === 'postgres'
  }

  /** What a `committing` hook may do in the write's transaction `trx`. */
  #transactionHandle (trx: Kysely<any>): WriteTransaction {
    const dialect = this.#dialect
    return {
      async notify (channel: string, payload: string): Promise<void> {
        if (dialect !== 'postgres') throw new Error(`pg_notify needs PostgreSQL; this store is on ${dialect}`)
        await sql`select pg_notify(${channel}, ${payload})`.execute(trx)
      }
    }
  }

  /** Resolves when the database answers `select 1`. */
  async ping (): Promise<void> {
    await sql`select 1`.execute(this.#db)
  }

  /** Destroys the Kysely when the store owns it (`ownsDb`); otherwise does nothing. */
  async close (): Promise<void> {
    if (this.#ownsDb) await this.#db.destroy()
  }

  async #runMigrator (db: Kysely<any>): Promise<void> {
    const migrations = storeMigrations(this.#tables, this.#dialect)
    const migrator = new Migrator({
      db,
      provider: { getMigrations: async () => migrations },
      migrationTableName: this.#tables.migrations,
      migrationLockTableName: this.#tables.migrationsLock
    })
    const { error, results } = await migrator.migrateToLatest()
    if (error !== undefined) {
      const failed = results?.find((result) => result.status === 'Error')?.migrationName
      throw new Error(`Policy store migration ${failed === undefined ? 'setup' : `"${failed}"`} failed`, { cause: error })
    }
  }

  /**
   * Deletes the oldest of the tenant's changelog rows that retention lets go, at most PRUNE_LIMIT:
   * those beyond the newest `changes` and, with `days`, older than `days` (database clock). Only
   * ever a prefix — the oldest rows, up to the first one kept — so the log has no gap.
   */
  async #prune (trx: Kysely<any>, tenant: string, revision: number): Promise<void> {
    const { changelog } = this.#tables
    const { changes, days } = this.#retention
    const candidates = await trx.selectFrom(changelog).select(['revision', 'committed_at'])
      .where('tenant', '=', tenant)
      .where('revision', '<=', revision - changes)
      .orderBy('revision')
      .limit(PRUNE_LIMIT)
      .execute()
    if (candidates.length === 0) return
    let last = Number(candidates[candidates.length - 1].revision)
    if (days > 0) {
      const { now } = await trx.selectNoFrom(clock(this.#dialect).as('now')).executeTakeFirstOrThrow()
      const cutoff = Number(now) - days * DAY_MS
      const young = candidates.findIndex((row) => row.committed_at !== null && Number(row.committed_at) >= cutoff)
      if (young === 0) return
      if (young > 0) last = Number(candidates[young - 1].revision)
    }
    await trx.deleteFrom(changelog).where('tenant', '=', tenant).where('revision', '<=', last).execute()
  }

  /** Creates the tenant's row if missing and locks it for the transaction; returns its revision, digest and whether it exists. */
  async #lockTenant (trx: Kysely<any>, tenant: string): Promise<TenantVersion & { exists: boolean }> {
    const { tenants } = this.#tables
    const insert = trx.insertInto(tenants).values({ tenant, revision: 0 })
    await (this.#dialect === 'mysql'
      ? insert.onDuplicateKeyUpdate({ revision: sql.ref('revision') })
      : insert.onConflict((conflict) => conflict.column('tenant').doNothing())
    ).execute()
    const select = trx.selectFrom(tenants).select(['revision', 'digest', 'deleted']).where('tenant', '=', tenant)
    // SQLite has no row locks: the immediate transaction already holds the database's write lock.
    const row = await (this.#dialect === 'sqlite' ? select : select.forUpdate()).executeTakeFirstOrThrow()
    const revision = Number(row.revision)
    return { revision, digest: row.digest, exists: exists(revision, row.deleted) }
  }

  /**
   * Applies the mutation under the tenant's lock; returns what it adds to the tenant's digest (the
   * hashes of the facts added minus those of the facts removed), or null when it changed nothing.
   */
  async #apply (trx: Kysely<any>, tenant: string, change: Change): Promise<bigint | null> {
    const { groups, grants, members, inclusions } = this.#tables
    const group = change.group
    const added = (done: boolean, hash: () => bigint) => done ? hash() : null
    const removed = (done: boolean, hash: () => bigint) => done ? -hash() : null
    switch (change.op) {
      case 'create-group':
        return added(await this.#insertMissing(trx, groups, { tenant, name: group }), () => factHash({ group }))
      case 'delete-group': {
        if (!await this.#deleteExisting(trx, groups, { tenant, name: group })) return null
        // The group's grants and memberships go with it, and so do their hashes.
        let delta = -factHash({ group })
        const grantRows = await trx.selectFrom(grants).select('permission').where('tenant', '=', tenant).where('group_name', '=', group).execute()
        for (const { permission } of grantRows) delta -= factHash({ group, permission })
        const memberRows = await trx.selectFrom(members).select('user_id').where('tenant', '=', tenant).where('group_name', '=', group).execute()
        for (const { user_id: user } of memberRows) delta -= factHash({ group, user })
        // Its inclusions, both ways: those it makes and those naming it.
        const touching = (eb: ExpressionBuilder<any, any>) => eb.and([eb('tenant', '=', tenant), eb.or([eb('group_name', '=', group), eb('includes', '=', group)])])
        const inclusionRows = await trx.selectFrom(inclusions).select(['group_name', 'includes']).where(touching).execute()
        for (const row of inclusionRows) delta -= factHash({ group: row.group_name, includes: row.includes })
        await trx.deleteFrom(grants).where('tenant', '=', tenant).where('group_name', '=', group).execute()
        await trx.deleteFrom(members).where('tenant', '=', tenant).where('group_name', '=', group).execute()
        await trx.deleteFrom(inclusions).where(touching).execute()
        return delta
      }
      case 'add-permission': {
        const { permission } = change
        await this.#assertGroup(trx, tenant, group)
        return added(await this.#insertMissing(trx, grants, { tenant, group_name: group, permission }), () => factHash({ group, permission }))
      }
      case 'remove-permission': {
        const { permission } = change
        return removed(await this.#deleteExisting(trx, grants, { tenant, group_name: group, permission }), () => factHash({ group, permission }))
      }
      case 'assign-user': {
        const { user } = change
        await this.#assertGroup(trx, tenant, group)
        return added(await this.#insertMissing(trx, members, { tenant, group_name: group, user_id: user }), () => factHash({ group, user }))
      }
      case 'unassign-user': {
        const { user } = change
        return removed(await this.#deleteExisting(trx, members, { tenant, group_name: group, user_id: user }), () => factHash({ group, user }))
      }
      case 'include-group': {
        const { includes } = change
        await this.#assertGroup(trx, tenant, group)
        await this.#assertGroup(trx, tenant, includes)
        const row = { tenant, group_name: group, includes }
        const found = await trx.selectFrom(inclusions).select(sql.lit(1).as('found')).where((eb) => eb.and(row)).executeTakeFirst()
        if (found !== undefined) return null
        // The tenant's inclusions are few (at most one per pair of groups, usually about one per group): read them all.
        const children = await this.#inclusionsOf(trx, tenant)
        assertNoCycle(tenant, group, includes, (name) => children.get(name) ?? [])
        await trx.insertInto(inclusions).values(row).execute()
        return factHash({ group, includes })
      }
      case 'exclude-group': {
        const { includes } = change
        return removed(await this.#deleteExisting(trx, inclusions, { tenant, group_name: group, includes }), () => factHash({ group, includes }))
      }
    }
  }

  /** The tenant's inclusions: each group → the groups it includes. */
  async #inclusionsOf (trx: Kysely<any>, tenant: string): Promise<Map<string, string[]>> {
    const rows = await trx.selectFrom(this.#tables.inclusions).select(['group_name', 'includes']).where('tenant', '=', tenant).execute()
    const children = new Map<string, string[]>()
    for (const { group_name: group, includes } of rows) {
      const list = children.get(group)
      if (list === undefined) children.set(group, [includes])
      else list.push(includes)
    }
    return children
  }

  /**
   * Applies a batch under the tenant's lock with set queries: reads the facts its changes need, plans
   * it in memory (lib/store/batch-plan.ts), then deletes and inserts the net difference.
   */
  async #applyBatch (trx: Kysely<any>, tenant: string, changes: readonly Change[]) {
    const { groups, grants, members, inclusions } = this.#tables
    const plan = new BatchPlan(tenant, changes)
    const needs = plan.needs()
    const facts: BatchFacts & { groups: string[], grants: Pair[], members: Pair[], inclusions: Pair[] } = { groups: [], grants: [], members: [], inclusions: [] }
    for (const names of chunks(needs.groups, IN_CHUNK)) {
      const rows = await trx.selectFrom(groups).select('name').where('tenant', '=', tenant).where('name', 'in', names).execute()
      for (const { name } of rows) facts.groups.push(name)
    }
    // A group missing from the database has no grants or memberships there: nothing to read for it.
    const existing = new Set(facts.groups)
    const stored = ([group]: Pair): boolean => existing.has(group)
    for (const names of chunks(needs.whole.filter((name) => existing.has(name)), IN_CHUNK)) {
      const grantRows = await trx.selectFrom(grants).select(['group_name', 'permission']).where('tenant', '=', tenant).where('group_name', 'in', names).execute()
      for (const row of grantRows) facts.grants.push([row.group_name, row.permission])
      const memberRows = await trx.selectFrom(members).select(['group_name', 'user_id']).where('tenant', '=', tenant).where('group_name', 'in', names).execute()
      for (const row of memberRows) facts.members.push([row.group_name, row.user_id])
    }
    for (const pairs of chunks(needs.grants.filter(stored), ROW_CHUNK)) {
      const rows = await trx.selectFrom(grants).select(['group_name', 'permission']).where('tenant', '=', tenant)
        .where((eb) => eb(eb.refTuple('group_name', 'permission'), 'in', pairs.map(([g, p]) => eb.tuple(g, p)))).execute()
      for (const row of rows) facts.grants.push([row.group_name, row.permission])
    }
    for (const pairs of chunks(needs.members.filter(stored), ROW_CHUNK)) {
      const rows = await trx.selectFrom(members).select(['group_name', 'user_id']).where('tenant', '=', tenant)
        .where((eb) => eb(eb.refTuple('group_name', 'user_id'), 'in', pairs.map(([g, u]) => eb.tuple(g, u)))).execute()
      for (const row of rows) facts.members.push([row.group_name, row.user_id])
    }
    if (needs.inclusions) {
      for (const [group, included] of await this.#inclusionsOf(trx, tenant)) {
        for (const name of included) facts.inclusions.push([group, name])
      }
    }

    const outcome = plan.apply(facts)
    const { insert, remove } = outcome
    for (const pairs of chunks(remove.grants, ROW_CHUNK)) {
      await trx.deleteFrom(grants).where('tenant', '=', tenant)
        .where((eb) => eb(eb.refTuple('group_name', 'permission'), 'in', pairs.map(([g, p]) => eb.tuple(g, p)))).execute()
    }
    for (const pairs of chunks(remove.members, ROW_CHUNK)) {
      await trx.deleteFrom(members).where('tenant', '=', tenant)
        .where((eb) => eb(eb.refTuple('group_name', 'user_id'), 'in', pairs.map(([g, u]) => eb.tuple(g, u)))).execute()
    }
    for (const pairs of chunks(remove.inclusions, ROW_CHUNK)) {
      await trx.deleteFrom(inclusions).where('tenant', '=', tenant)
        .where((eb) => eb(eb.refTuple('group_name', 'includes'), 'in', pairs.map(([g, i]) => eb.tuple(g, i)))).execute()
    }
    for (const names of chunks(remove.groups, IN_CHUNK)) {
      await trx.deleteFrom(groups).where('tenant', '=', tenant).where('name', 'in', names).execute()
    }
    for (const names of chunks(insert.groups, ROW_CHUNK)) {
      await trx.insertInto(groups).values(names.map((name) => ({ tenant, name }))).execute()
    }
    for (const pairs of chunks(insert.grants, ROW_CHUNK)) {
      await trx.insertInto(grants).values(pairs.map(([group, permission]) => ({ tenant, group_name: group, permission }))).execute()
    }
    for (const pairs of chunks(insert.members, ROW_CHUNK)) {
      await trx.insertInto(members).values(pairs.map(([group, user]) => ({ tenant, group_name: group, user_id: user }))).execute()
    }
    for (const pairs of chunks(insert.inclusions, ROW_CHUNK)) {
      await trx.insertInto(inclusions).values(pairs.map(([group, includes]) => ({ tenant, group_name: group, includes }))).execute()
    }
    return outcome
  }

  async #assertGroup (trx: Kysely<any>, tenant: string, group: string): Promise<void> {
    const found = await trx.selectFrom(this.#tables.groups).select('name')
      .where('tenant', '=', tenant).where('name', '=', group)
      .executeTakeFirst()
    if (found === undefined) throw new GroupNotFoundError(group, tenant)
  }

  /** Inserts the row unless present (no race: the tenant's lock is held); returns whether it inserted. */
  async #insertMissing (trx: Kysely<any>, table: string, row: Record<string, string>): Promise<boolean> {
    const found = await trx.selectFrom(table).select(sql.lit(1).as('found')).where((eb) => eb.and(row)).executeTakeFirst()
    if (found !== undefined) return false
    await trx.insertInto(table).values(row).execute()
    return true
  }

  /** Deletes the row if present; returns whether it deleted. */
  async #deleteExisting (trx: Kysely<any>, table: string, row: Record<string, string>): Promise<boolean> {
    const { numDeletedRows } = await trx.deleteFrom(table).where((eb) => eb.and(row)).executeTakeFirst()
    return numDeletedRows > 0n
  }

  /** A write transaction: kysely's on PostgreSQL and MySQL, `BEGIN IMMEDIATE` on SQLite. */
  async #writeTransaction<T> (fn: (trx: Kysely<any>) => Promise<T>): Promise<T> {
    return this.#dialect === 'sqlite'
      ? await this.#immediateTransaction(fn)
      : await this.#db.transaction().execute(fn)
  }

  /**
   * SQLite: takes the write lock up front, so that processes sharing a file queue on the busy
   * timeout instead of failing with SQLITE_BUSY when a read transaction upgrades to a write.
   */
  async #immediateTransaction<T> (fn: (conn: Kysely<any>) => Promise<T>): Promise<T> {
    return await this.#db.connection().execute(async (conn) => {
      await sql`begin immediate`.execute(conn)
      try {
        const result = await fn(conn)
        await sql`commit`.execute(conn)
        return result
      } catch (err) {
        // SQLite may have rolled back on its own already; the original error is the one to report.
        await sql`rollback`.execute(conn).catch(() => {})
        throw err
      }
    })
  }

  /** Runs a transaction again (full-jitter backoff) when a deadlock or a busy database rolled it back. */
  async #retrying<T> (transaction: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await transaction()
      } catch (err) {
        if (attempt >= MAX_ATTEMPTS || !isTransientError(err)) throw err
        await sleep(Math.random() * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** attempt))
      }
    }
  }
}

/** What a write's mutation did: the entry to log (null: nothing changed) and its digest delta, a batch's effects, a replacement's changes. */
interface Mutation {
  logged: Change | BatchChange | null
  delta: bigint
  effects?: boolean[]
  changes?: Change[]
}

/** Whether a tenant's row says it exists: written (revision above 0) and not flagged deleted (0006). */
function exists (revision: number, deleted: unknown): boolean {
  return revision > 0 && Number(deleted) === 0
}

/** `items` in consecutive slices of at most `size`. */
function * chunks<T> (items: readonly T[], size: number): Generator<T[]> {
  for (let start = 0; start < items.length; start += size) yield items.slice(start, start + size)
}

/** A changelog row with its audit columns as an {@link AuditEntry}. */
function toAuditEntry (row: AuditRow): AuditEntry {
  const { revision, ...change } = toLoggedChange(row)
  return {
    revision,
    change,
    origin: row.origin,
    actor: row.actor,
    committedAt: Number(row.committed_at ?? row.created_at)
  }
}

/** A changelog row as a {@link LoggedChange}, with only the fields of its operation. */
function toLoggedChange (row: ChangelogRow): LoggedChange {
  const revision = Number(row.revision)
  const group = row.group_name
  switch (row.op) {
    case 'batch': {
      // Written by this store from validated changes; checked again, so that a damaged row fails here, not in a cache.
      const changes = JSON.parse(row.changes ?? 'null') as Change[]
      try {
        assertBatch(changes)
      } catch (err) {
        throw new Error(`changelog entry ${revision} holds a malformed batch`, { cause: err })
      }
      return { revision, op: 'batch', changes }
    }
    case 'add-permission':
    case 'remove-permission':
      return { revision, op: row.op, group, permission: row.permission as string }
    case 'assign-user':
    case 'unassign-user':
      return { revision, op: row.op, group, user: row.user_id as string }
    case 'include-group':
    case 'exclude-group':
      return { revision, op: row.op, group, includes: row.includes as string }
    default:
      return { revision, op: row.op, group }
  }
}
