/**
 * The few places where SQLite, PostgreSQL and MySQL differ, as far as the store is concerned.
 */
import { sql, type DatabaseIntrospector, type Kysely, type RawBuilder, type TableMetadata } from 'kysely'
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
 * `db` (PostgreSQL or MySQL) with an introspector that sees only the tables named `names`, for
 * Kysely's migrator. The migrator checks that its own tables exist by listing every table of the
 * database with its columns. On PostgreSQL that listing resolves each table by name
 * (`pg_get_serial_sequence`) and fails with 42P01 when another application drops a table while it
 * runs, and under steady DDL churn it fails every time; looking the names up in `pg_class` resolves
 * nothing by name, so it cannot race. On MySQL it reads the columns of every table of the database:
 * in one holding 550 tables, the store's MariaDB tests took 30 s instead of 9. Same answer as
 * Kysely's own: a table or view of that name in any schema we may use (PostgreSQL), in the current
 * database (MySQL).
 */
export function seeingOnly (db: Kysely<any>, names: readonly string[]): Kysely<any> {
  const getTables = async (): Promise<TableMetadata[]> => {
    const { rows } = dialectOf(db) === 'mysql'
      ? await sql<{ name: string, schema: string }>`
        select table_name as name, table_schema as \`schema\` from information_schema.tables
        where table_schema = database() and table_name in (${sql.join([...names])})`.execute(db)
      : await sql<{ name: string, schema: string }>`
        select c.relname as name, n.nspname as schema
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where c.relname in (${sql.join([...names])}) and c.relkind in ('r', 'v', 'p')
          and n.nspname !~ '^pg_' and n.nspname <> 'information_schema' and has_schema_privilege(n.oid, 'USAGE')`.execute(db)
    return rows.map(({ name, schema }) => ({ name, schema, isView: false, columns: [] }))
  }
  const introspection: DatabaseIntrospector = {
    getSchemas: async () => await db.introspection.getSchemas(),
    getTables,
    getMetadata: async () => ({ tables: await getTables() })
  }
  // Kysely keeps its state in private fields, so every other member is read from, and bound to, `db` itself.
  return new Proxy(db, {
    get (target, key) {
      if (key === 'introspection') return introspection
      const value = Reflect.get(target, key, target)
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
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
