/**
 * The SQLite store on in-memory databases: the conformance suite, the changelog's checks, migrations
 * and upgrades, option and input validation. The file-backed store, several processes on one file and
 * the membership table are in sqlite.test.ts. Apart because it is quick: Stryker runs it first against
 * a mutant of the store and stops at its first failure (stryker/scope.mjs).
 */
import t from 'tap'
import { EMPTY_DIGEST } from '../../lib/digest.js'
import { createSqliteDb, isPolicyStore, KyselyPolicyStore } from '../../lib/store/index.js'
import { changelogAgePruning, storeConformance, upgradeAddsAuditColumns, upgradeAddsDeletedFlag, upgradeComputesDigests } from './conformance.js'

t.test('conformance in memory', async (t) => {
  storeConformance(t, 'sqlite :memory:', async () => ({
    store: new KyselyPolicyStore({ db: createSqliteDb(':memory:'), ownsDb: true }),
    cleanup: async () => {}
  }))
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

t.test('a migrator that fails before any migration names the setup', async (t) => {
  const db = createSqliteDb(':memory:')
  t.teardown(() => db.destroy())
  // The lock table is there but not the migrator's: its lock row cannot be read.
  await db.schema.createTable('policy_migrations_lock').addColumn('x', 'integer').execute()
  const err = await new KyselyPolicyStore({ db }).migrate().catch((err: Error) => err)
  t.match(err, { message: 'Policy store migration setup failed', cause: { message: /no such column/ } })
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
