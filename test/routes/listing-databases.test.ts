/**
 * The listings, `who`, the user view and `checkBatch` on each database (SQLite, PostgreSQL, MariaDB),
 * inclusions among the writes: an instance that loads the tenant cold from the database, and one that
 * follows a batch through the database's changelog (`minRevision`), answer what the writing instance
 * answers.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import type { Test } from 'tap'
import type { Change } from '../../lib/model.js'
import policyCache from '../../lib/plugin.js'
import { eachDatabase } from '../helpers/each-database.js'

/**
 * Three instances on one database (a Kysely each passes in; the plugin does not own it), closed at
 * the end of the test before `cleanup` (dropping the tables, destroying the pool) runs.
 */
async function instances (t: Test, db: Kysely<any>, tablePrefix: string, cleanup: () => Promise<void>): Promise<FastifyInstance[]> {
  const apps: FastifyInstance[] = []
  t.teardown(async () => {
    for (const app of apps) await app.close()
    await cleanup()
  })
  for (let i = 0; i < 3; i++) {
    const app = Fastify()
    apps.push(app)
    await app.register(policyCache, { db, tablePrefix, syncIntervalMs: 0 })
    await app.ready()
  }
  return apps
}

const USERS = Array.from({ length: 30 }, (_, i) => `user${String(i).padStart(2, '0')}`)
const CHECKS = USERS.flatMap((user) => ['docs:read', 'docs:drafts:edit', 'billing:pay'].map((permission) => ({ user, permission })))

/** Everything the listings and the lookup answer for the tenant, walked with small pages. */
async function answers (app: FastifyInstance, minRevision?: number) {
  const pc = app.policyCache
  const walk = async <T>(page: (cursor: string | undefined) => Promise<{ next: string | null }>, field: string): Promise<T[]> => {
    const all: T[] = []
    let cursor: string | undefined
    do {
      const p = await page(cursor)
      all.push(...(p as unknown as Record<string, T[]>)[field])
      cursor = p.next ?? undefined
    } while (cursor !== undefined)
    return all
  }
  const groups = await walk<string>((cursor) => pc.groups('t1', { limit: 2, cursor, minRevision }), 'groups')
  const members: Record<string, unknown> = {}
  for (const group of groups) {
    members[group] = [
      await walk((cursor) => pc.groupUsers('t1', group, { limit: 7, cursor }), 'users'),
      await walk((cursor) => pc.groupPermissions('t1', group, { limit: 1, cursor }), 'permissions')
    ]
  }
  const who = await Promise.all(['docs:read', 'docs:drafts:edit', 'docs:*', 'billing:pay'].map((permission) => walk((cursor) => pc.who('t1', permission, { limit: 4, cursor }), 'users')))
  const { results, revision } = await pc.checkBatch('t1', CHECKS)
  const views = await Promise.all(['user00', 'user07', 'boss'].map(async (user) => (await pc.user('t1', user)).grants))
  return { revision, groups, members, who, results, views, tenant: (await pc.tenant('t1')).groups }
}

async function scenario (t: Test, [writer, follower, cold]: FastifyInstance[]): Promise<void> {
  const changes: Change[] = [
    ...['readers', 'editors', 'admins', 'drafts'].map((group): Change => ({ op: 'create-group', group })),
    { op: 'add-permission', group: 'readers', permission: 'docs:read' },
    { op: 'add-permission', group: 'editors', permission: 'docs:*' },
    { op: 'add-permission', group: 'admins', permission: '*' },
    { op: 'add-permission', group: 'drafts', permission: 'docs:drafts:*' },
    ...USERS.map((user, i): Change => ({ op: 'assign-user', group: ['readers', 'editors', 'drafts'][i % 3], user })),
    { op: 'assign-user', group: 'admins', user: 'user07' },
    { op: 'include-group', group: 'editors', includes: 'readers' },
    { op: 'include-group', group: 'drafts', includes: 'editors' }
  ]
  await writer.policyCache.batch('t1', changes)
  await follower.policyCache.groups('t1') // loaded at revision 1
  t.same(await answers(cold), await answers(writer), 'a cold load answers as the writer')

  // A batch that revokes, deletes and moves: the follower applies it from the database's changelog.
  const second = await writer.policyCache.batch('t1', [
    { op: 'remove-permission', group: 'editors', permission: 'docs:*' },
    { op: 'add-permission', group: 'editors', permission: 'docs:write' },
    { op: 'delete-group', group: 'drafts' },
    { op: 'unassign-user', group: 'readers', user: 'user00' },
    { op: 'assign-user', group: 'admins', user: 'user03' },
    { op: 'include-group', group: 'admins', includes: 'editors' },
    { op: 'assign-user', group: 'admins', user: 'boss' }
  ])
  const expected = await answers(writer)
  t.equal(expected.revision, second.revision)
  t.same(await answers(follower, second.revision), expected, 'a follower catching up through the changelog answers as the writer')
  t.same(expected.who[2], [{ user: 'boss', groups: ['admins'], chains: [['admins']] }, { user: 'user03', groups: ['admins'], chains: [['admins']] }, { user: 'user07', groups: ['admins'], chains: [['admins']] }], 'docs:* after the batch: only through *')
  t.same((expected.who[0] as Array<{ user: string }>).find((holder) => holder.user === 'user01'), { user: 'user01', groups: ['editors'], chains: [['editors', 'readers']] }, 'docs:read through an inclusion')
  t.same(expected.views[2].find((grant) => grant.permission === 'docs:read'), { permission: 'docs:read', chain: ['admins', 'editors', 'readers'] }, 'why: a chain of two inclusions')
  t.same(expected.views[1].find((grant) => grant.permission === 'docs:read'), { permission: 'docs:read', chain: ['editors', 'readers'] }, 'the shortest chain')
}

eachDatabase(async (t, db, prefix, cleanup) => { await scenario(t, await instances(t, db, prefix, cleanup)) })
