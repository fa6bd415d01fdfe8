/**
 * The default database: a SQLite file through better-sqlite3, set up for several processes
 * sharing it (WAL, busy timeout). better-sqlite3 is an optional peer dependency, loaded on the
 * first call: a host that passes its own `db` never needs it.
 */
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type Database from 'better-sqlite3'
import { Kysely, SqliteDialect, type SqliteDatabase } from 'kysely'
import { requireOptional } from '../optional-dependency.js'

/** Prepared statements kept per connection; the store's queries are a few dozen distinct texts. */
const STATEMENT_CACHE_SIZE = 256

/**
 * The connection as Kysely sees it, with prepared statements reused by SQL text: Kysely prepares
 * every query anew, and preparing costs about as much as running a small statement. Kysely's SQLite
 * driver runs one query at a time on its one connection, so a statement is never used twice at once.
 */
function withStatementCache (database: Database.Database): SqliteDatabase {
  const statements = new Map<string, Database.Statement>()
  return {
    close: () => database.close(),
    prepare: (sql) => {
      let statement = statements.get(sql)
      if (statement === undefined) {
        if (statements.size >= STATEMENT_CACHE_SIZE) statements.clear()
        statement = database.prepare(sql)
        statements.set(sql, statement)
      }
      return statement
    }
  }
}

/**
 * Opens (creating it and its directory if missing) a SQLite database as a Kysely, with
 * `journal_mode = WAL` (not for `:memory:`), `busy_timeout = 5000` and `synchronous = NORMAL`,
 * and prepared statements reused by SQL text.
 * Open one per process and file: better-sqlite3 waits for a lock synchronously, so two
 * connections to one file in one process would block each other for the whole busy timeout.
 * The caller owns the result and destroys it.
 */
export function createSqliteDb (filename: string): Kysely<any> {
  const BetterSqlite3 = requireOptional<typeof Database>('better-sqlite3', 'the built-in SQLite store (no `db` option, or createSqliteDb())')
  const inMemory = filename === ':memory:' || filename === ''
  if (!inMemory) mkdirSync(dirname(filename), { recursive: true })
  const database = new BetterSqlite3(filename)
  database.pragma('busy_timeout = 5000')
  if (!inMemory) database.pragma('journal_mode = WAL')
  database.pragma('synchronous = NORMAL')
  return new Kysely<any>({ dialect: new SqliteDialect({ database: withStatementCache(database) }) })
}
