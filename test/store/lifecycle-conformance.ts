/**
 * The tenant lifecycle part of the PolicyStore conformance suite (`storeConformance` runs it on every
 * store): the tenant listing, `deleteTenant` and `importTenant`, and a seeded property — an import
 * leaves exactly the document, and a cache following the changelog agrees.
 */
import fc from 'fast-check'
import type { Test } from 'tap'
import { TenantState } from '../../lib/cache/tenant-state.js'
import { digestOf, EMPTY_DIGEST } from '../../lib/digest.js'
import type { GroupData } from '../../lib/model.js'
import { KyselyPolicyStore, type PolicyStore } from '../../lib/store/index.js'

const ORIGIN = 'conformance'
const TENANT_NOT_FOUND = { code: 'FST_POLICY_CACHE_TENANT_NOT_FOUND', statusCode: 404 }
const CONFLICT = { code: 'FST_POLICY_CACHE_REVISION_CONFLICT', currentRevision: 2 }

const POLICY: GroupData[] = [
  { name: 'admins', permissions: ['*'], users: ['carol'], includes: ['editors'] },
  { name: 'editors', permissions: ['docs:*', 'docs:read'], users: ['alice', 'bob'] }
]

/** The groups with `includes` only where a group includes some (absent and empty mean the same: none). */
function plain (groups: readonly GroupData[]): GroupData[] {
  return groups.map(({ includes, ...group }) => includes === undefined || includes.length === 0 ? group : { ...group, includes })
}

/** The snapshot, once its digest is checked to be that of its groups (`plain`). */
async function snapshotOf (store: PolicyStore, tenant: string) {
  const snapshot = await store.snapshot(tenant)
  if (snapshot.digest !== digestOf(snapshot.groups)) throw new Error(`snapshot digest ${snapshot.digest} is not the digest of its groups`)
  return { ...snapshot, groups: plain(snapshot.groups) }
}

/** Every tenant `tenants` lists, walked `limit` at a time. */
async function listed (store: PolicyStore, limit: number): Promise<Array<[string, number]>> {
  const all: Array<[string, number]> = []
  let after: string | undefined
  for (;;) {
    const page = await store.tenants(after, limit)
    all.push(...page.map(({ tenant, revision }): [string, number] => [tenant, revision]))
    if (page.length < limit) return all
    after = page[page.length - 1].tenant
  }
}

/** Registers the lifecycle tests through `test` (the suite's: a fresh migrated store each). */
export function lifecycleConformance (test: (title: string, fn: (t: Test, store: PolicyStore) => Promise<void>) => void): void {
  test('tenants lists the tenants written, sorted, a page at a time', async (t, store) => {
    t.strictSame(await store.tenants(undefined, 10), [], 'none yet')
    for (const tenant of ['t3', 't1', 'a', 't2']) await store.write(tenant, { op: 'create-group', group: 'g' }, ORIGIN)
    await store.write('t1', { op: 'create-group', group: 'h' }, ORIGIN)
    // A write that changed nothing on a tenant never written leaves it unwritten (revision 0).
    await store.write('zero', { op: 'delete-group', group: 'g' }, ORIGIN)
    t.strictSame(await store.tenants(undefined, 10), [{ tenant: 'a', revision: 1 }, { tenant: 't1', revision: 2 }, { tenant: 't2', revision: 1 }, { tenant: 't3', revision: 1 }])
    t.strictSame(await store.tenants('a', 2), [{ tenant: 't1', revision: 2 }, { tenant: 't2', revision: 1 }], 'after (exclusive) and limit')
    t.strictSame(await store.tenants('t3', 2), [], 'after the last')
    t.strictSame(await listed(store, 1), [['a', 1], ['t1', 2], ['t2', 1], ['t3', 1]], 'walked one at a time')
  })

  test('deleteTenant: its groups go at one revision, the tenant leaves the listing, its revision stays', async (t, store) => {
    await t.rejects(store.deleteTenant('t1', ORIGIN), TENANT_NOT_FOUND, 'never written')
    await store.write('t1', { op: 'create-group', group: 'editors' }, ORIGIN)
    await store.write('t1', [
      { op: 'add-permission', group: 'editors', permission: 'docs:read' },
      { op: 'assign-user', group: 'editors', user: 'alice' },
      { op: 'create-group', group: 'admins' }
    ], ORIGIN)
    await store.write('t2', { op: 'create-group', group: 'g' }, ORIGIN)
    await t.rejects(store.deleteTenant('t1', ORIGIN, { ifRevision: 1 }), CONFLICT, 'ifRevision')
    t.equal((await store.snapshot('t1')).groups.length, 2, 'a refused deletion deletes nothing')

    const result = await store.deleteTenant('t1', ORIGIN, { actor: 'dora' })
    t.strictSame(result, {
      revision: 3,
      changed: true,
      digest: EMPTY_DIGEST,
      changes: [{ op: 'delete-group', group: 'admins' }, { op: 'delete-group', group: 'editors' }]
    })
    t.strictSame(await snapshotOf(store, 't1'), { revision: 3, groups: [], digest: EMPTY_DIGEST, exists: false }, 'empty, revision kept')
    t.strictSame(await store.changesSince('t1', 2), [{ revision: 3, op: 'batch', changes: result.changes }], 'one changelog entry holding the difference')
    t.match((await store.changes('t1', 2, 10)).entries, [{ revision: 3, actor: 'dora', origin: ORIGIN }], 'the audit feed names who deleted it')
    t.strictSame((await store.revisions(['t1'])).get('t1'), { revision: 3, digest: EMPTY_DIGEST })
    t.strictSame(await store.tenants(undefined, 10), [{ tenant: 't2', revision: 1 }], 'no longer listed')
    t.match(await store.snapshot('t2'), { revision: 1, groups: [{ name: 'g' }], exists: true }, 'other tenants untouched')
    await t.rejects(store.deleteTenant('t1', ORIGIN), TENANT_NOT_FOUND, 'deleted already')

    t.strictSame(await store.write('t1', { op: 'create-group', group: 'editors' }, ORIGIN), { revision: 4, changed: true, digest: digestOf([{ name: 'editors', permissions: [], users: [] }]) },
      'created again: the revision goes on')
    t.match(await store.snapshot('t1'), { revision: 4, groups: [{ name: 'editors', permissions: [], users: [] }], exists: true })
    t.strictSame(await store.tenants(undefined, 10), [{ tenant: 't1', revision: 4 }, { tenant: 't2', revision: 1 }], 'listed again')
  })

  test('deleteTenant of a tenant without groups: no revision, no entry, but deleted', async (t, store) => {
    await store.write('t1', { op: 'create-group', group: 'g' }, ORIGIN)
    await store.write('t1', { op: 'delete-group', group: 'g' }, ORIGIN)
    t.strictSame(await store.deleteTenant('t1', ORIGIN), { revision: 2, changed: false, digest: EMPTY_DIGEST, changes: [] })
    t.strictSame(await store.changesSince('t1', 2), [], 'nothing logged')
    t.match(await store.snapshot('t1'), { revision: 2, exists: false })
    t.strictSame(await store.tenants(undefined, 10), [])
    await t.rejects(store.deleteTenant('t1', ORIGIN), TENANT_NOT_FOUND)
    t.match(await store.importTenant('t1', POLICY, ORIGIN), { revision: 3, changed: true }, 'an import creates it again')
    t.match(await store.snapshot('t1'), { revision: 3, exists: true })
  })

  test('importTenant replaces the policy with the document\'s, as one entry holding the difference', async (t, store) => {
    const created = await store.importTenant('t1', POLICY, ORIGIN, { ifRevision: 0, actor: 'erin' })
    t.strictSame(created, {
      revision: 1,
      changed: true,
      digest: digestOf(POLICY),
      changes: [
        { op: 'create-group', group: 'admins' },
        { op: 'add-permission', group: 'admins', permission: '*' },
        { op: 'assign-user', group: 'admins', user: 'carol' },
        { op: 'create-group', group: 'editors' },
        { op: 'add-permission', group: 'editors', permission: 'docs:*' },
        { op: 'add-permission', group: 'editors', permission: 'docs:read' },
        { op: 'assign-user', group: 'editors', user: 'alice' },
        { op: 'assign-user', group: 'editors', user: 'bob' },
        { op: 'include-group', group: 'admins', includes: 'editors' }
      ]
    }, 'a tenant never written is created, its inclusions last')
    t.strictSame(await snapshotOf(store, 't1'), { revision: 1, groups: POLICY, digest: digestOf(POLICY), exists: true })
    t.strictSame(await store.tenants(undefined, 10), [{ tenant: 't1', revision: 1 }])
    t.strictSame(await store.importTenant('t1', POLICY, ORIGIN), { revision: 1, changed: false, digest: digestOf(POLICY), changes: [] }, 'the same again: nothing')

    await t.rejects(store.importTenant('t1', [], ORIGIN, { ifRevision: 0 }), { code: 'FST_POLICY_CACHE_REVISION_CONFLICT', currentRevision: 1 })
    const next: GroupData[] = [
      { name: 'editors', permissions: ['docs:read', 'docs:write'], users: ['bob', 'dave'] },
      { name: 'viewers', permissions: [], users: [] }
    ]
    const replaced = await store.importTenant('t1', next, ORIGIN, { ifRevision: 1 })
    t.strictSame(replaced.changes, [
      { op: 'delete-group', group: 'admins' },
      { op: 'remove-permission', group: 'editors', permission: 'docs:*' },
      { op: 'add-permission', group: 'editors', permission: 'docs:write' },
      { op: 'unassign-user', group: 'editors', user: 'alice' },
      { op: 'assign-user', group: 'editors', user: 'dave' },
      { op: 'create-group', group: 'viewers' }
    ])
    t.strictSame(await snapshotOf(store, 't1'), { revision: 2, groups: next, digest: digestOf(next), exists: true })
    t.strictSame(await store.changesSince('t1', 1), [{ revision: 2, op: 'batch', changes: replaced.changes }])
    t.match((await store.changes('t1', 0, 10)).entries, [{ revision: 1, actor: 'erin' }, { revision: 2, actor: null }])

    const one = await store.importTenant('t1', [...next, { name: 'z', permissions: [], users: [] }], ORIGIN)
    t.strictSame(await store.changesSince('t1', 2), [{ revision: 3, op: 'create-group', group: 'z' }], 'one change is logged as that change')
    t.strictSame(one.changes, [{ op: 'create-group', group: 'z' }])
  })

  test('importTenant and deleteTenant run the committing hook with their result, and a rejection writes nothing', async (t, store) => {
    // A store that cannot notify may ignore the hook (PolicyStore.write): the built-in store calls it on every database.
    if (!(store instanceof KyselyPolicyStore)) return t.comment('not the built-in store: the hook is optional')
    const seen: unknown[] = []
    const imported = await store.importTenant('t1', POLICY, ORIGIN, { committing: async (_tx, result) => { seen.push(result) } })
    t.strictSame(seen, [imported], 'the hook sees what the import answers, changes included')
    const failing = async () => { throw new Error('refused') }
    await t.rejects(store.importTenant('t1', [], ORIGIN, { committing: failing }), /refused/)
    await t.rejects(store.deleteTenant('t1', ORIGIN, { committing: failing }), /refused/)
    t.strictSame((await snapshotOf(store, 't1')).groups, POLICY, 'rolled back')
    t.strictSame(await store.tenants(undefined, 10), [{ tenant: 't1', revision: 1 }])
  })

  test('property: an import leaves exactly the document, and a cache replaying the changelog holds it too', async (t, store) => {
    const name = fc.constantFrom('a', 'b', 'c', 'd')
    const group = fc.record({
      name,
      permissions: fc.uniqueArray(fc.constantFrom('*', 'docs:*', 'docs:read', 'billing:pay'), { maxLength: 3 }),
      users: fc.uniqueArray(fc.constantFrom('u1', 'u2', 'u3', 'u4'), { maxLength: 3 }),
      includes: fc.uniqueArray(name, { maxLength: 2 })
    })
    // Inclusions in either direction from one document to the next (a → b, then b → a), never a cycle within one.
    const document = fc.tuple(fc.uniqueArray(group, { selector: (g) => g.name, maxLength: 4 }), fc.boolean()).map(([groups, upwards]) =>
      groups.map((g) => ({ ...g, includes: g.includes.filter((n) => (upwards ? n > g.name : n < g.name) && groups.some((other) => other.name === n)) })))
    const sorted = (groups: GroupData[]): GroupData[] => plain(groups.map((g) => ({ name: g.name, permissions: [...g.permissions].sort(), users: [...g.users].sort(), includes: [...(g.includes ?? [])].sort() }))
      .sort((x, y) => x.name < y.name ? -1 : 1))
    let run = 0
    await fc.assert(fc.asyncProperty(fc.array(document, { minLength: 1, maxLength: 3 }), async (documents) => {
      const tenant = `p${run++}`
      const follower = new TenantState({ revision: 0, groups: [], digest: EMPTY_DIGEST })
      for (const groups of documents) {
        const { revision } = await store.importTenant(tenant, groups, ORIGIN)
        const snapshot = await snapshotOf(store, tenant)
        t.strictSame(snapshot.groups, sorted(groups), 'the tenant holds exactly the document')
        const changes = await store.changesSince(tenant, follower.revision)
        if (changes === null || !follower.applyAll(changes)) throw new Error('the changelog does not replay')
        t.equal(follower.revision, revision)
        t.strictSame(plain(follower.view()), snapshot.groups, 'a cache following the changelog holds it too')
      }
    }), { seed: 20251212, numRuns: 15 })
  })
}
