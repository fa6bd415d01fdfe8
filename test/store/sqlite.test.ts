/**
 * The SQLite store on files: the conformance suite again, pruning, processes sharing one file, the
 * write lock, the host's own tables, and the membership table. The in-memory checks are in
 * sqlite-memory.test.ts.
 */
import { spawn } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { Kysely, Migrator, SqliteDialect } from 'kysely'
import t, { type Test } from 'tap'
import { createSqliteDb, KyselyPolicyStore } from '../../lib/store/index.js'
import { changelogPruning, storeConformance, type StoreUnderTest } from './conformance.js'
import { membershipConformance } from './membership-conformance.js'

/** A directory removed when the test ends. */
function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'policy-store-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A store owning a SQLite file of its own; makeStore must be called inside the test that uses it. */
function sqliteStores (t: Test, options: { changelogRetention?: number } = {}) {
  return async (): Promise<StoreUnderTest> => {
    const store = new KyselyPolicyStore({ db: createSqliteDb(join(tempDir(t), 'nested', 'policy.db')), ownsDb: true, ...options })
    return { store, cleanup: async () => {} }
  }
}

t.test('conformance', async (t) => {
  storeConformance(t, 'sqlite file', sqliteStores(t))
})

t.test('changelog pruning', (t) => changelogPruning(t, sqliteStores(t, { changelogRetention: 10 })))

t.test('processes sharing one fresh file migrate and write concurrently, gap-free', async (t) => {
  const file = join(tempDir(t), 'shared.db')
  const fixture = join(import.meta.dirname, 'fixtures', 'sqlite-writer.ts')
  const writers = ['w0', 'w1', 'w2'].map((writer) =>
    spawn(process.execPath, ['--import', 'tsx', fixture, file, 'shared', writer, '100'], { stdio: ['pipe', 'pipe', 'inherit'] }))
  const exited = writers.map((writer) => once(writer, 'exit'))
  await Promise.all(writers.map((writer, i) => Promise.race([
    once(writer.stdout, 'data'),
    exited[i].then(([code]) => { throw new Error(`writer ${i} exited with ${code} before it was ready`) })
  ])))
  for (const writer of writers) writer.stdin.end('go\n')
  t.strictSame((await Promise.all(exited)).map(([code]) => code), [0, 0, 0])

  const db = createSqliteDb(file)
  const store = new KyselyPolicyStore({ db, ownsDb: true })
  t.teardown(() => store.close())
  t.strictSame((await store.changesSince('shared', 0))?.map((change) => change.revision), Array.from({ length: 300 }, (_, i) => i + 1))
  t.equal((await store.snapshot('shared')).groups.length, 300)
  const origins = (await db.selectFrom('policy_changelog').select('origin').orderBy('revision').execute()).map((row) => row.origin)
  const switches = origins.filter((origin, i) => i > 0 && origin !== origins[i - 1]).length
  t.ok(switches > writers.length, `the processes' writes interleaved (${switches} switches)`)
})

t.test('a write retries while another connection holds the write lock, even without a busy timeout', async (t) => {
  const file = join(tempDir(t), 'locked.db')
  // Every query the database refuses as busy is an event: the write's attempts, seen from outside.
  const refusals = new EventEmitter()
  const db = new Kysely<any>({
    dialect: new SqliteDialect({ database: new Database(file, { timeout: 0 }) }),
    log: (event) => { if (event.level === 'error' && (event.error as { code?: string }).code === 'SQLITE_BUSY') refusals.emit('busy') }
  })
  const store = new KyselyPolicyStore({ db, ownsDb: true })
  t.teardown(() => store.close())
  await store.migrate()
  const blocker = new Database(file)
  t.teardown(() => blocker.close())

  blocker.exec('begin immediate')
  const busy = once(refusals, 'busy')
  const write = store.write('t1', { op: 'create-group', group: 'g' }, 'test')
  await busy
  const next = await Promise.race([once(refusals, 'busy').then(() => 'refused again'), write.then(() => 'written', () => 'failed')])
  t.equal(next, 'refused again', 'refused, the write neither failed nor got through: it tried again')
  t.equal((await store.revisions(['t1'])).get('t1')?.revision, 0, 'the write waits for the lock')
  blocker.exec('commit')
  t.match(await write, { revision: 1, changed: true })
})

t.test('the store never touches the host\'s tables, its migration tables included', async (t) => {
  const db = createSqliteDb(join(tempDir(t), 'host.db'))
  t.teardown(() => db.destroy())
  const host = new Migrator({
    db,
    provider: {
      getMigrations: async () => ({
        '001-host': {
          up: async (db) => { await db.schema.createTable('groups').addColumn('id', 'integer', (col) => col.primaryKey()).execute() }
        }
      })
    }
  })
  t.equal((await host.migrateToLatest()).error, undefined)
  await db.insertInto('groups').values({ id: 7 }).execute()

  const store = new KyselyPolicyStore({ db })
  await store.migrate()
  await store.write('t1', { op: 'create-group', group: 'g' }, 'test')
  t.strictSame((await host.migrateToLatest()), { results: [] }, 'the host\'s migrator sees only its own migrations')
  t.strictSame(await db.selectFrom('groups').selectAll().execute(), [{ id: 7 }])
  t.strictSame(await db.selectFrom('kysely_migration').select('name').execute(), [{ name: '001-host' }])
  const tables = (await db.introspection.getTables()).map((table) => table.name).sort()
  t.strictSame(tables, [
    'groups',
    'policy_changelog', 'policy_grants', 'policy_groups', 'policy_inclusions', 'policy_instances', 'policy_members', 'policy_membership',
    'policy_meta', 'policy_migrations', 'policy_migrations_lock', 'policy_tenants'
  ])
  await store.close()
  t.strictSame(await db.selectFrom('groups').selectAll().execute(), [{ id: 7 }], 'close() leaves a host-owned db open')
})

t.test('membership conformance', async (t) => {
  membershipConformance(t, 'sqlite file', sqliteStores(t))
})
