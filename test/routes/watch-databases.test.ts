/**
 * Watch resumption on each database (SQLite, PostgreSQL, MariaDB): a watch opened after a revision
 * reads what was committed since from the database's changelog (a batch as one entry), then follows
 * the live feed as the instance catches up — without a gap or a duplicate; changes already pruned
 * give a reset naming the oldest kept.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import type { Test } from 'tap'
import type { WatchEvent } from '../../lib/cache/watchers.js'
import { take } from '../helpers/watch.js'
import type { PolicyCache } from '../../lib/policy-cache.js'
import policyCache from '../../lib/plugin.js'
import { eachDatabase } from '../helpers/each-database.js'

/** A writer and a watcher on one database, neither notifying the other (the watcher follows by reading). */
async function instances (t: Test, db: Kysely<any>, tablePrefix: string, cleanup: () => Promise<void>): Promise<FastifyInstance[]> {
  const apps: FastifyInstance[] = []
  t.teardown(async () => {
    for (const app of apps) await app.close()
    await cleanup()
  })
  for (const serverId of ['writer', 'watcher']) {
    const app = Fastify()
    apps.push(app)
    await app.register(policyCache, { db, tablePrefix, serverId, syncIntervalMs: 0, changelogRetention: 10 })
    await app.ready()
  }
  return apps
}

const summary = (events: WatchEvent[]) => events.map((event) => event.type === 'change' ? event.entry.revision : `${event.type}@${event.type === 'reset' ? event.revision : ''}`)

async function scenario (t: Test, [writer, watcher]: FastifyInstance[]): Promise<void> {
  const w = writer.policyCache
  await w.createGroup('t1', 'staff', { actor: 'alice' })
  await w.batch('t1', [{ op: 'assign-user', group: 'staff', user: 'u1' }, { op: 'add-permission', group: 'staff', permission: 'docs:*' }])
  const watch = await watcher.policyCache.watch('t1', { after: 0 })
  await w.assignUser('t1', 'staff', 'u2')
  await (watcher.policyCache as unknown as PolicyCache).sync()
  await w.assignUser('t1', 'staff', 'u3')
  await watcher.policyCache.revision('t1')
  await watcher.policyCache.check('t1', 'u3', 'docs:read', { minRevision: 4 })
  const events = await take(watch, 4)
  t.strictSame(summary(events), [1, 2, 3, 4], 'from the changelog, then as the watcher caught up')
  t.match(events, [
    { entry: { change: { op: 'create-group', group: 'staff' }, origin: 'writer', actor: 'alice' } },
    { entry: { change: { op: 'batch', changes: [{ op: 'assign-user', user: 'u1' }, { op: 'add-permission', permission: 'docs:*' }] } } },
    { entry: { change: { op: 'assign-user', user: 'u2' } } },
    { entry: { change: { op: 'assign-user', user: 'u3' } } }
  ])
  t.strictSame(events.map((event) => event.type === 'change' && event.entry.change),
    (await w.changes('t1')).entries.map((entry) => entry.change), 'the audit feed\'s entries')
  watch.close()

  // Pruned at revision 64 down to the newest 10: resuming from before them is a reset.
  for (let i = 4; i < 64; i++) await w.createGroup('t1', `g${i}`)
  await (watcher.policyCache as unknown as PolicyCache).sync() // a reload: the changelog no longer reaches back to 5
  const late = await watcher.policyCache.watch('t1', { after: 2 })
  await w.createGroup('t1', 'last')
  await (watcher.policyCache as unknown as PolicyCache).sync()
  const resumed = await take(late, 2)
  t.match(resumed[0], { type: 'reset', code: 'FST_POLICY_CACHE_CHANGES_PRUNED', oldestRevision: 55, revision: 64 })
  t.strictSame(summary(resumed), ['reset@64', 65])
  late.close()
}

eachDatabase(async (t, db, prefix, cleanup) => { await scenario(t, await instances(t, db, prefix, cleanup)) })
