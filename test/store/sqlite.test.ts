import { spawn } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { Kysely, Migrator, SqliteDialect } from 'kysely'
import t, { type Test } from 'tap'
import { EMPTY_DIGEST } from '../../lib/digest.js'
import { createSqliteDb, isPolicyStore, KyselyPolicyStore } from '../../lib/store/index.js'
import { changelogAgePruning, changelogPruning, storeConformance, upgradeAddsAuditColumns, upgradeAddsDeletedFlag, upgradeComputesDigests, type StoreUnderTest } from './conformance.js'
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

// In memory first: the quicker of the two catches most mutants (Stryker stops a file at its first failure).
t.test('conformance in memory', async (t) => {
  storeConformance(t, 'sqlite :memory:', async () => ({
    store: new KyselyPolicyStore({ db: createSqliteDb(':memory:'), ownsDb: true }),
    cleanup: async () => {}
  }))
})

t.test('conformance', async (t) => {
  storeConformance(t, 'sqlite file', sqliteStores(t))
})

t.test('a damaged batch entry of the changelog fails the read (the cache reloads), never reaches a cache', async (t) => {
  const db = createSqliteDb(':memory:')
  const store = new KyselyPolicyStore({ db, ownsDb: true })
  t.teardown(() => store.close())
  await store.migrate()
  await store.write('t1', [{ op: 'create-group', group: 'g' }, { op: 'assign-user', group: 'g', user: 'alice' }], 'test')
  t.match(await store.changesSince('t1', 0), [{ revision: 1, op: 'batch' }])
  for (const changes of ['[{"op":"drop-table","group":"g"}]', 'null', '[{"op":"create-group","group":"g","user":"x"}]']) {
    await db.updateTable('policy_changelog').set({ changes }).where('tenant', '=', 't1').execute()
    // The cause says what is wrong with it (assertBatch's coded error).
    await t.rejects(store.changesSince('t1', 0), { message: 'changelog entry 1 holds a malformed batch', cause: { code: 'FST_POLICY_CACHE_INVALID_INPUT' } }, changes)
  }
})

t.test('changelog pruning', (t) => changelogPruning(t, sqliteStores(t, { changelogRetention: 10 })))

t.test('changelog pruning by count and age', async (t) => {
  const db = createSqliteDb(':memory:')
  t.teardown(() => db.destroy())
  await changelogAgePruning(t, db, 'policy_')
})

t.test('migrating a database of the previous version computes the digests of its tenants', async (t) => {
  const db = createSqliteDb(':memory:')
  t.teardown(() => db.destroy())
  await upgradeComputesDigests(t, db, 'policy_')
})

t.test('migrating a database of the previous version adds the audit columns', async (t) => {
  const db = createSqliteDb(':memory:')
  t.teardown(() => db.destroy())
  await upgradeAddsAuditColumns(t, db, 'policy_')
})

t.test('migrating a database of the previous version adds the deleted flag', async (t) => {
  const db = createSqliteDb(':memory:')
  t.teardown(() => db.destroy())
  await upgradeAddsDeletedFlag(t, db, 'policy_')
})

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

t.test('a failed migration throws with its cause', async (t) => {
  const db = createSqliteDb(':memory:')
  t.teardown(() => db.destroy())
  await db.schema.createTable('policy_groups').addColumn('id', 'integer').execute()
  const err = await new KyselyPolicyStore({ db }).migrate().catch((err: Error) => err)
  t.match(err, { message: /migration "0001-initial" failed/, cause: { message: /already exists/ } })
})

t.test('a failed migration after others succeeded is named, not the first one', async (t) => {
  const db = createSqliteDb(':memory:')
  t.teardown(() => db.destroy())
  // 0001 creates the policy tables; 0002 then finds its meta table already there.
  await db.schema.createTable('policy_meta').addColumn('id', 'integer').execute()
  const err = await new KyselyPolicyStore({ db }).migrate().catch((err: Error) => err)
  t.match(err, { message: 'Policy store migration "0002-digest-and-database-id" failed', cause: { message: /already exists/ } })
})

t.test('options are validated', async (t) => {
  const db = createSqliteDb(':memory:')
  t.teardown(() => db.destroy())
  const code = 'FST_POLICY_CACHE_INVALID_OPTION'
  t.throws(() => new KyselyPolicyStore({ db, tablePrefix: '' }), { code })
  t.throws(() => new KyselyPolicyStore({ db, tablePrefix: 'bad-prefix' }), { code })
  t.throws(() => new KyselyPolicyStore({ db, changelogRetention: 0 }), { code })
  t.throws(() => new KyselyPolicyStore({ db: {} as never }), { code })
  t.throws(() => new KyselyPolicyStore({ db, tablePrefix: '1x' }), { code, message: 'Invalid option "tablePrefix": must match ^[A-Za-z_][A-Za-z0-9_]{0,40}$' })
  t.throws(() => new KyselyPolicyStore({ db, tablePrefix: 7 as unknown as string }), { code, message: /^Invalid option "tablePrefix"/ })
  for (const changelogRetention of [0, -1, 1.5, Number.MAX_SAFE_INTEGER + 1]) {
    t.throws(() => new KyselyPolicyStore({ db, changelogRetention }), { code, message: 'Invalid option "changelogRetention": must be a positive integer' }, String(changelogRetention))
  }
  t.doesNotThrow(() => new KyselyPolicyStore({ db, changelogRetention: 1, tablePrefix: '_' }), 'the smallest of each')
  t.doesNotThrow(() => new KyselyPolicyStore({ db, changelogRetention: { changes: 1, days: 36500 } }), 'a count and an age')
  t.throws(() => new KyselyPolicyStore({ db, changelogRetention: { changes: 1, days: -1 } }), { code, message: /^Invalid option "changelogRetention\.days"/ })
  t.throws(() => new KyselyPolicyStore({ db, changelogRetention: { changes: 0 } }), { code, message: /^Invalid option "changelogRetention\.changes"/ })
})

t.test('a write of a malformed tenant or change is a coded 400 and writes nothing', async (t) => {
  const store = new KyselyPolicyStore({ db: createSqliteDb(':memory:'), ownsDb: true })
  t.teardown(() => store.close())
  await store.migrate()
  const invalid = { statusCode: 400, code: 'FST_POLICY_CACHE_INVALID_INPUT' }
  await t.rejects(store.write('bad tenant', { op: 'create-group', group: 'g' }, 'test'), { ...invalid, message: /^Invalid tenant: / })
  await t.rejects(store.write('t1', { op: 'create-group', group: 'bad group' }, 'test'), { ...invalid, message: /^Invalid group: / })
  await t.rejects(store.write('t1', { op: 'add-permission', group: 'g', permission: 'a::b' }, 'test'), { ...invalid, message: /^Invalid permission: / })
  for (const actor of ['', 'a'.repeat(256), 'line\nbreak', 'nul\u0000', 'c1\u0085', 'lone \uD800 surrogate', 7, null]) {
    await t.rejects(store.write('t1', { op: 'create-group', group: 'g' }, 'test', { actor: actor as string }), { ...invalid, message: /^Invalid actor: / }, JSON.stringify(actor))
  }
  const never = { revision: 0, digest: EMPTY_DIGEST }
  t.same(await store.revisions(['bad tenant', 't1']), new Map([['bad tenant', never], ['t1', never]]))
})

t.test('ping, and isPolicyStore tells stores from Kysely instances', async (t) => {
  const db = createSqliteDb(':memory:')
  const store = new KyselyPolicyStore({ db, ownsDb: true })
  await store.ping()
  t.ok(isPolicyStore(store))
  t.notOk(isPolicyStore(db))
  t.notOk(isPolicyStore(null))
  await store.close()
  await t.rejects(store.ping(), 'close() destroys an owned db')
})

t.test('membership conformance', async (t) => {
  membershipConformance(t, 'sqlite file', sqliteStores(t))
})
