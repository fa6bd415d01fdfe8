/**
 * The built-in store's membership (docs/membership.md): one row per instance in `{prefix}instances`,
 * one version row in `{prefix}membership`. Every time comes from the database's clock, read inside
 * the statement's transaction; the caller's clock is never used.
 */
import { sql, type Kysely, type RawBuilder } from 'kysely'
import { clock, type Dialect } from './dialect.js'
import type { TableNames } from './migrations.js'
import type { HeartbeatOutcome, MemberIdentity, MemberRecord, MembershipStore, MembershipVersion } from './types.js'

/** A row as the drivers return it (pg returns bigints as strings). */
interface InstanceRow {
  server_id: string
  url: string
  incarnation: string
  status: string
  started_at: number | string
  heartbeat_at: number | string
  expires_at: number | string
}

function toRecord (row: InstanceRow): MemberRecord {
  const status = row.status === 'active' || row.status === 'leaving' ? row.status : 'expired'
  return {
    serverId: row.server_id,
    url: row.url,
    incarnation: row.incarnation,
    status,
    startedAt: Number(row.started_at),
    heartbeatAt: Number(row.heartbeat_at),
    expiresAt: Number(row.expires_at)
  }
}

export interface KyselyMembershipStoreOptions {
  db: Kysely<any>
  dialect: Dialect
  tables: TableNames
  /** Runs `fn` in a write transaction, again when a deadlock or a busy database rolled it back. */
  transaction: <T>(fn: (trx: Kysely<any>) => Promise<T>) => Promise<T>
}

/** {@link MembershipStore} on the built-in store's Kysely. */
export class KyselyMembershipStore implements MembershipStore {
  readonly #db: Kysely<any>
  readonly #dialect: Dialect
  readonly #clock: RawBuilder<number | string>
  readonly #tables: TableNames
  readonly #transaction: KyselyMembershipStoreOptions['transaction']

  constructor (options: KyselyMembershipStoreOptions) {
    this.#db = options.db
    this.#dialect = options.dialect
    this.#clock = clock(options.dialect)
    this.#tables = options.tables
    this.#transaction = options.transaction
  }

  async join (self: MemberIdentity, ttlMs: number): Promise<{ replaced: MemberRecord | undefined }> {
    const { instances } = this.#tables
    return await this.#transaction(async (trx) => {
      const now = await this.#now(trx)
      const found = await trx.selectFrom(instances).selectAll().where('server_id', '=', self.serverId).executeTakeFirst() as InstanceRow | undefined
      const previous = found === undefined ? undefined : toRecord(found)
      const row = { url: self.url, incarnation: self.incarnation, status: 'active', started_at: now, heartbeat_at: now, expires_at: now + ttlMs }
      if (previous === undefined) {
        await trx.insertInto(instances).values({ server_id: self.serverId, ...row }).execute()
      } else {
        await trx.updateTable(instances).set(row).where('server_id', '=', self.serverId).execute()
      }
      await this.#bump(trx)
      const live = previous !== undefined && previous.incarnation !== self.incarnation && previous.status === 'active' && previous.expiresAt > now
      return { replaced: live ? previous : undefined }
    })
  }

  async heartbeat (self: MemberIdentity, ttlMs: number, purge: { afterMs: number, limit: number }): Promise<HeartbeatOutcome> {
    const { instances } = this.#tables
    return await this.#transaction(async (trx) => {
      const now = await this.#now(trx)
      let outcome: HeartbeatOutcome = 'renewed'
      const renewed = await trx.updateTable(instances)
        .set({ heartbeat_at: now, expires_at: now + ttlMs, url: self.url })
        .where('server_id', '=', self.serverId)
        .where('incarnation', '=', self.incarnation)
        .where('status', '=', 'active')
        // Past its expiry, the row may already be out of other instances' sets: that is a rejoin.
        .where('expires_at', '>', now)
        .executeTakeFirst()
      if (renewed.numUpdatedRows === 0n) {
        const found = await trx.selectFrom(instances).select(['incarnation', 'status']).where('server_id', '=', self.serverId).executeTakeFirst()
        if (found !== undefined && found.incarnation !== self.incarnation) {
          outcome = 'replaced'
        } else {
          // Missing (purged), expired or leaving under our own incarnation: back in, as a join.
          const row = { url: self.url, incarnation: self.incarnation, status: 'active', started_at: now, heartbeat_at: now, expires_at: now + ttlMs }
          if (found === undefined) await trx.insertInto(instances).values({ server_id: self.serverId, ...row }).execute()
          else await trx.updateTable(instances).set(row).where('server_id', '=', self.serverId).execute()
          await this.#bump(trx)
          outcome = 'rejoined'
        }
      }
      await this.#expire(trx, now)
      const stale = await trx.selectFrom(instances).select('server_id')
        .where('status', '=', 'expired')
        .where('expires_at', '<', now - purge.afterMs)
        .limit(purge.limit)
        .execute()
      if (stale.length > 0) {
        // Expired rows only: their removal changes no live set, so the version stays.
        await trx.deleteFrom(instances)
          .where('server_id', 'in', stale.map((row) => row.server_id))
          .where('status', '=', 'expired')
          .execute()
      }
      return outcome
    })
  }

  async expire (): Promise<number> {
    return await this.#transaction(async (trx) => await this.#expire(trx, await this.#now(trx)))
  }

  async version (): Promise<MembershipVersion> {
    const { instances, membership } = this.#tables
    const row = await this.#db.selectFrom(membership)
      .select((eb) => [
        'version',
        this.#clock.as('now'),
        eb.selectFrom(instances).select((inner) => inner.fn.min('expires_at').as('e')).where('status', '=', 'active').as('next_expiry')
      ])
      .where('id', '=', 1)
      .executeTakeFirstOrThrow()
    return { version: Number(row.version), now: Number(row.now), nextExpiry: row.next_expiry === null ? null : Number(row.next_expiry) }
  }

  async members (): Promise<{ version: number, now: number, members: MemberRecord[] }> {
    const { instances, membership } = this.#tables
    // One transaction, so that the rows match the version read with them.
    const read = this.#db.transaction()
    return await (this.#dialect === 'sqlite' ? read : read.setIsolationLevel('repeatable read')).execute(async (trx) => {
      const head = await trx.selectFrom(membership).select(['version', this.#clock.as('now')]).where('id', '=', 1).executeTakeFirstOrThrow()
      const rows = await trx.selectFrom(instances).selectAll().orderBy('server_id').execute() as InstanceRow[]
      return { version: Number(head.version), now: Number(head.now), members: rows.map(toRecord) }
    })
  }

  async leave (self: MemberIdentity): Promise<void> {
    await this.#transaction(async (trx) => {
      const { numUpdatedRows } = await trx.updateTable(this.#tables.instances).set({ status: 'leaving' })
        .where('server_id', '=', self.serverId).where('incarnation', '=', self.incarnation).where('status', '=', 'active')
        .executeTakeFirst()
      if (numUpdatedRows > 0n) await this.#bump(trx)
    })
  }

  async remove (self: MemberIdentity): Promise<void> {
    await this.#transaction(async (trx) => {
      const { numDeletedRows } = await trx.deleteFrom(this.#tables.instances)
        .where('server_id', '=', self.serverId).where('incarnation', '=', self.incarnation)
        .executeTakeFirst()
      if (numDeletedRows > 0n) await this.#bump(trx)
    })
  }

  async #now (trx: Kysely<any>): Promise<number> {
    const row = await trx.selectNoFrom(this.#clock.as('now')).executeTakeFirstOrThrow()
    return Number(row.now)
  }

  async #bump (trx: Kysely<any>): Promise<void> {
    await trx.updateTable(this.#tables.membership).set({ version: sql`version + 1` }).where('id', '=', 1).execute()
  }

  /** Active and leaving rows past their expiry become `expired`; the version moves once when any did. */
  async #expire (trx: Kysely<any>, now: number): Promise<number> {
    const { numUpdatedRows } = await trx.updateTable(this.#tables.instances).set({ status: 'expired' })
      .where('status', 'in', ['active', 'leaving'])
      .where('expires_at', '<=', now)
      .executeTakeFirst()
    if (numUpdatedRows > 0n) await this.#bump(trx)
    return Number(numUpdatedRows)
  }
}
