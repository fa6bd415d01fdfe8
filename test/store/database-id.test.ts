/**
 * The database id a store must provide: read after migrating, checked at registration, and a store
 * without one is not taken for a PolicyStore.
 */
import t from 'tap'
import { MemoryPolicyStore } from '../../examples/custom-store.js'
import { createSqliteDb, KyselyPolicyStore } from '../../lib/store/index.js'
import { buildApp } from '../helpers/app.js'

t.test('a store answers its database id once migrated; a failed read is not remembered', async (t) => {
  const store = new KyselyPolicyStore({ db: createSqliteDb(':memory:'), ownsDb: true })
  t.teardown(() => store.close())
  await t.rejects(store.databaseId(), 'no tables yet')
  await store.migrate()
  const id = await store.databaseId()
  t.match(id, /^[0-9a-f-]{36}$/)
  t.equal(await store.databaseId(), id)
})

t.test('registration fails naming `db` when a custom store\'s database id is not one', async (t) => {
  class BadId extends MemoryPolicyStore {
    override async databaseId (): Promise<string> { return 'not an id' }
  }
  await t.rejects(buildApp(t, { db: new BadId() }), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /"db".*databaseId\(\)/ })
})

t.test('an object without databaseId is not a PolicyStore: refused as `db`', async (t) => {
  const store = new MemoryPolicyStore()
  const { databaseId, ...rest } = Object.fromEntries(
    ['migrate', 'databaseId', 'write', 'snapshot', 'changesSince', 'changes', 'revisions', 'ping', 'close']
      .map((name) => [name, (store as any)[name].bind(store)]))
  t.type(databaseId, 'function')
  await t.rejects(buildApp(t, { db: rest as any }), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /databaseId/ })
})
