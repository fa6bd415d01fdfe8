/**
 * The few places where SQLite, PostgreSQL and MySQL differ, as far as the store is concerned.
 */
import { sql, type Kysely, type RawBuilder } from 'kysely'
import { InvalidOptionError } from '../errors.js'

/** The SQL dialects the built-in store supports. */
export type Dialect = 'sqlite' | 'postgres' | 'mysql'

const adapterDialects = new Map<string, Dialect>([
  ['SqliteAdapter', 'sqlite'],
  ['PostgresAdapter', 'postgres'],
  ['MysqlAdapter', 'mysql']
])

/**
 * The dialect of a Kysely instance, read from its adapter's class or the kysely adapter class it
 * extends. Compared by name, not `instanceof`, so that a host's copy of kysely works too.
 */
export function dialectOf (db: Kysely<any>): Dialect {
  if (typeof db?.getExecutor !== 'function') throw new InvalidOptionError('db', 'must be a Kysely instance')
  for (let proto = Object.getPrototypeOf(db.getExecutor().adapter); proto !== null; proto = Object.getPrototypeOf(proto)) {
    const dialect = adapterDialects.get(proto.constructor.name)
    if (dialect !== undefined) return dialect
  }
  throw new InvalidOptionError('db', 'the Kysely dialect must be SQLite, PostgreSQL or MySQL')
}

/**
 * Whether a failed transaction was rolled back by a lock conflict and may simply be run again:
 * SQLite busy, PostgreSQL deadlock or serialization failure, MySQL deadlock. Looks through `cause`.
 */
export function isTransientError (err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const { code, errno, cause } = err as { code?: unknown, errno?: unknown, cause?: unknown }
  return (typeof code === 'string' && code.startsWith('SQLITE_BUSY')) ||
    code === '40P01' || code === '40001' ||
    code === 'ER_LOCK_DEADLOCK' || errno === 1213 ||
    isTransientError(cause)
}

/**
 * Whether a migration failed because a table of *another* application vanished under it: Kysely's
 * migrator looks for its tables by introspecting every table of the database, and on PostgreSQL that
 * query fails with 42P01 (undefined_table) when some other table is dropped while it runs. Run again,
 * it passes. Looks through `cause`.
 */
export function isIntrospectionRace (err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const { code, cause } = err as { code?: unknown, cause?: unknown }
  return code === '42P01' || isIntrospectionRace(cause)
}

/** The database's clock in epoch milliseconds, per dialect. */
export function clock (dialect: Dialect): RawBuilder<number | string> {
  switch (dialect) {
    case 'sqlite':
      return sql`cast((julianday('now') - 2440587.5) * 86400000.0 as integer)`
    case 'postgres':
      return sql`cast(floor(extract(epoch from clock_timestamp()) * 1000) as bigint)`
    case 'mysql':
      return sql`cast(floor(unix_timestamp(now(3)) * 1000) as signed)`
  }
}
