/**
 * The conformance suite every PolicyStore must pass, whatever its database.
 */
import { Migrator, type Kysely } from 'kysely'
import type { Test } from 'tap'
import { TenantState } from '../../lib/cache/tenant-state.js'
import { DATABASE_ID_PATTERN } from '../../lib/broadcast/notice.js'
import { digestOf, EMPTY_DIGEST } from '../../lib/digest.js'
import type { Change, GroupData, LoggedChange } from '../../lib/model.js'
import { dialectOf } from '../../lib/store/dialect.js'
import { KyselyPolicyStore, type PolicyStore } from '../../lib/store/index.js'
import { storeMigrations, tableNames } from '../../lib/store/migrations.js'
import { lifecycleConformance } from './lifecycle-conformance.js'

/** A store on fresh, empty, not yet migrated tables, and how to get rid of them. */
export interface StoreUnderTest {
  store: PolicyStore
  cleanup (): Promise<void>
}

const ORIGIN = 'conformance'
const GROUP_NOT_FOUND = { code: 'FST_POLICY_CACHE_GROUP_NOT_FOUND' }
const INCLUSION_CYCLE = { code: 'FST_POLICY_CACHE_INCLUSION_CYCLE', statusCode: 409 }

/** Runs one test on a fresh store, migrated unless `migrated` is false, closed and cleaned up after. */
async function withStore (t: Test, makeStore: () => Promise<StoreUnderTest>, fn: (store: PolicyStore) => Promise<void>, migrated = true): Promise<void> {
  const { store, cleanup } = await makeStore()
  t.teardown(async () => {
    await store.close()
    await cleanup()
  })
  if (migrated) await store.migrate()
  await fn(store)
}

/**
 * Writes with a fixed origin; answers `{ revision, changed }` once the digest the write returned is
 * checked to be the one `revisions` reads for the tenant.
 */
function writer (store: PolicyStore) {
  return async (tenant: string, change: Change): Promise<{ revision: number, changed: boolean }> => {
    const { revision, changed, digest } = await store.write(tenant, change, ORIGIN)
    const read = (await store.revisions([tenant])).get(tenant)
    // Concurrent writes may have moved the tenant on meanwhile.
    if (read?.revision === revision && read.digest !== digest) throw new Error(`write answered digest ${digest}, revisions() reads ${read?.digest}`)
    return { revision, changed }
  }
}

/**
 * The snapshot without its digest, once the digest is checked to be that of its groups; a group's
 * `includes` only when it includes some (absent and empty mean the same: none).
 */
async function snapshotOf (store: PolicyStore, tenant: string): Promise<{ revision: number, groups: GroupData[] }> {
  const { revision, groups, digest } = await store.snapshot(tenant)
  if (digest !== digestOf(groups)) throw new Error(`snapshot digest ${digest} is not the digest of its groups, ${digestOf(groups)}`)
  return { revision, groups: groups.map(({ includes, ...group }) => includes === undefined || includes.length === 0 ? group : { ...group, includes }) }
}

/** The revisions `revisions` reads, without digests. */
async function revisionsOf (store: PolicyStore, tenants: readonly string[]): Promise<Map<string, number>> {
  return new Map([...await store.revisions(tenants)].map(([tenant, { revision }]) => [tenant, revision]))
}

/** A deterministic pseudo-random sequence in [0, 1) (mulberry32). */
function seeded (seed: number): () => number {
  return () => {
    seed = (seed + 0x6D2B79F5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** A random change over a small domain, so that changes collide (no-ops, deletes of full groups). */
function randomChange (random: () => number): Change {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]
  const group = pick(['g', 'h', 'k'])
  const op = pick(['create-group', 'create-group', 'delete-group', 'add-permission', 'add-permission', 'remove-permission', 'assign-user', 'assign-user', 'unassign-user', 'include-group', 'include-group', 'exclude-group'] as const)
  switch (op) {
    case 'include-group':
    case 'exclude-group':
      return { op, group, includes: pick(['g', 'h', 'k']) }
    case 'add-permission':
    case 'remove-permission':
      return { op, group, permission: pick(['docs:read', 'docs:*', '*']) }
    case 'assign-user':
    case 'unassign-user':
      return { op, group, user: pick(['alice', 'bob', 'carol']) }
    default:
      return { op, group }
  }
}

/** Revisions 1..n. */
function upTo (n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1)
}

/** Registers the whole suite as subtests of `t`, named after `name`. */
export function storeConformance (t: Test, name: string, makeStore: () => Promise<StoreUnderTest>): void {
  const test = (title: string, fn: (t: Test, store: PolicyStore) => Promise<void>, migrated = true) =>
    t.test(`${name}: ${title}`, (t) => withStore(t, makeStore, (store) => fn(t, store), migrated))

  test('a tenant never written is at revision 0 and empty', async (t, store) => {
    t.strictSame(await snapshotOf(store, 't1'), { revision: 0, groups: [] })
    t.strictSame(await store.changesSince('t1', 0), [])
    t.equal(await store.changesSince('t1', 1), null, 'a revision ahead of the database')
    t.strictSame(await revisionsOf(store, ['t1']), new Map([['t1', 0]]))
  })

  test('create-group and delete-group', async (t, store) => {
    const write = writer(store)
    t.strictSame(await write('t1', { op: 'create-group', group: 'g' }), { revision: 1, changed: true })
    t.strictSame(await write('t1', { op: 'create-group', group: 'g' }), { revision: 1, changed: false }, 'already there')
    t.strictSame(await write('t1', { op: 'delete-group', group: 'g' }), { revision: 2, changed: true })
    t.strictSame(await write('t1', { op: 'delete-group', group: 'g' }), { revision: 2, changed: false }, 'already gone')
    t.strictSame(await write('t1', { op: 'delete-group', group: 'never' }), { revision: 2, changed: false }, 'never existed')
    t.strictSame(await write('t1', { op: 'create-group', group: 'g' }), { revision: 3, changed: true }, 'created again')
    t.strictSame(await snapshotOf(store, 't1'), { revision: 3, groups: [{ name: 'g', permissions: [], users: [] }] })
  })

  test('add-permission and remove-permission', async (t, store) => {
    const write = writer(store)
    await write('t1', { op: 'create-group', group: 'g' })
    t.strictSame(await write('t1', { op: 'add-permission', group: 'g', permission: 'docs:read' }), { revision: 2, changed: true })
    t.strictSame(await write('t1', { op: 'add-permission', group: 'g', permission: 'docs:read' }), { revision: 2, changed: false })
    t.strictSame(await write('t1', { op: 'add-permission', group: 'g', permission: 'docs:*' }), { revision: 3, changed: true })
    t.strictSame(await write('t1', { op: 'remove-permission', group: 'g', permission: 'docs:read' }), { revision: 4, changed: true })
    t.strictSame(await write('t1', { op: 'remove-permission', group: 'g', permission: 'docs:read' }), { revision: 4, changed: false })
    t.strictSame(await write('t1', { op: 'remove-permission', group: 'none', permission: 'docs:*' }), { revision: 4, changed: false }, 'missing group')
    t.strictSame(await snapshotOf(store, 't1'), { revision: 4, groups: [{ name: 'g', permissions: ['docs:*'], users: [] }] })
  })

  test('assign-user and unassign-user', async (t, store) => {
    const write = writer(store)
    await write('t1', { op: 'create-group', group: 'g' })
    t.strictSame(await write('t1', { op: 'assign-user', group: 'g', user: 'alice' }), { revision: 2, changed: true })
    t.strictSame(await write('t1', { op: 'assign-user', group: 'g', user: 'alice' }), { revision: 2, changed: false })
    t.strictSame(await write('t1', { op: 'assign-user', group: 'g', user: 'bob@example.com' }), { revision: 3, changed: true })
    t.strictSame(await write('t1', { op: 'unassign-user', group: 'g', user: 'alice' }), { revision: 4, changed: true })
    t.strictSame(await write('t1', { op: 'unassign-user', group: 'g', user: 'alice' }), { revision: 4, changed: false })
    t.strictSame(await write('t1', { op: 'unassign-user', group: 'none', user: 'bob@example.com' }), { revision: 4, changed: false }, 'missing group')
    t.strictSame(await snapshotOf(store, 't1'), { revision: 4, groups: [{ name: 'g', permissions: [], users: ['bob@example.com'] }] })
  })

  test('add-permission and assign-user on a missing group throw GroupNotFound and write nothing', async (t, store) => {
    const write = writer(store)
    await t.rejects(write('t1', { op: 'add-permission', group: 'g', permission: 'docs:read' }), GROUP_NOT_FOUND)
    await t.rejects(write('t1', { op: 'assign-user', group: 'g', user: 'alice' }), GROUP_NOT_FOUND)
    t.strictSame(await revisionsOf(store, ['t1']), new Map([['t1', 0]]))
    t.strictSame(await store.changesSince('t1', 0), [])
    t.strictSame(await snapshotOf(store, 't1'), { revision: 0, groups: [] })

    await write('t1', { op: 'create-group', group: 'other' })
    await t.rejects(write('t1', { op: 'assign-user', group: 'g', user: 'alice' }), GROUP_NOT_FOUND)
    await t.rejects(write('t1', { op: 'add-permission', group: 'g', permission: 'docs:read' }), GROUP_NOT_FOUND)
    t.strictSame(await revisionsOf(store, ['t1']), new Map([['t1', 1]]))
    t.strictSame(await store.changesSince('t1', 1), [])
    t.strictSame(await snapshotOf(store, 't1'), { revision: 1, groups: [{ name: 'other', permissions: [], users: [] }] })
  })

  test('delete-group removes its grants and memberships, and only its own', async (t, store) => {
    const write = writer(store)
    for (const group of ['g', 'h']) {
      await write('t1', { op: 'create-group', group })
      await write('t1', { op: 'add-permission', group, permission: 'docs:read' })
      await write('t1', { op: 'assign-user', group, user: 'alice' })
    }
    t.strictSame(await write('t1', { op: 'delete-group', group: 'g' }), { revision: 7, changed: true })
    t.strictSame(await snapshotOf(store, 't1'), { revision: 7, groups: [{ name: 'h', permissions: ['docs:read'], users: ['alice'] }] })
    await write('t1', { op: 'create-group', group: 'g' })
    t.strictSame((await snapshotOf(store, 't1')).groups[0], { name: 'g', permissions: [], users: [] }, 'a recreated group starts empty')
  })

  test('tenants are isolated', async (t, store) => {
    const write = writer(store)
    await write('t1', { op: 'create-group', group: 'g' })
    await write('t1', { op: 'add-permission', group: 'g', permission: 'a' })
    t.strictSame(await write('t2', { op: 'create-group', group: 'g' }), { revision: 1, changed: true }, 'same group name, other tenant')
    await write('t2', { op: 'assign-user', group: 'g', user: 'bob' })
    await write('t1', { op: 'delete-group', group: 'g' })
    await t.rejects(write('t1', { op: 'assign-user', group: 'g', user: 'bob' }), GROUP_NOT_FOUND)
    t.strictSame(await snapshotOf(store, 't1'), { revision: 3, groups: [] })
    t.strictSame(await snapshotOf(store, 't2'), { revision: 2, groups: [{ name: 'g', permissions: [], users: ['bob'] }] })
    t.strictSame(await store.changesSince('t2', 0), [
      { revision: 1, op: 'create-group', group: 'g' },
      { revision: 2, op: 'assign-user', group: 'g', user: 'bob' }
    ])
  })

  test('changesSince returns the logged changes in order, shaped like Change', async (t, store) => {
    const write = writer(store)
    const changes: Change[] = [
      { op: 'create-group', group: 'g' },
      { op: 'add-permission', group: 'g', permission: 'docs:*' },
      { op: 'assign-user', group: 'g', user: 'alice' },
      { op: 'unassign-user', group: 'g', user: 'alice' },
      { op: 'remove-permission', group: 'g', permission: 'docs:*' },
      { op: 'delete-group', group: 'g' }
    ]
    for (const change of changes) {
      await write('t1', change)
      await write('t1', change) // changes nothing, logs nothing
    }
    const logged: LoggedChange[] = changes.map((change, i) => ({ ...change, revision: i + 1 }))
    t.strictSame(await store.changesSince('t1', 0), logged)
    t.strictSame(await store.changesSince('t1', 3), logged.slice(3))
    t.strictSame(await store.changesSince('t1', 6), [], 'current')
    t.equal(await store.changesSince('t1', 7), null, 'ahead of the database')
  })

  test('snapshot lists groups, permissions and users sorted', async (t, store) => {
    const write = writer(store)
    for (const group of ['b', 'a', 'C']) await write('t1', { op: 'create-group', group })
    for (const permission of ['z', 'docs:read', '*']) await write('t1', { op: 'add-permission', group: 'a', permission })
    for (const user of ['zoe', 'Bob', 'alice']) await write('t1', { op: 'assign-user', group: 'b', user })
    t.strictSame(await snapshotOf(store, 't1'), {
      revision: 9,
      groups: [
        { name: 'C', permissions: [], users: [] },
        { name: 'a', permissions: ['*', 'docs:read', 'z'], users: [] },
        { name: 'b', permissions: [], users: ['Bob', 'alice', 'zoe'] }
      ]
    })
  })

  test('revisions of several tenants, missing ones at 0', async (t, store) => {
    const write = writer(store)
    await write('t1', { op: 'create-group', group: 'g' })
    await write('t1', { op: 'create-group', group: 'h' })
    await write('t2', { op: 'create-group', group: 'g' })
    t.strictSame(await revisionsOf(store, ['t1', 't2', 'missing', 't1']), new Map([['t1', 2], ['t2', 1], ['missing', 0]]))
    t.strictSame(await revisionsOf(store, []), new Map())

    const many = Array.from({ length: 1200 }, (_, i) => `x${i}`)
    const revisions = await revisionsOf(store, [...many, 't2'])
    t.equal(revisions.size, 1201, 'more tenants than fit in one query')
    t.equal(revisions.get('t2'), 1)
    t.ok(many.every((tenant) => revisions.get(tenant) === 0))
  })

  test('identifiers and permissions are case-sensitive', async (t, store) => {
    const write = writer(store)
    await write('acme', { op: 'create-group', group: 'admins' })
    t.strictSame(await write('acme', { op: 'create-group', group: 'Admins' }), { revision: 2, changed: true })
    t.strictSame(await write('acme', { op: 'assign-user', group: 'admins', user: 'alice' }), { revision: 3, changed: true })
    t.strictSame(await write('acme', { op: 'assign-user', group: 'admins', user: 'Alice' }), { revision: 4, changed: true })
    t.strictSame(await write('acme', { op: 'unassign-user', group: 'admins', user: 'ALICE' }), { revision: 4, changed: false })
    t.strictSame(await write('acme', { op: 'add-permission', group: 'admins', permission: 'docs:read' }), { revision: 5, changed: true })
    t.strictSame(await write('acme', { op: 'add-permission', group: 'admins', permission: 'Docs:read' }), { revision: 6, changed: true })
    t.strictSame(await write('acme', { op: 'remove-permission', group: 'admins', permission: 'DOCS:READ' }), { revision: 6, changed: false })
    await t.rejects(write('acme', { op: 'assign-user', group: 'ADMINS', user: 'alice' }), GROUP_NOT_FOUND)
    t.strictSame(await revisionsOf(store, ['acme', 'Acme']), new Map([['acme', 6], ['Acme', 0]]))
    t.strictSame(await snapshotOf(store, 'Acme'), { revision: 0, groups: [] })
    t.strictSame(await snapshotOf(store, 'acme'), {
      revision: 6,
      groups: [
        { name: 'Admins', permissions: [], users: [] },
        { name: 'admins', permissions: ['Docs:read', 'docs:read'], users: ['Alice', 'alice'] }
      ]
    })
  })

  test('concurrent writes to one tenant get unique, gap-free revisions and none is lost', async (t, store) => {
    const write = writer(store)
    const groups = Array.from({ length: 50 }, (_, i) => `g${i}`)
    const created = await Promise.all(groups.map((group) => write('t1', { op: 'create-group', group })))
    t.ok(created.every((result) => result.changed))
    t.strictSame(created.map((result) => result.revision).sort((a, b) => a - b), upTo(50))

    const assigned = await Promise.all(groups.map((group, i) => write('t1', { op: 'assign-user', group: 'g0', user: `u${i}` })))
    t.strictSame(assigned.map((result) => result.revision).sort((a, b) => a - b), upTo(100).slice(50))

    const same = await Promise.all(Array.from({ length: 10 }, () => write('t1', { op: 'create-group', group: 'same' })))
    t.equal(same.filter((result) => result.changed).length, 1, 'one of ten identical writes changes something')
    t.ok(same.every((result) => result.revision === 101))

    const snapshot = await store.snapshot('t1')
    t.equal(snapshot.revision, 101)
    t.equal(snapshot.groups.length, 51)
    t.equal(snapshot.groups.find((group) => group.name === 'g0')?.users.length, 50)
    t.strictSame((await store.changesSince('t1', 0))?.map((change) => change.revision), upTo(101))
  })

  test('migrate is idempotent and safe to run concurrently', async (t, store) => {
    await Promise.all([store.migrate(), store.migrate(), store.migrate()])
    await store.migrate()
    t.strictSame(await writer(store)('t1', { op: 'create-group', group: 'g' }), { revision: 1, changed: true })
  }, false)

  test('the digest of a tenant never written is EMPTY_DIGEST everywhere', async (t, store) => {
    t.equal((await store.snapshot('t1')).digest, EMPTY_DIGEST)
    t.strictSame(await store.revisions(['t1']), new Map([['t1', { revision: 0, digest: EMPTY_DIGEST }]]))
    const created = await store.write('t1', { op: 'create-group', group: 'g' }, ORIGIN)
    t.not(created.digest, EMPTY_DIGEST)
    const deleted = await store.write('t1', { op: 'delete-group', group: 'g' }, ORIGIN)
    t.strictSame(deleted, { revision: 2, changed: true, digest: EMPTY_DIGEST }, 'emptied: the digest of no facts again')
    t.strictSame(await store.write('t1', { op: 'delete-group', group: 'g' }, ORIGIN), { revision: 2, changed: false, digest: EMPTY_DIGEST })
  })

  test('the digest agrees with the contents and with a cache applying the changelog, after random changes', async (t, store) => {
    const random = seeded(42)
    // A cache following every write as a peer would (from the changelog), and one loaded at the end.
    const follower = new TenantState({ revision: 0, groups: [], digest: EMPTY_DIGEST })
    let checked = 0
    for (let i = 0; i < 400; i++) {
      const change = randomChange(random)
      const result = await store.write('t1', change, ORIGIN).catch((err: { code?: string }) => {
        if (err.code !== GROUP_NOT_FOUND.code && err.code !== INCLUSION_CYCLE.code) throw err
        return null
      })
      if (result === null) continue
      const logged = await store.changesSince('t1', follower.revision)
      if (logged === null || !follower.applyAll(logged)) {
        t.fail(`the changelog does not reach back to ${follower.revision}`)
        return
      }
      if (follower.digest !== result.digest || follower.revision !== result.revision) {
        t.fail(`after ${JSON.stringify(change)}: the cache holds ${follower.digest} at ${follower.revision}, the store ${result.digest} at ${result.revision}`)
        return
      }
      if (i % 25 === 0) {
        const snapshot = await store.snapshot('t1')
        t.equal(snapshot.digest, digestOf(snapshot.groups), `revision ${snapshot.revision}: the digest of the contents`)
        checked++
      }
    }
    const snapshot = await store.snapshot('t1')
    t.equal(snapshot.digest, digestOf(snapshot.groups))
    t.equal(snapshot.digest, follower.digest, 'the follower agrees')
    t.strictSame(new TenantState(snapshot).view(), follower.view(), 'and holds the same contents')
    t.ok(checked > 10 && snapshot.revision > 100, `a long enough sequence (${snapshot.revision} revisions)`)
  })

  test('include-group and exclude-group: stored, logged, undone; a no-op changes nothing', async (t, store) => {
    const write = writer(store)
    for (const group of ['admins', 'editors', 'viewers']) await write('t1', { op: 'create-group', group })
    t.strictSame(await write('t1', { op: 'include-group', group: 'admins', includes: 'editors' }), { revision: 4, changed: true })
    t.strictSame(await write('t1', { op: 'include-group', group: 'editors', includes: 'viewers' }), { revision: 5, changed: true })
    t.strictSame(await write('t1', { op: 'include-group', group: 'admins', includes: 'viewers' }), { revision: 6, changed: true }, 'a shortcut is no cycle')
    t.strictSame(await write('t1', { op: 'include-group', group: 'admins', includes: 'editors' }), { revision: 6, changed: false }, 'already included')
    t.strictSame(await snapshotOf(store, 't1'), {
      revision: 6,
      groups: [
        { name: 'admins', permissions: [], users: [], includes: ['editors', 'viewers'] },
        { name: 'editors', permissions: [], users: [], includes: ['viewers'] },
        { name: 'viewers', permissions: [], users: [] }
      ]
    })
    t.strictSame(await write('t1', { op: 'exclude-group', group: 'admins', includes: 'viewers' }), { revision: 7, changed: true })
    t.strictSame(await write('t1', { op: 'exclude-group', group: 'admins', includes: 'viewers' }), { revision: 7, changed: false }, 'already excluded')
    t.strictSame(await write('t1', { op: 'exclude-group', group: 'nobody', includes: 'viewers' }), { revision: 7, changed: false }, 'a missing group includes nothing')
    t.strictSame(await store.changesSince('t1', 3), [
      { revision: 4, op: 'include-group', group: 'admins', includes: 'editors' },
      { revision: 5, op: 'include-group', group: 'editors', includes: 'viewers' },
      { revision: 6, op: 'include-group', group: 'admins', includes: 'viewers' },
      { revision: 7, op: 'exclude-group', group: 'admins', includes: 'viewers' }
    ], 'logged, shaped like Change')
    const feed = await store.changes('t1', 6, 10)
    t.strictSame(feed.entries.map((entry) => entry.change), [{ op: 'exclude-group', group: 'admins', includes: 'viewers' }], 'the audit feed names the included group')
  })

  test('include-group without either group throws GroupNotFound and writes nothing', async (t, store) => {
    const write = writer(store)
    await write('t1', { op: 'create-group', group: 'g' })
    await t.rejects(store.write('t1', { op: 'include-group', group: 'missing', includes: 'g' }, ORIGIN), { ...GROUP_NOT_FOUND, message: /"missing"/ })
    await t.rejects(store.write('t1', { op: 'include-group', group: 'g', includes: 'missing' }, ORIGIN), { ...GROUP_NOT_FOUND, message: /"missing"/ })
    await t.rejects(store.write('t1', [{ op: 'include-group', group: 'g', includes: 'missing' }], ORIGIN), { ...GROUP_NOT_FOUND, index: 0 })
    t.strictSame(await snapshotOf(store, 't1'), { revision: 1, groups: [{ name: 'g', permissions: [], users: [] }] })
  })

  test('an inclusion closing a cycle is refused with a coded 409 naming the path; nothing is written', async (t, store) => {
    const write = writer(store)
    await store.write('t1', [
      ...['a', 'b', 'c', 'd'].map((group): Change => ({ op: 'create-group', group })),
      { op: 'include-group', group: 'a', includes: 'b' },
      { op: 'include-group', group: 'b', includes: 'c' },
      { op: 'include-group', group: 'c', includes: 'd' },
      { op: 'include-group', group: 'a', includes: 'd' }
    ], ORIGIN)
    const before = await store.snapshot('t1')
    await t.rejects(store.write('t1', { op: 'include-group', group: 'd', includes: 'a' }, ORIGIN),
      { ...INCLUSION_CYCLE, path: ['d', 'a', 'd'], message: /Group "d" cannot include "a" in tenant "t1": it would close the cycle d → a → d/ }, 'the shortest path')
    await t.rejects(store.write('t1', { op: 'include-group', group: 'c', includes: 'b' }, ORIGIN), { ...INCLUSION_CYCLE, path: ['c', 'b', 'c'] })
    await t.rejects(store.write('t1', { op: 'include-group', group: 'd', includes: 'b' }, ORIGIN), { ...INCLUSION_CYCLE, path: ['d', 'b', 'c', 'd'] })
    await t.rejects(store.write('t1', { op: 'include-group', group: 'b', includes: 'b' }, ORIGIN), { ...INCLUSION_CYCLE, path: ['b', 'b'] }, 'a group including itself')
    // In a batch: the cycle is judged on the inclusions as the batch left them, and names its change.
    await t.rejects(store.write('t1', [{ op: 'exclude-group', group: 'a', includes: 'd' }, { op: 'create-group', group: 'e' }, { op: 'include-group', group: 'd', includes: 'e' }, { op: 'include-group', group: 'e', includes: 'a' }], ORIGIN),
      { ...INCLUSION_CYCLE, index: 3, path: ['e', 'a', 'b', 'c', 'd', 'e'], message: /^changes\[3\]: Group "e" cannot include "a"/ })
    t.strictSame(await store.snapshot('t1'), before, 'nothing written')
    t.strictSame(await store.changesSince('t1', 1), [])
    // What a batch undoes first is no cycle any more.
    t.strictSame(await write('t1', { op: 'exclude-group', group: 'c', includes: 'd' }), { revision: 2, changed: true })
    const result = await store.write('t1', [{ op: 'exclude-group', group: 'a', includes: 'd' }, { op: 'include-group', group: 'd', includes: 'a' }], ORIGIN)
    t.strictSame(result.effects, [true, true])
  })

  test('delete-group removes its inclusions both ways, and only those', async (t, store) => {
    const write = writer(store)
    for (const group of ['top', 'mid', 'low', 'side']) await write('t1', { op: 'create-group', group })
    await write('t1', { op: 'include-group', group: 'top', includes: 'mid' })
    await write('t1', { op: 'include-group', group: 'mid', includes: 'low' })
    await write('t1', { op: 'include-group', group: 'side', includes: 'low' })
    await write('t1', { op: 'include-group', group: 'top', includes: 'side' })
    await write('t1', { op: 'delete-group', group: 'mid' })
    t.strictSame((await snapshotOf(store, 't1')).groups, [
      { name: 'low', permissions: [], users: [] },
      { name: 'side', permissions: [], users: [], includes: ['low'] },
      { name: 'top', permissions: [], users: [], includes: ['side'] }
    ])
    await write('t1', { op: 'create-group', group: 'mid' })
    t.strictSame((await snapshotOf(store, 't1')).groups.find((group) => group.name === 'mid'), { name: 'mid', permissions: [], users: [] }, 'a recreated group includes nothing, and nothing includes it')
    // In a batch too, with inclusions the batch itself made.
    const result = await store.write('t1', [{ op: 'include-group', group: 'mid', includes: 'low' }, { op: 'include-group', group: 'top', includes: 'mid' }, { op: 'delete-group', group: 'low' }], ORIGIN)
    t.strictSame(result.effects, [true, true, true])
    t.strictSame((await snapshotOf(store, 't1')).groups, [
      { name: 'mid', permissions: [], users: [] },
      { name: 'side', permissions: [], users: [] },
      { name: 'top', permissions: [], users: [], includes: ['mid', 'side'] }
    ])
    await write('t1', { op: 'delete-group', group: 'top' })
    const follower = new TenantState(await store.snapshot('t1'))
    t.equal(follower.digest, (await store.revisions(['t1'])).get('t1')?.digest, 'the digest lost every inclusion that went')
  })

  test('a batch applies its changes in order at one revision, logged as one entry', async (t, store) => {
    const batch: Change[] = [
      { op: 'create-group', group: 'g' },
      { op: 'add-permission', group: 'g', permission: 'docs:*' },
      { op: 'assign-user', group: 'g', user: 'alice' },
      { op: 'assign-user', group: 'g', user: 'alice' },
      { op: 'create-group', group: 'h' },
      { op: 'unassign-user', group: 'h', user: 'nobody' }
    ]
    const result = await store.write('t1', batch, ORIGIN)
    t.strictSame(result, { revision: 1, changed: true, digest: result.digest, effects: [true, true, true, false, true, false] })
    t.strictSame(await snapshotOf(store, 't1'), {
      revision: 1,
      groups: [{ name: 'g', permissions: ['docs:*'], users: ['alice'] }, { name: 'h', permissions: [], users: [] }]
    })
    t.equal((await store.revisions(['t1'])).get('t1')?.digest, result.digest)
    t.strictSame(await store.changesSince('t1', 0), [{ revision: 1, op: 'batch', changes: [batch[0], batch[1], batch[2], batch[4]] }], 'the effective changes only')
    t.strictSame(await writer(store)('t1', { op: 'assign-user', group: 'h', user: 'bob' }), { revision: 2, changed: true }, 'single writes go on from it')
  })

  test('a batch that changes nothing bumps nothing; one effective change is logged as that change', async (t, store) => {
    await store.write('t1', [{ op: 'create-group', group: 'g' }, { op: 'assign-user', group: 'g', user: 'alice' }], ORIGIN)
    const before = (await store.revisions(['t1'])).get('t1')
    t.strictSame(await store.write('t1', [{ op: 'create-group', group: 'g' }, { op: 'unassign-user', group: 'g', user: 'bob' }], ORIGIN),
      { revision: 1, changed: false, digest: before?.digest, effects: [false, false] })
    t.strictSame(await store.write('t1', [], ORIGIN), { revision: 1, changed: false, digest: before?.digest, effects: [] }, 'an empty batch')
    t.strictSame(await store.changesSince('t1', 1), [])
    const one = await store.write('t1', [{ op: 'create-group', group: 'g' }, { op: 'unassign-user', group: 'g', user: 'alice' }], ORIGIN)
    t.strictSame(one.effects, [false, true])
    t.strictSame(await store.changesSince('t1', 1), [{ revision: 2, op: 'unassign-user', group: 'g', user: 'alice' }])
  })

  test('a batch with a failing change writes nothing and names the change', async (t, store) => {
    const write = writer(store)
    await write('t1', { op: 'create-group', group: 'g' })
    const digest = (await store.revisions(['t1'])).get('t1')?.digest
    const failing: Change[][] = [
      [{ op: 'assign-user', group: 'g', user: 'alice' }, { op: 'assign-user', group: 'missing', user: 'alice' }],
      [{ op: 'delete-group', group: 'g' }, { op: 'add-permission', group: 'g', permission: 'docs:read' }],
      [{ op: 'create-group', group: 'x' }, { op: 'assign-user', group: 'x', user: 'a' }, { op: 'delete-group', group: 'x' }, { op: 'assign-user', group: 'x', user: 'a' }]
    ]
    for (const batch of failing) {
      const index = batch.length - 1
      await t.rejects(store.write('t1', batch, ORIGIN), { code: GROUP_NOT_FOUND.code, index, message: new RegExp(`^changes\\[${index}\\]: Group "${batch[index].group}"`) })
    }
    t.strictSame(await snapshotOf(store, 't1'), { revision: 1, groups: [{ name: 'g', permissions: [], users: [] }] })
    t.equal((await store.revisions(['t1'])).get('t1')?.digest, digest)
    t.strictSame(await store.changesSince('t1', 1), [])
    await t.rejects(store.write('t2', [{ op: 'assign-user', group: 'g', user: 'alice' }], ORIGIN), { code: GROUP_NOT_FOUND.code, index: 0 })
    t.strictSame(await revisionsOf(store, ['t2']), new Map([['t2', 0]]), 'a tenant never written stays so')
  })

  test('a batch reaches the same contents, digest and effects as its changes written one by one', async (t, store) => {
    const random = seeded(7)
    const follower = new TenantState({ revision: 0, groups: [], digest: EMPTY_DIGEST })
    let succeeded = 0
    for (let round = 0; round < 40; round++) {
      // Mostly batches that create their groups first, so that most succeed; some fail (a group deleted, then written).
      const creates: Change[] = random() < 0.7 ? ['g', 'h', 'k'].map((group) => ({ op: 'create-group', group })) : []
      const batch = [...creates, ...Array.from({ length: 1 + Math.floor(random() * 12) }, () => randomChange(random))]
      const singles: boolean[] = []
      let failed = false
      for (const change of batch) {
        const result = await store.write('singles', change, ORIGIN).catch(() => null)
        if (result === null) {
          failed = true
          break
        }
        singles.push(result.changed)
      }
      const predicted = follower.digestAfter({ op: 'batch', changes: batch })
      const result = await store.write('batched', batch, ORIGIN).catch(() => null)
      if (failed) {
        t.equal(result, null, `round ${round}: the batch fails where a single write failed`)
        // Bring `singles` back in line: replay the batched tenant's contents is not possible, so start both afresh.
        await store.write('singles', [...(await store.snapshot('singles')).groups.map((g): Change => ({ op: 'delete-group', group: g.name }))], ORIGIN)
        await store.write('batched', [...(await store.snapshot('batched')).groups.map((g): Change => ({ op: 'delete-group', group: g.name }))], ORIGIN)
      } else {
        t.strictSame(result?.effects, singles, `round ${round}: the same effects`)
        t.equal(result?.digest, predicted, `round ${round}: a cache predicts the batch's digest (digestAfter)`)
      }
      const logged = await store.changesSince('batched', follower.revision)
      if (logged === null || !follower.applyAll(logged)) throw new Error('the changelog does not reach back')
      const [a, b] = [await store.snapshot('singles'), await store.snapshot('batched')]
      t.strictSame(b.groups, a.groups, `round ${round}: the same contents`)
      t.equal(b.digest, a.digest)
      t.equal(b.digest, digestOf(b.groups))
      t.equal(follower.digest, b.digest, 'a cache replaying the changelog agrees')
      t.strictSame(follower.view(), b.groups)
      if (!failed) succeeded++
    }
    t.ok(succeeded >= 15, `most batches succeeded (${succeeded} of 40)`)
  })

  test('a batch larger than the queries\' chunks', async (t, store) => {
    const users = Array.from({ length: 1300 }, (_, i) => `u${i}`)
    const batch: Change[] = [{ op: 'create-group', group: 'g' }, ...users.map((user): Change => ({ op: 'assign-user', group: 'g', user }))]
    const result = await store.write('t1', batch, ORIGIN)
    t.equal(result.revision, 1)
    t.equal(result.effects?.filter(Boolean).length, 1301)
    const snapshot = await snapshotOf(store, 't1')
    t.equal(snapshot.groups[0].users.length, 1300)
    const again = await store.write('t1', [...users.map((user): Change => ({ op: 'unassign-user', group: 'g', user })), { op: 'delete-group', group: 'g' }], ORIGIN)
    t.strictSame([again.revision, again.digest], [2, EMPTY_DIGEST])
  })

  test('ifRevision: a write at another revision writes nothing and says the current one', async (t, store) => {
    const conflict = (current: number) => ({ code: 'FST_POLICY_CACHE_REVISION_CONFLICT', statusCode: 409, currentRevision: current, message: new RegExp(`at revision ${current}\\b`) })
    await t.rejects(store.write('t1', { op: 'create-group', group: 'g' }, ORIGIN, { ifRevision: 1 }), conflict(0), 'never written is revision 0')
    t.match(await store.write('t1', { op: 'create-group', group: 'g' }, ORIGIN, { ifRevision: 0 }), { revision: 1, changed: true })
    await t.rejects(store.write('t1', { op: 'create-group', group: 'h' }, ORIGIN, { ifRevision: 0 }), conflict(1))
    await t.rejects(store.write('t1', [{ op: 'create-group', group: 'h' }], ORIGIN, { ifRevision: 2 }), conflict(1), 'a batch too')
    t.match(await store.write('t1', [{ op: 'create-group', group: 'h' }, { op: 'assign-user', group: 'h', user: 'a' }], ORIGIN, { ifRevision: 1 }), { revision: 2, changed: true })
    t.match(await store.write('t1', { op: 'create-group', group: 'h' }, ORIGIN, { ifRevision: 2 }), { revision: 2, changed: false }, 'at the revision, a write that changes nothing')
    t.strictSame(await snapshotOf(store, 't1'), { revision: 2, groups: [{ name: 'g', permissions: [], users: [] }, { name: 'h', permissions: [], users: ['a'] }] })

    const racing = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => store.write('t1', { op: 'create-group', group: `r${i}` }, ORIGIN, { ifRevision: 2 })))
    t.equal(racing.filter((outcome) => outcome.status === 'fulfilled').length, 1, 'of concurrent writes conditional on one revision, one wins')
    t.ok(racing.every((outcome) => outcome.status === 'fulfilled' || (outcome.reason as { code?: string }).code === 'FST_POLICY_CACHE_REVISION_CONFLICT'))
    t.equal((await store.snapshot('t1')).revision, 3)
  })

  test('the audit feed: each entry with its change, origin, actor and commit time, paged after a revision', async (t, store) => {
    t.strictSame(await store.changes('t1', 0, 10), { revision: 0, oldestRevision: null, entries: [] }, 'a tenant never written')
    await store.write('t1', { op: 'create-group', group: 'g' }, 'server-a', { actor: 'alice' })
    await store.write('t1', [{ op: 'add-permission', group: 'g', permission: 'docs:*' }, { op: 'assign-user', group: 'g', user: 'bob' }], 'server-b')
    await store.write('t1', { op: 'assign-user', group: 'g', user: 'bob' }, 'server-a', { actor: 'carol' })
    await store.write('t1', { op: 'unassign-user', group: 'g', user: 'bob' }, 'server-a', { actor: 'Dave Ørsted <dave@example.com> 🙂' })
    await store.write('t2', { op: 'create-group', group: 'other' }, 'server-c', { actor: 'erin' })

    const page = await store.changes('t1', 0, 10)
    t.equal(page.revision, 3)
    t.equal(page.oldestRevision, 1)
    t.strictSame(page.entries.map(({ committedAt, ...entry }) => entry), [
      { revision: 1, change: { op: 'create-group', group: 'g' }, origin: 'server-a', actor: 'alice' },
      { revision: 2, change: { op: 'batch', changes: [{ op: 'add-permission', group: 'g', permission: 'docs:*' }, { op: 'assign-user', group: 'g', user: 'bob' }] }, origin: 'server-b', actor: null },
      { revision: 3, change: { op: 'unassign-user', group: 'g', user: 'bob' }, origin: 'server-a', actor: 'Dave Ørsted <dave@example.com> 🙂' }
    ], 'a write that changed nothing logged nothing; the actor is kept as given')
    const times = page.entries.map((entry) => entry.committedAt)
    t.ok(times.every((time) => Number.isSafeInteger(time) && Math.abs(time - Date.now()) < 86_400_000), `epoch milliseconds (${times.join(', ')})`)
    t.strictSame([...times].sort((a, b) => a - b), times, 'in commit order')

    t.strictSame((await store.changes('t1', 1, 1)).entries.map((entry) => entry.revision), [2], 'after and limit')
    t.strictSame((await store.changes('t1', 0, 2)).entries.map((entry) => entry.revision), [1, 2])
    t.strictSame(await store.changes('t1', 3, 10), { revision: 3, oldestRevision: 1, entries: [] }, 'after the current revision: no entries')
    t.strictSame((await store.changes('t1', 50, 10)).entries, [], 'after beyond it: none either')
    t.match(await store.changes('t2', 0, 10), { revision: 1, oldestRevision: 1, entries: [{ revision: 1, origin: 'server-c', actor: 'erin' }] }, 'tenants apart')
    t.strictSame(await store.changesSince('t1', 0), [
      { revision: 1, op: 'create-group', group: 'g' },
      { revision: 2, op: 'batch', changes: [{ op: 'add-permission', group: 'g', permission: 'docs:*' }, { op: 'assign-user', group: 'g', user: 'bob' }] },
      { revision: 3, op: 'unassign-user', group: 'g', user: 'bob' }
    ], 'catch-up reads the same entries without the audit fields')
  })

  test('the database id is stable, shared by stores on the same tables, and another database has another', async (t, store) => {
    const id = await store.databaseId()
    t.match(id, new RegExp(DATABASE_ID_PATTERN))
    t.equal(await store.databaseId(), id)
    await store.migrate()
    t.equal(await store.databaseId(), id, 'migrating again keeps it')
    const other = await makeStore()
    t.teardown(async () => {
      await other.store.close()
      await other.cleanup()
    })
    await other.store.migrate()
    t.not(await other.store.databaseId(), id)
  })

  lifecycleConformance(test)
}

/**
 * A store configured to retain 10 changes keeps at least its 10 newest and prunes older ones. The
 * built-in store prunes on every 64th revision (the example store on every write), down to exactly the
 * newest 10: the retention edge is checked right after such a prune, at revision 128.
 */
export async function changelogPruning (t: Test, makeStore: () => Promise<StoreUnderTest>): Promise<void> {
  await withStore(t, makeStore, async (store) => {
    for (let i = 0; i < 128; i++) await store.write('t1', { op: 'create-group', group: `g${i}` }, ORIGIN)
    t.strictSame((await store.changesSince('t1', 118))?.map((change) => change.revision), upTo(128).slice(118), 'the newest 10 are all kept')
    t.equal(await store.changesSince('t1', 117), null, 'the 11th newest is pruned')

    for (let i = 128; i < 130; i++) await store.write('t1', { op: 'create-group', group: `g${i}` }, ORIGIN)
    t.equal(await store.changesSince('t1', 0), null, 'the log no longer reaches back to revision 1')
    t.equal(await store.changesSince('t1', 100), null)
    t.strictSame((await store.changesSince('t1', 120))?.map((change) => change.revision), upTo(130).slice(120), 'the newest 10 are kept')
    t.strictSame(await store.changesSince('t1', 129), [{ revision: 130, op: 'create-group', group: 'g129' }])
    t.strictSame(await store.changesSince('t1', 130), [])
    t.equal((await store.snapshot('t1')).groups.length, 130, 'pruning touches the log only')
    const page = await store.changes('t1', 0, 1000)
    t.equal(page.revision, 130)
    t.ok(page.oldestRevision !== null && page.oldestRevision >= 119 && page.oldestRevision <= 121, `the feed says the oldest kept (${page.oldestRevision})`)
    t.equal(page.entries[0].revision, page.oldestRevision, 'and starts there')
    t.equal(page.entries.at(-1)?.revision, 130)
  })
}

/**
 * Several stores on one database through separate connections (like several processes): they
 * migrate it concurrently, then write to one tenant concurrently, getting gap-free revisions.
 */
export async function sharedDatabase (t: Test, stores: PolicyStore[]): Promise<void> {
  await Promise.all(stores.map((store) => store.migrate()))
  const results = await Promise.all(stores.flatMap((store, s) =>
    Array.from({ length: 20 }, (_, i) => store.write('shared', { op: 'create-group', group: `s${s}-${i}` }, `store-${s}`))))
  const total = stores.length * 20
  t.strictSame(results.map((result) => result.revision).sort((a, b) => a - b), upTo(total))
  for (const store of stores) t.equal((await store.snapshot('shared')).groups.length, total)
  const ids = await Promise.all(stores.map((store) => store.databaseId()))
  t.equal(new Set(ids).size, 1, 'one database, one id, whichever process created it')
  const digests = await Promise.all(stores.map(async (store) => (await store.revisions(['shared'])).get('shared')?.digest))
  t.equal(new Set(digests).size, 1)
  t.equal(digests[0], digestOf((await stores[0].snapshot('shared')).groups), 'concurrent writers kept the digest exact')
}

/**
 * A database the previous version created (migration 0001 only) and filled: migrating it computes the
 * digest of every existing tenant from its rows, and creates the database id.
 */
export async function upgradeComputesDigests (t: Test, db: Kysely<any>, tablePrefix: string): Promise<void> {
  const tables = tableNames(tablePrefix)
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => storeMigrations(tables, dialectOf(db)) },
    migrationTableName: tables.migrations,
    migrationLockTableName: tables.migrationsLock
  })
  const { error } = await migrator.migrateTo('0001-initial')
  if (error !== undefined) throw error
  await db.insertInto(tables.tenants).values([{ tenant: 't1', revision: 4 }, { tenant: 't2', revision: 1 }, { tenant: 'empty', revision: 2 }]).execute()
  await db.insertInto(tables.groups).values([{ tenant: 't1', name: 'g' }, { tenant: 't1', name: 'h' }, { tenant: 't2', name: 'g' }]).execute()
  await db.insertInto(tables.grants).values([{ tenant: 't1', group_name: 'g', permission: 'docs:*' }]).execute()
  await db.insertInto(tables.members).values([{ tenant: 't1', group_name: 'h', user_id: 'alice' }]).execute()

  const store = new KyselyPolicyStore({ db, tablePrefix })
  await store.migrate()
  for (const tenant of ['t1', 't2', 'empty', 'never']) {
    const snapshot = await store.snapshot(tenant)
    t.equal(snapshot.digest, digestOf(snapshot.groups), `${tenant}: the digest of its rows`)
  }
  t.not((await store.snapshot('t1')).digest, (await store.snapshot('t2')).digest)
  t.equal((await store.snapshot('empty')).digest, EMPTY_DIGEST)
  t.match(await store.databaseId(), new RegExp(DATABASE_ID_PATTERN))
  t.match(await store.write('t1', { op: 'assign-user', group: 'g', user: 'bob' }, ORIGIN), { revision: 5, changed: true })
  const after = await store.snapshot('t1')
  t.equal(after.digest, digestOf(after.groups), 'and later writes keep it exact')
}

/**
 * Count-and-age retention (`{ changes: 10, days: 7 }`) on a built-in store over `db` and the tables of
 * `tablePrefix`: rows beyond the newest 10 stay while younger than 7 days by the database's clock; a
 * test ages rows by moving their `committed_at` back. Pruning removes only the oldest rows, up to
 * the first young one, so the log never has a gap.
 */
export async function changelogAgePruning (t: Test, db: Kysely<any>, tablePrefix: string): Promise<void> {
  const store = new KyselyPolicyStore({ db, tablePrefix, changelogRetention: { changes: 10, days: 7 } })
  await store.migrate()
  const { changelog } = tableNames(tablePrefix)
  const DAY = 86_400_000
  const age = async (upTo: number, days: number) => {
    await db.updateTable(changelog).set((eb) => ({ committed_at: eb('committed_at', '-', days * DAY) }))
      .where('tenant', '=', 't1').where('revision', '<=', upTo).execute()
  }
  const write = async (from: number, to: number) => {
    for (let i = from; i < to; i++) await store.write('t1', { op: 'create-group', group: `g${i}` }, ORIGIN)
  }
  const oldest = async () => (await store.changes('t1', 0, 1)).oldestRevision

  await write(0, 64)
  t.equal(await oldest(), 1, 'at the 64th revision all are young: nothing pruned')
  await write(64, 128)
  t.equal(await oldest(), 1, 'still nothing at the 128th')

  // Rows 1–20 as an instance of the previous version writes them (no committed_at: counted old), 21–40 aged.
  await db.updateTable(changelog).set({ committed_at: null }).where('tenant', '=', 't1').where('revision', '<=', 20).execute()
  await age(40, 8)
  await write(128, 192)
  t.equal(await oldest(), 41, 'rows older than 7 days (or of unknown age) and beyond the newest 10 pruned; the young kept')
  t.equal(await store.changesSince('t1', 39), null)
  t.equal((await store.changesSince('t1', 40))?.length, 152, 'catch-up reads from the oldest kept')

  // A young row amid old ones (a clock set back): pruning stops at it, leaving no gap.
  await age(100, 8)
  await db.updateTable(changelog).set((eb) => ({ committed_at: eb('committed_at', '+', 8 * DAY) })).where('tenant', '=', 't1').where('revision', '=', 70).execute()
  await write(192, 256)
  t.equal(await oldest(), 70, 'the oldest rows up to the first young one')
  const revisions = (await store.changes('t1', 0, 1000)).entries.map((entry) => entry.revision)
  t.strictSame(revisions, Array.from({ length: 256 - 69 }, (_, i) => 70 + i), 'no gap')

  // Everything old: the newest 10 stay whatever their age.
  await write(256, 319)
  await age(319, 30)
  await write(319, 320)
  t.equal(await oldest(), 311, 'the newest 10 are kept whatever their age')
  await db.updateTable(changelog).set({ committed_at: null }).where('tenant', '=', 't1').where('revision', '=', 315).execute()
  const { created_at: createdAt } = await db.selectFrom(changelog).select('created_at').where('tenant', '=', 't1').where('revision', '=', 315).executeTakeFirstOrThrow()
  t.equal((await store.changes('t1', 314, 1)).entries[0].committedAt, Number(createdAt), 'a row without committed_at shows its created_at')
  t.equal((await store.snapshot('t1')).groups.length, 320, 'pruning touches the log only')
}

/**
 * A database at migration 0004 with changelog rows: `0005-audit` gives them `committed_at` =
 * `created_at` (the writing instance's clock) and no actor; writes after it record both.
 */
export async function upgradeAddsAuditColumns (t: Test, db: Kysely<any>, tablePrefix: string): Promise<void> {
  const tables = tableNames(tablePrefix)
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => storeMigrations(tables, dialectOf(db)) },
    migrationTableName: tables.migrations,
    migrationLockTableName: tables.migrationsLock
  })
  const { error } = await migrator.migrateTo('0004-batch-changes')
  if (error !== undefined) throw error
  const createdAt = 1_700_000_000_123
  await db.insertInto(tables.tenants).values({ tenant: 't1', revision: 2 }).execute()
  await db.insertInto(tables.groups).values({ tenant: 't1', name: 'g' }).execute()
  await db.insertInto(tables.changelog).values([
    { tenant: 't1', revision: 1, op: 'create-group', group_name: 'g', origin: 'old-server', created_at: createdAt },
    { tenant: 't1', revision: 2, op: 'batch', group_name: '', changes: JSON.stringify([{ op: 'create-group', group: 'h' }, { op: 'delete-group', group: 'h' }]), origin: 'old-server', created_at: createdAt + 1 }
  ]).execute()

  const store = new KyselyPolicyStore({ db, tablePrefix })
  await store.migrate()
  await store.write('t1', { op: 'assign-user', group: 'g', user: 'bob' }, ORIGIN, { actor: 'alice' })
  const { entries } = await store.changes('t1', 0, 10)
  t.strictSame(entries.slice(0, 2), [
    { revision: 1, change: { op: 'create-group', group: 'g' }, origin: 'old-server', actor: null, committedAt: createdAt },
    { revision: 2, change: { op: 'batch', changes: [{ op: 'create-group', group: 'h' }, { op: 'delete-group', group: 'h' }] }, origin: 'old-server', actor: null, committedAt: createdAt + 1 }
  ], 'rows written before: their created_at, no actor')
  t.match(entries[2], { revision: 3, origin: ORIGIN, actor: 'alice' }, 'a write after: its actor')
  t.ok(entries[2].committedAt > createdAt, 'and the database\'s time')
}

/**
 * Migrating a database of the previous version (0005) adds the tenants' deleted flag: every tenant
 * written before exists (listed, exportable), and a deletion then works on it.
 */
export async function upgradeAddsDeletedFlag (t: Test, db: Kysely<any>, tablePrefix: string): Promise<void> {
  const tables = tableNames(tablePrefix)
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => storeMigrations(tables, dialectOf(db)) },
    migrationTableName: tables.migrations,
    migrationLockTableName: tables.migrationsLock
  })
  const { error } = await migrator.migrateTo('0005-audit')
  if (error !== undefined) throw error
  await db.insertInto(tables.tenants).values([{ tenant: 't1', revision: 2 }, { tenant: 't2', revision: 0 }]).execute()
  await db.insertInto(tables.groups).values({ tenant: 't1', name: 'g' }).execute()

  const store = new KyselyPolicyStore({ db, tablePrefix })
  await store.migrate()
  t.strictSame(await store.tenants(undefined, 10), [{ tenant: 't1', revision: 2 }], 'a tenant written before is listed; one never written is not')
  t.match(await store.snapshot('t1'), { revision: 2, exists: true })
  t.match(await store.deleteTenant('t1', ORIGIN), { revision: 3, changed: true, changes: [{ op: 'delete-group', group: 'g' }] })
  t.strictSame(await store.tenants(undefined, 10), [])
}
