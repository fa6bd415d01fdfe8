import fc from 'fast-check'
import { test } from 'tap'
import { TenantState } from '../../lib/cache/tenant-state.js'
import { digestOf } from '../../lib/digest.js'
import type { GroupData } from '../../lib/model.js'

/** A state built from a snapshot of `groups` at `revision`, with the digest of those groups. */
function stateOf (revision: number, groups: GroupData[]): TenantState {
  return new TenantState({ revision, groups, digest: digestOf(groups) })
}

function tenant () {
  return stateOf(3, [
    { name: 'editors', permissions: ['documents:*', 'reports:read'], users: ['alice', 'bob'] },
    { name: 'admins', permissions: ['*'], users: ['root'] },
    { name: 'deep', permissions: ['a:b:*'], users: ['carol'] }
  ])
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
  t.same(s.userView('alice'), { groups: [], permissions: [], grants: [] })
  t.same(s.view().map((g) => g.name), ['admins', 'deep'])
  s.apply({ op: 'create-group', group: 'editors' })
  t.same(s.view().find((g) => g.name === 'editors'), { name: 'editors', permissions: [], users: [], includes: [] }, 'a re-created group starts empty')
})

test('views are sorted plain data', async (t) => {
  const s = tenant()
  t.same(s.view()[1], { name: 'deep', permissions: ['a:b:*'], users: ['carol'], includes: [] })
  t.same(s.userView('alice'), {
    groups: ['editors'],
    permissions: ['documents:*', 'reports:read'],
    grants: [{ permission: 'documents:*', chain: ['editors'] }, { permission: 'reports:read', chain: ['editors'] }]
  })
  s.apply({ op: 'assign-user', group: 'admins', user: 'alice' })
  t.same(s.userView('alice').permissions, ['*', 'documents:*', 'reports:read'])
  t.same(s.userView('alice').groups, ['admins', 'editors'])
})

test('the digest follows every change, no-ops included, and digestAfter predicts it without applying', async (t) => {
  const s = tenant()
  const changes = [
    { op: 'create-group', group: 'editors' },
    { op: 'create-group', group: 'new' },
    { op: 'add-permission', group: 'new', permission: 'x:*' },
    { op: 'add-permission', group: 'new', permission: 'x:*' },
    { op: 'add-permission', group: 'implicit', permission: '*' },
    { op: 'assign-user', group: 'other', user: 'dora' },
    { op: 'assign-user', group: 'editors', user: 'alice' },
    { op: 'remove-permission', group: 'editors', permission: 'documents:*' },
    { op: 'remove-permission', group: 'editors', permission: 'absent' },
    { op: 'unassign-user', group: 'editors', user: 'bob' },
    { op: 'unassign-user', group: 'missing', user: 'bob' },
    { op: 'include-group', group: 'admins', includes: 'editors' },
    { op: 'include-group', group: 'admins', includes: 'editors' },
    { op: 'include-group', group: 'editors', includes: 'admins' },
    { op: 'include-group', group: 'editors', includes: 'editors' },
    { op: 'include-group', group: 'fresh', includes: 'fresh' },
    { op: 'include-group', group: 'top', includes: 'bottom' },
    { op: 'include-group', group: 'new', includes: 'other' },
    { op: 'exclude-group', group: 'new', includes: 'other' },
    { op: 'exclude-group', group: 'new', includes: 'other' },
    { op: 'exclude-group', group: 'ghost', includes: 'other' },
    { op: 'include-group', group: 'deep', includes: 'admins' },
    { op: 'delete-group', group: 'admins' },
    { op: 'delete-group', group: 'admins' }
  ] as const
  for (const change of changes) {
    const before = s.view()
    const predicted = s.digestAfter(change)
    t.same(s.view(), before, 'digestAfter changes nothing')
    s.apply(change)
    t.equal(s.digest, predicted, `${change.op} ${change.group}: as predicted`)
    t.equal(s.digest, digestOf(s.view()), `${change.op} ${change.group}: the digest of the contents`)
  }
})

test('a group with more wildcard grants than the scan limit (8) matches from the first segment on', async (t) => {
  const wildcards = ['s1:*', 's2:*', 's3:*', 's4:*', 's5:*', 's6:*', 's7:*', 's8:*', 'deep:er:*']
  for (const count of [8, 9]) {
    const grants = count === 8 ? wildcards.slice(1) : wildcards
    const s = stateOf(1, [{ name: 'g', permissions: grants, users: ['u'] }])
    t.ok(s.check('u', 's2:read'), `${count} wildcards: a one-segment prefix`)
    t.ok(s.check('u', 's8:a:b'), `${count} wildcards: deeper segments`)
    t.ok(s.check('u', 'deep:er:x'), `${count} wildcards: a two-segment prefix`)
    t.notOk(s.check('u', 's2'), `${count} wildcards: not the prefix itself`)
    t.notOk(s.check('u', 'deep:x'), `${count} wildcards: not half a prefix`)
    t.notOk(s.check('u', 's22:read'), `${count} wildcards: per segment`)
    t.notOk(s.check('u', 'x:s2:read'), `${count} wildcards: from the start only`)
  }
})

test('size counts the groups; a user listed twice in a snapshot is one membership', async (t) => {
  const groups = [{ name: 'g', permissions: ['p'], users: ['a', 'a'] }, { name: 'h', permissions: [], users: ['a'] }]
  const s = new TenantState({ revision: 1, groups, digest: digestOf(groups) })
  t.equal(s.size, 2)
  t.same(s.userView('a').groups, ['g', 'h'])
  s.apply({ op: 'unassign-user', group: 'g', user: 'a' })
  t.same(s.userView('a').groups, ['h'])
  t.notOk(s.check('a', 'p'), 'one unassignment removes it')
  s.apply({ op: 'delete-group', group: 'h' })
  s.apply({ op: 'create-group', group: 'i' })
  t.equal(s.size, 2)
  t.equal(s.revision, 1, 'apply leaves the revision alone')
})

test('views list grants sorted, whatever order they were granted in', async (t) => {
  const s = stateOf(1, [
    { name: 'g', permissions: ['z:read', 'm:*', 'a:write', '*'], users: ['u'] },
    { name: 'h', permissions: ['b:read'], users: ['u'] }
  ])
  t.same(s.view().find((group) => group.name === 'g')?.permissions, ['*', 'a:write', 'm:*', 'z:read'])
  t.same(s.userView('u').permissions, ['*', 'a:write', 'b:read', 'm:*', 'z:read'])
})

test('a user in hundreds of groups: the record outgrows the array many times and keeps every group', async (t) => {
  const groups = Array.from({ length: 300 }, (_, i) => `g${i}`)
  const s = stateOf(1, groups.map((name, i) => ({ name, permissions: [`p${i}:read`], users: [] })))
  let revision = 1
  // One at a time: the record moves each time it is full, with twice the room, past the array's end.
  for (const group of groups) s.applyAll([{ revision: ++revision, op: 'assign-user', group, user: 'u' }])
  t.same(groups.filter((_, i) => !s.check('u', `p${i}:read`)), [], 'every group is in the record')
  t.notOk(s.check('u', 'p300:read'))
  s.applyAll(groups.filter((_, i) => i % 2 === 0).map((group) => ({ revision: ++revision, op: 'unassign-user' as const, group, user: 'u' })))
  t.same(groups.filter((_, i) => s.check('u', `p${i}:read`) !== (i % 2 === 1)), [], 'half left: exactly the other half answers')
})

test('a permission whose first segment reads "undefined" is not taken for a wildcard match', async (t) => {
  // The linear scan of a few wildcard grants must stop at the last one: past it, startsWith(undefined)
  // would test the text "undefined".
  const s = stateOf(1, [{ name: 'g', permissions: ['documents:*'], users: ['u'] }, { name: 'h', permissions: ['users:*'], users: ['v'] }])
  t.notOk(s.check('u', 'undefined:read'))
  t.ok(s.check('u', 'documents:read'))
  // A wildcard beginning with the same letter, so the first-character filter lets the scan run.
  t.notOk(s.check('v', 'undefined:read'))
  t.ok(s.check('v', 'users:read'))
})

// The dear tests last — property tests against a naive reference, then churn: a mutant that an example
// above catches is caught in milliseconds (Stryker stops a file at its first failure).
test('a batch entry applies its changes in order at one revision; digestAfter predicts any batch, lenient changes included', async (t) => {
  const group = fc.constantFrom('editors', 'admins', 'new')
  const change = fc.oneof(
    fc.record({ op: fc.constantFrom('create-group' as const, 'delete-group' as const), group }),
    fc.record({ op: fc.constantFrom('add-permission' as const, 'remove-permission' as const), group, permission: fc.constantFrom('documents:*', 'x:*', '*', 'a') }),
    fc.record({ op: fc.constantFrom('assign-user' as const, 'unassign-user' as const), group, user: fc.constantFrom('alice', 'bob', 'dora') }),
    // Inclusions in one direction only (admins → editors → new), and a group naming itself: never a
    // cycle, as the store writes them (digestAfter does not predict a longer cycle, which never comes).
    fc.tuple(fc.constantFrom('include-group' as const, 'exclude-group' as const), fc.constantFrom(['admins', 'editors'], ['admins', 'new'], ['editors', 'new'], ['new', 'new']))
      .map(([op, [from, to]]) => ({ op, group: from, includes: to }))
  )
  let checked = 0
  await fc.assert(fc.property(fc.array(change, { maxLength: 12 }), (changes) => {
    const s = tenant()
    const one = tenant()
    const before = s.view()
    const predicted = s.digestAfter({ op: 'batch', changes })
    if (JSON.stringify(s.view()) !== JSON.stringify(before)) return false
    if (!s.applyAll([{ op: 'batch', changes, revision: s.revision + 1 }])) return false
    for (const c of changes) one.apply(c)
    checked++
    return s.digest === predicted && s.digest === one.digest && s.digest === digestOf(s.view()) && JSON.stringify(s.view()) === JSON.stringify(one.view())
  }), { numRuns: 300, seed: 13 })
  t.equal(checked, 300)
  const s = tenant()
  const revision = s.revision
  t.ok(s.applyAll([{ op: 'batch', changes: [{ op: 'create-group', group: 'x' }, { op: 'assign-user', group: 'x', user: 'zoe' }], revision: revision + 1 }]))
  t.equal(s.revision, revision + 1, 'one revision for the batch')
  t.equal(s.check('zoe', 'anything'), false)
})

/** DESIGN §2's matching rule, written the naive way: the reference the grant index must agree with. */
function grantMatches (grant: string, permission: string): boolean {
  return grant === '*' || grant === permission || (grant.endsWith(':*') && permission.startsWith(grant.slice(0, -1)))
}

test('grant matching agrees with the naive rule on both sides of the scan limit, while grants come and go', async (t) => {
  const segment = fc.constantFrom('a', 'b', 'c', 'ab', 'b.c')
  const permission = fc.array(segment, { minLength: 1, maxLength: 4 }).map((segments) => segments.join(':'))
  const wildcard = fc.array(segment, { minLength: 1, maxLength: 3 }).map((segments) => `${segments.join(':')}:*`)
  const agrees = (wildcards: fc.Arbitrary<string[]>) => fc.property(
    wildcards,
    fc.uniqueArray(permission, { maxLength: 5 }),
    fc.boolean(),
    fc.array(permission, { minLength: 1, maxLength: 40 }),
    (prefixes, exact, star, checks) => {
      const grants = [...prefixes, ...exact, ...(star ? ['*'] : [])]
      const state = stateOf(1, [{ name: 'g', permissions: grants, users: ['u'] }])
      const held = new Set(grants)
      const compare = (when: string) => {
        for (const checked of checks) {
          const expected = [...held].some((grant) => grantMatches(grant, checked))
          if (state.check('u', checked) !== expected) throw new Error(`${when}: ${checked} with [${[...held].join(', ')}] should be ${expected}`)
        }
      }
      compare('from the snapshot')
      // Down to no wildcard one removal at a time, then up again: the index crosses the limit both ways.
      for (const prefix of prefixes) {
        state.apply({ op: 'remove-permission', group: 'g', permission: prefix })
        held.delete(prefix)
        compare(`after removing ${prefix}`)
      }
      for (const prefix of prefixes) {
        state.apply({ op: 'add-permission', group: 'g', permission: prefix })
        held.add(prefix)
        compare(`after adding ${prefix}`)
      }
    }
  )
  for (const [side, wildcards] of [
    ['at most 8 wildcard grants', fc.uniqueArray(wildcard, { maxLength: 8 })],
    ['9 to 24 wildcard grants', fc.uniqueArray(wildcard, { minLength: 9, maxLength: 24 })]
  ] as const) {
    const result = fc.check(agrees(wildcards), { numRuns: 200 })
    t.notOk(result.failed, `${side}: ${fc.defaultReportMessage(result) ?? `${result.numRuns} runs agree`}`)
  }
})

test('the user index stays exact through membership churn (records moved, grown, compacted)', async (t) => {
  // Starts from a snapshot, then thousands of assigns, unassigns and group deletions and re-creations:
  // enough to outgrow records, leave most of the index as garbage and compact it several times.
  const groups = ['g0', 'g1', 'g2', 'g3', 'g4', 'g5']
  const users = Array.from({ length: 40 }, (_, i) => `u${i}`)
  const model = new Map<string, Set<string>>(groups.map((g) => [g, new Set(users.filter((_, i) => i % groups.length === groups.indexOf(g)))]))
  const s = stateOf(0, groups.map((g) => ({ name: g, permissions: [`p:${g}`], users: [...model.get(g)!] })))
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
  t.equal(s.digest, digestOf(s.view()), 'the digest, updated by every change, is that of the contents')
})

test('churn does not grow the membership records: the space users leave is reclaimed', async (t) => {
  const groups = ['g', 'h', 'k', 'l', 'm', 'n']
  const s = stateOf(1, groups.map((name, i) => ({ name, permissions: [`p${i}:read`], users: [] })))
  let revision = 1
  for (let round = 0; round < 400; round++) {
    // New users each round, each joining six groups: a record (room for two) moves twice as it
    // outgrows its room; leaving every group frees it and forgets the user.
    const users = Array.from({ length: 50 }, (_, i) => `user-${round}-${i}`)
    s.applyAll(users.flatMap((user) => groups.map((group) => ({ revision: ++revision, op: 'assign-user' as const, group, user }))))
    s.applyAll(users.flatMap((user) => groups.map((group) => ({ revision: ++revision, op: 'unassign-user' as const, group, user }))))
  }
  // 1 168 slots as written; counting a moved record's old room wrongly, or keeping users who left, grows it past 300 000.
  t.ok(s.recordSlots <= 4096, `${s.recordSlots} slots after 120 000 memberships came and went (50 users at a time)`)
  s.applyAll([{ revision: ++revision, op: 'assign-user', group: 'h', user: 'user-7' }])
  t.ok(s.check('user-7', 'p1:read'))
  t.notOk(s.check('user-7', 'p0:read'))
  t.notOk(s.check('user-399-8', 'p1:read'))
})
