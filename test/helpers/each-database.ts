/**
 * eachDatabase, apart from ./databases.ts because it registers tap tests: the benchmarks import
 * databases.ts, and importing tap would start a test run in their process (ended by tap's timeout).
 */
import type { Kysely } from 'kysely'
import { test, type Test } from 'tap'
import { createSqliteDb } from '../../lib/store/index.js'
import { dropPrefixed, mysqlDb, MYSQL_URL, postgresDb, POSTGRES_URL, randomPrefix, unreachable } from './databases.js'

/**
 * One test per database — SQLite (in memory), PostgreSQL, MariaDB (skipped as `unreachable` says) —
 * each given a Kysely, a table prefix and `cleanup` (drop the prefix's tables, destroy the pool), to
 * run once the instances it made are closed.
 */
export function eachDatabase (run: (t: Test, db: Kysely<any>, prefix: string, cleanup: () => Promise<void>) => Promise<void>): void {
  test('SQLite', async (t) => {
    const db = createSqliteDb(':memory:')
    await run(t, db, 'policy_', () => db.destroy())
  })
  for (const [name, url, open] of [['PostgreSQL', POSTGRES_URL, postgresDb], ['MySQL', MYSQL_URL, mysqlDb]] as const) {
    test(name === 'MySQL' ? 'MariaDB' : name, async (t) => {
      const db = await open()
      if (db === undefined) return unreachable(t, name, url)
      const prefix = randomPrefix()
      await run(t, db, prefix, async () => { await dropPrefixed(db, prefix); await db.destroy() })
    })
  }
}
