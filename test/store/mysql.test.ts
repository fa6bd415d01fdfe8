import t from 'tap'
import { seeingOnly } from '../../lib/store/dialect.js'
import { KyselyPolicyStore, type KyselyPolicyStoreOptions } from '../../lib/store/index.js'
import { dropPrefixed, MYSQL_URL, mysqlDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { changelogAgePruning, changelogPruning, sharedDatabase, storeConformance, upgradeAddsAuditColumns, upgradeAddsDeletedFlag, upgradeComputesDigests, type StoreUnderTest } from './conformance.js'
import { membershipConformance } from './membership-conformance.js'

const db = await mysqlDb()
if (db === undefined) {
  unreachable(t, 'MySQL', MYSQL_URL)
} else {
  t.teardown(() => db.destroy())

  /** A store on fresh tables of the shared test database, dropped by `cleanup`. */
  const makeStore = async (options: Partial<KyselyPolicyStoreOptions> = {}): Promise<StoreUnderTest> => {
    const tablePrefix = randomPrefix()
    return { store: new KyselyPolicyStore({ db, tablePrefix, ...options }), cleanup: () => dropPrefixed(db, tablePrefix) }
  }

  storeConformance(t, 'mysql', makeStore)

  membershipConformance(t, 'mysql', makeStore)

  t.test('changelog pruning', (t) => changelogPruning(t, () => makeStore({ changelogRetention: 10 })))

  t.test('changelog pruning by count and age', async (t) => {
    const tablePrefix = randomPrefix()
    t.teardown(() => dropPrefixed(db, tablePrefix))
    await changelogAgePruning(t, db, tablePrefix)
  })

  t.test('migrating a database of the previous version computes the digests of its tenants', async (t) => {
    const tablePrefix = randomPrefix()
    t.teardown(() => dropPrefixed(db, tablePrefix))
    await upgradeComputesDigests(t, db, tablePrefix)
  })

  t.test('migrating a database of the previous version adds the audit columns', async (t) => {
    const tablePrefix = randomPrefix()
    t.teardown(() => dropPrefixed(db, tablePrefix))
    await upgradeAddsAuditColumns(t, db, tablePrefix)
  })

  t.test('migrating a database of the previous version adds the deleted flag', async (t) => {
    const tablePrefix = randomPrefix()
    t.teardown(() => dropPrefixed(db, tablePrefix))
    await upgradeAddsDeletedFlag(t, db, tablePrefix)
  })

  t.test('the migrator\'s introspector sees only the store\'s migration tables, in the current database', async (t) => {
    const tablePrefix = randomPrefix()
    t.teardown(() => dropPrefixed(db, tablePrefix))
    await new KyselyPolicyStore({ db, tablePrefix }).migrate()
    const names = [`${tablePrefix}migrations`, `${tablePrefix}migrations_lock`, `${tablePrefix}absent`]
    const seeing = seeingOnly(db, names)
    const own = (await seeing.introspection.getTables()).map(({ name, schema }) => ({ name, schema }))
    t.same(own.sort((a, b) => a.name.localeCompare(b.name)), names.slice(0, 2).map((name) => ({ name, schema: new URL(MYSQL_URL).pathname.slice(1) })),
      'both migration tables, in the database of the connection; not the absent one')
    t.same((await seeing.introspection.getMetadata()).tables.map(({ name }) => name).sort(), names.slice(0, 2))
  })

  t.test('stores on separate pools migrate a fresh database and write concurrently', async (t) => {
    const tablePrefix = randomPrefix()
    const pools = await Promise.all([mysqlDb(), mysqlDb(), mysqlDb()])
    const stores = pools.map((pool) => new KyselyPolicyStore({ db: pool!, tablePrefix, ownsDb: true }))
    t.teardown(async () => {
      await Promise.all(stores.map((store) => store.close()))
      await dropPrefixed(db, tablePrefix)
    })
    await sharedDatabase(t, stores)
  })
}
