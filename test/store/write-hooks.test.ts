/**
 * `PolicyStore.write`'s `committing` hook (lib/store/types.ts, `StoreWriteOptions`): called inside the
 * write's transaction with the result, only when the write changed something; a rejection rolls the
 * write back. Its `notify` issues pg_notify on PostgreSQL — delivered with the commit, never for a
 * rolled-back write — and rejects on the other dialects (`notifies` false).
 */
import { test } from 'tap'
import { KyselyPolicyStore, createSqliteDb } from '../../lib/store/index.js'
import { dropPrefixed, POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { listen, until } from '../helpers/pg-notify.js'

test('SQLite: the hook sees the result in the transaction; a rejection rolls back; notify is refused', async (t) => {
  const db = createSqliteDb(':memory:')
  t.teardown(() => db.destroy())
  const store = new KyselyPolicyStore({ db })
  await store.migrate()
  t.equal(store.notifies, false)

  const seen: unknown[] = []
  const written = await store.write('t1', { op: 'create-group', group: 'g' }, 'me', { committing: async (_tx, result) => { seen.push(result) } })
  t.same(seen, [written], 'called once, with what the write returns')
  await store.write('t1', { op: 'create-group', group: 'g' }, 'me', { committing: async () => { t.fail('called for a write that changed nothing') } })

  await t.rejects(store.write('t1', { op: 'add-permission', group: 'g', permission: 'a:b' }, 'me', { committing: async () => { throw new Error('publish failed') } }), /publish failed/)
  await t.rejects(store.write('t1', { op: 'add-permission', group: 'g', permission: 'a:b' }, 'me', { committing: (tx) => tx.notify('c', 'x') }), /pg_notify needs PostgreSQL; this store is on sqlite/)
  t.equal((await store.revisions(['t1'])).get('t1')?.revision, 1, 'both rolled back')
  t.same(await store.changesSince('t1', 1), [])
})

test('PostgreSQL: notify is delivered with the commit, and never for a rolled-back write', async (t) => {
  const db = await postgresDb()
  if (db === undefined) return unreachable(t, 'PostgreSQL', POSTGRES_URL)
  t.teardown(() => db.destroy())
  const prefix = randomPrefix()
  t.teardown(() => dropPrefixed(db, prefix))
  const store = new KyselyPolicyStore({ db, tablePrefix: prefix })
  await store.migrate()
  t.equal(store.notifies, true)
  const channel = `${prefix}hooks`
  const wire = await listen(t, channel)

  await t.rejects(store.write('t1', { op: 'create-group', group: 'g' }, 'me', {
    committing: async (tx, result) => {
      await tx.notify(channel, `rolled back ${result.revision}`)
      throw new Error('after the notify')
    }
  }), /after the notify/)
  await store.write('t1', { op: 'create-group', group: 'g' }, 'me', { committing: (tx, result) => tx.notify(channel, `committed ${result.revision}`) })
  await until('the committed one arrives', () => wire.payloads.length > 0)
  t.same(wire.payloads, ['committed 1'], 'only the committed write notified')
})
