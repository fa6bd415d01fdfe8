import { sql } from 'kysely'
import t from 'tap'
import { seeingOnly } from '../../lib/store/dialect.js'
import { KyselyPolicyStore, type KyselyPolicyStoreOptions } from '../../lib/store/index.js'
import { dropPrefixed, POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { changelogAgePruning, changelogPruning, sharedDatabase, storeConformance, upgradeAddsAuditColumns, upgradeAddsDeletedFlag, upgradeComputesDigests, type StoreUnderTest } from './conformance.js'
import { membershipConformance } from './membership-conformance.js'

const db = await postgresDb()
if (db === undefined) {
  unreachable(t, 'PostgreSQL', POSTGRES_URL)
} else {
  t.teardown(() => db.destroy())

  /** A store on fresh tables of the shared test database, dropped by `cleanup`. */
  const makeStore = async (options: Partial<KyselyPolicyStoreOptions> = {}): Promise<StoreUnderTest> => {
    const tablePrefix = randomPrefix()
    return { store: new KyselyPolicyStore({ db, tablePrefix, ...options }), cleanup: () => dropPrefixed(db, tablePrefix) }
  }

  storeConformance(t, 'postgres', makeStore)

  membershipConformance(t, 'postgres', makeStore)

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

  t.test('migrating while another application creates and drops its tables in the same database', async (t) => {
    // Kysely's own introspection lists every table, and on PostgreSQL that query fails (42P01) when any
    // other table is dropped while it runs: under this churn, nearly every time. The store's does not.
    const other = await postgresDb()
    const churning = { on: true }
    const churn = (async () => {
      for (let i = 0; churning.on; i++) {
        await sql`create table ${sql.table(`other_app_${i % 4}_${process.pid}`)} (id int)`.execute(other!)
        await sql`drop table ${sql.table(`other_app_${i % 4}_${process.pid}`)}`.execute(other!)
      }
    })()
    const prefixes: string[] = []
    t.teardown(async () => {
      churning.on = false
      await churn
      await other!.destroy()
      for (const prefix of prefixes) await dropPrefixed(db, prefix)
    })
    for (let round = 0; round < 12; round++) {
      const tablePrefix = randomPrefix()
      prefixes.push(tablePrefix)
      await new KyselyPolicyStore({ db, tablePrefix }).migrate()
    }
    t.pass('twelve fresh migrations, none failed')
  })

  t.test('the migrator\'s introspector sees only the store\'s migration tables, as Kysely\'s own would', async (t) => {
    const tablePrefix = randomPrefix()
    t.teardown(() => dropPrefixed(db, tablePrefix))
    await new KyselyPolicyStore({ db, tablePrefix }).migrate()
    const names = [`${tablePrefix}migrations`, `${tablePrefix}migrations_lock`, `${tablePrefix}absent`]
    const seeing = seeingOnly(db, names)
    // Not compared with Kysely's own introspection here: other test files drop tables meanwhile.
    const own = (await seeing.introspection.getTables()).map(({ name, schema }) => ({ name, schema }))
    t.same(own.sort((a, b) => a.name.localeCompare(b.name)), names.slice(0, 2).map((name) => ({ name, schema: 'public' })),
      'both migration tables, in their schema; not the absent one')
    t.same((await seeing.introspection.getMetadata()).tables.map(({ name }) => name).sort(), names.slice(0, 2))
    t.ok((await seeing.introspection.getSchemas()).some(({ name }) => name === 'public'), 'schemas: Kysely\'s answer')
    t.equal((await seeing.selectFrom(`${tablePrefix}migrations`).select('name').execute()).length > 0, true, 'every other member is the Kysely\'s own')
  })

  t.test('stores on separate pools migrate a fresh database and write concurrently', async (t) => {
    const tablePrefix = randomPrefix()
    const pools = await Promise.all([postgresDb(), postgresDb(), postgresDb()])
    const stores = pools.map((pool) => new KyselyPolicyStore({ db: pool!, tablePrefix, ownsDb: true }))
    t.teardown(async () => {
      await Promise.all(stores.map((store) => store.close()))
      await dropPrefixed(db, tablePrefix)
    })
    await sharedDatabase(t, stores)
  })
}
