import { test } from 'tap'
import { TenantState } from '../../lib/cache/tenant-state.js'

function tenant () {
  return new TenantState({
    revision: 3,
    groups: [
      { name: 'editors', permissions: ['documents:*', 'reports:read'], users: ['alice', 'bob'] },
      { name: 'admins', permissions: ['*'], users: ['root'] },
      { name: 'deep', permissions: ['a:b:*'], users: ['carol'] }
    ]
  })
}

test('exact and wildcard grants match as the policy model says', async (t) => {
  const s = tenant()
  t.ok(s.check('alice', 'documents:read'))
  t.ok(s.check('alice', 'documents:x:y'), 'a wildcard covers deeper segments')
  t.notOk(s.check('alice', 'documents'), '`documents:*` does not match `documents`')
  t.notOk(s.check('alice', 'documentsX:read'), 'prefix match is per segment')
  t.ok(s.check('alice', 'reports:read'))
  t.notOk(s.check('alice', 'reports:write'))
  t.ok(s.check('root', 'anything:at:all'), '`*` matches everything')
  t.ok(s.check('carol', 'a:b:c'))
  t.notOk(s.check('carol', 'a:c'))
  t.notOk(s.check('carol', 'a:b'))
  t.notOk(s.check('nobody', 'documents:read'))
  t.notOk(s.check('Alice', 'documents:read'), 'identifiers are case-sensitive')
})

test('changes apply in order, idempotently, and a gap is refused', async (t) => {
  const s = tenant()
  t.ok(s.applyAll([
    { revision: 2, op: 'unassign-user', group: 'editors', user: 'alice' }, // old: skipped
    { revision: 4, op: 'remove-permission', group: 'editors', permission: 'documents:*' },
    { revision: 5, op: 'assign-user', group: 'admins', user: 'bob' }
  ]))
  t.equal(s.revision, 5)
  t.ok(s.check('alice', 'reports:read'), 'the skipped old change did nothing')
  t.notOk(s.check('alice', 'documents:read'), 'revocation applied')
  t.ok(s.check('bob', 'x:y'))
  t.notOk(s.applyAll([{ revision: 7, op: 'create-group', group: 'late' }]), 'revision 6 missing')
  t.equal(s.revision, 5, 'nothing applied past the gap')
})

test('delete-group removes its grants and memberships', async (t) => {
  const s = tenant()
  s.apply({ op: 'delete-group', group: 'editors' })
  t.notOk(s.check('alice', 'documents:read'))
  t.same(s.userView('alice'), { groups: [], permissions: [] })
  t.same(s.view().map((g) => g.name), ['admins', 'deep'])
  s.apply({ op: 'create-group', group: 'editors' })
  t.same(s.view().find((g) => g.name === 'editors'), { name: 'editors', permissions: [], users: [] }, 'a re-created group starts empty')
})

test('views are sorted plain data', async (t) => {
  const s = tenant()
  t.same(s.view()[1], { name: 'deep', permissions: ['a:b:*'], users: ['carol'] })
  t.same(s.userView('alice'), { groups: ['editors'], permissions: ['documents:*', 'reports:read'] })
  s.apply({ op: 'assign-user', group: 'admins', user: 'alice' })
  t.same(s.userView('alice'), { groups: ['admins', 'editors'], permissions: ['*', 'documents:*', 'reports:read'] })
})

test('the user index stays exact through membership churn (records moved, grown, compacted)', async (t) => {
  // Starts from a snapshot, then thousands of assigns, unassigns and group deletions and re-creations:
  // enough to outgrow records, leave most of the index as garbage and compact it several times.
  const groups = ['g0', 'g1', 'g2', 'g3', 'g4', 'g5']
  const users = Array.from({ length: 40 }, (_, i) => `u${i}`)
  const model = new Map<string, Set<string>>(groups.map((g) => [g, new Set(users.filter((_, i) => i % groups.length === groups.indexOf(g)))]))
  const s = new TenantState({ revision: 0, groups: groups.map((g) => ({ name: g, permissions: [`p:${g}`], users: [...model.get(g)!] })) })
  let seed = 12345
  const next = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n }
  let mismatches = 0
  for (let step = 0; step < 5000; step++) {
    const group = groups[next(groups.length)]
    const user = users[next(users.length)]
    const roll = next(100)
    if (roll < 55) {
      s.apply({ op: 'assign-user', group, user })
      model.get(group)!.add(user)
    } else if (roll < 97) {
      s.apply({ op: 'unassign-user', group, user })
      model.get(group)!.delete(user)
    } else {
      s.apply({ op: 'delete-group', group })
      model.delete(group)
      s.apply({ op: 'add-permission', group, permission: `p:${group}` })
      model.set(group, new Set())
    }
    for (const u of users) {
      const expected = groups.filter((g) => model.get(g)!.has(u))
      if (JSON.stringify(s.userView(u).groups) !== JSON.stringify(expected)) mismatches++
      for (const g of groups) if (s.check(u, `p:${g}`) !== expected.includes(g)) mismatches++
    }
  }
  t.equal(mismatches, 0)
  t.same(s.view().map((g) => ({ name: g.name, users: g.users })), groups.map((g) => ({ name: g, users: [...model.get(g)!].sort() })))
})
