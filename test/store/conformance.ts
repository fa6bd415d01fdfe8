/**
 * The conformance suite every PolicyStore must pass, whatever its database.
 */
import type { Test } from 'tap'
import type { Change, LoggedChange, WriteResult } from '../../lib/model.js'
import type { PolicyStore } from '../../lib/store/index.js'

/** A store on fresh, empty, not yet migrated tables, and how to get rid of them. */
export interface StoreUnderTest {
  store: PolicyStore
  cleanup (): Promise<void>
}

const ORIGIN = 'conformance'
const GROUP_NOT_FOUND = { code: 'FST_POLICY_CACHE_GROUP_NOT_FOUND' }

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

/** Writes with a fixed origin. */
function writer (store: PolicyStore) {
  return async (tenant: string, change: Change): Promise<WriteResult> => await store.write(tenant, change, ORIGIN)
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
    t.strictSame(await store.snapshot('t1'), { revision: 0, groups: [] })
    t.strictSame(await store.changesSince('t1', 0), [])
    t.equal(await store.changesSince('t1', 1), null, 'a revision ahead of the database')
    t.strictSame(await store.revisions(['t1']), new Map([['t1', 0]]))
  })

  test('create-group and delete-group', async (t, store) => {
    const write = writer(store)
    t.strictSame(await write('t1', { op: 'create-group', group: 'g' }), { revision: 1, changed: true })
    t.strictSame(await write('t1', { op: 'create-group', group: 'g' }), { revision: 1, changed: false }, 'already there')
    t.strictSame(await write('t1', { op: 'delete-group', group: 'g' }), { revision: 2, changed: true })
    t.strictSame(await write('t1', { op: 'delete-group', group: 'g' }), { revision: 2, changed: false }, 'already gone')
    t.strictSame(await write('t1', { op: 'delete-group', group: 'never' }), { revision: 2, changed: false }, 'never existed')
    t.strictSame(await write('t1', { op: 'create-group', group: 'g' }), { revision: 3, changed: true }, 'created again')
    t.strictSame(await store.snapshot('t1'), { revision: 3, groups: [{ name: 'g', permissions: [], users: [] }] })
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
    t.strictSame(await store.snapshot('t1'), { revision: 4, groups: [{ name: 'g', permissions: ['docs:*'], users: [] }] })
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
    t.strictSame(await store.snapshot('t1'), { revision: 4, groups: [{ name: 'g', permissions: [], users: ['bob@example.com'] }] })
  })

  test('add-permission and assign-user on a missing group throw GroupNotFound and write nothing', async (t, store) => {
    const write = writer(store)
    await t.rejects(write('t1', { op: 'add-permission', group: 'g', permission: 'docs:read' }), GROUP_NOT_FOUND)
    await t.rejects(write('t1', { op: 'assign-user', group: 'g', user: 'alice' }), GROUP_NOT_FOUND)
    t.strictSame(await store.revisions(['t1']), new Map([['t1', 0]]))
    t.strictSame(await store.changesSince('t1', 0), [])
    t.strictSame(await store.snapshot('t1'), { revision: 0, groups: [] })

    await write('t1', { op: 'create-group', group: 'other' })
    await t.rejects(write('t1', { op: 'assign-user', group: 'g', user: 'alice' }), GROUP_NOT_FOUND)
    await t.rejects(write('t1', { op: 'add-permission', group: 'g', permission: 'docs:read' }), GROUP_NOT_FOUND)
    t.strictSame(await store.revisions(['t1']), new Map([['t1', 1]]))
    t.strictSame(await store.changesSince('t1', 1), [])
    t.strictSame(await store.snapshot('t1'), { revision: 1, groups: [{ name: 'other', permissions: [], users: [] }] })
  })

  test('delete-group removes its grants and memberships, and only its own', async (t, store) => {
    const write = writer(store)
    for (const group of ['g', 'h']) {
      await write('t1', { op: 'create-group', group })
      await write('t1', { op: 'add-permission', group, permission: 'docs:read' })
      await write('t1', { op: 'assign-user', group, user: 'alice' })
    }
    t.strictSame(await write('t1', { op: 'delete-group', group: 'g' }), { revision: 7, changed: true })
    t.strictSame(await store.snapshot('t1'), { revision: 7, groups: [{ name: 'h', permissions: ['docs:read'], users: ['alice'] }] })
    await write('t1', { op: 'create-group', group: 'g' })
    t.strictSame((await store.snapshot('t1')).groups[0], { name: 'g', permissions: [], users: [] }, 'a recreated group starts empty')
  })

  test('tenants are isolated', async (t, store) => {
    const write = writer(store)
    await write('t1', { op: 'create-group', group: 'g' })
    await write('t1', { op: 'add-permission', group: 'g', permission: 'a' })
    t.strictSame(await write('t2', { op: 'create-group', group: 'g' }), { revision: 1, changed: true }, 'same group name, other tenant')
    await write('t2', { op: 'assign-user', group: 'g', user: 'bob' })
    await write('t1', { op: 'delete-group', group: 'g' })
    await t.rejects(write('t1', { op: 'assign-user', group: 'g', user: 'bob' }), GROUP_NOT_FOUND)
    t.strictSame(await store.snapshot('t1'), { revision: 3, groups: [] })
    t.strictSame(await store.snapshot('t2'), { revision: 2, groups: [{ name: 'g', permissions: [], users: ['bob'] }] })
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
    t.strictSame(await store.snapshot('t1'), {
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
    t.strictSame(await store.revisions(['t1', 't2', 'missing', 't1']), new Map([['t1', 2], ['t2', 1], ['missing', 0]]))
    t.strictSame(await store.revisions([]), new Map())

    const many = Array.from({ length: 1200 }, (_, i) => `x${i}`)
    const revisions = await store.revisions([...many, 't2'])
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
    t.strictSame(await store.revisions(['acme', 'Acme']), new Map([['acme', 6], ['Acme', 0]]))
    t.strictSame(await store.snapshot('Acme'), { revision: 0, groups: [] })
    t.strictSame(await store.snapshot('acme'), {
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
    t.strictSame(await store.write('t1', { op: 'create-group', group: 'g' }, ORIGIN), { revision: 1, changed: true })
  }, false)
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
}
