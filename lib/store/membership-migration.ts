/**
 * Migration 0003: the membership tables (docs/membership.md). Self-contained: its own tables, no
 * change to the policy tables.
 *
 * - `{prefix}instances`: one row per instance, keyed by serverId; times are epoch ms of the database's clock.
 * - `{prefix}membership`: one row (`id` 1) whose `version` is bumped on every join, leave and expiry.
 */
import { sql, type Migration } from 'kysely'
import type { Dialect } from './dialect.js'
import type { TableNames } from './migrations.js'

export function membershipMigration (tables: Pick<TableNames, 'instances' | 'membership'>, dialect: Dialect): Migration {
  const mysql = dialect === 'mysql'
  const ascii = (length: number) => mysql
    ? sql`varchar(${sql.lit(length)}) character set ascii collate ascii_bin`
    : sql`varchar(${sql.lit(length)})`
  const text = (length: number) => mysql
    ? sql`varchar(${sql.lit(length)}) character set utf8mb4 collate utf8mb4_bin`
    : sql`varchar(${sql.lit(length)})`
  return {
    async up (db) {
      const create = (name: string) => mysql ? db.schema.createTable(name).modifyEnd(sql`engine = InnoDB`) : db.schema.createTable(name)
      await create(tables.instances)
        .addColumn('server_id', ascii(128), (col) => col.notNull().primaryKey())
        .addColumn('url', text(2048), (col) => col.notNull())
        .addColumn('incarnation', ascii(64), (col) => col.notNull())
        .addColumn('status', ascii(16), (col) => col.notNull())
        .addColumn('started_at', 'bigint', (col) => col.notNull())
        .addColumn('heartbeat_at', 'bigint', (col) => col.notNull())
        .addColumn('expires_at', 'bigint', (col) => col.notNull())
        .execute()
      await create(tables.membership)
        .addColumn('id', 'integer', (col) => col.notNull().primaryKey())
        .addColumn('version', 'bigint', (col) => col.notNull())
        .execute()
      await db.insertInto(tables.membership).values({ id: 1, version: 0 }).execute()
    }
  }
}
