/**
 * TenantState's role hierarchy: held grants resolved on apply (diamonds, grants moving up and going,
 * groups deleted in the middle), inclusions from a snapshot, and inclusions closing a cycle ignored
 * (the store refuses them; a state never loops on one).
 */
import { test } from 'tap'
import { TenantState } from '../../lib/cache/tenant-state.js'
import { digestOf } from '../../lib/digest.js'
import type { GroupData } from '../../lib/model.js'

function stateOf (groups: GroupData[]): TenantState {
  return new TenantState({ revision: 1, groups, digest: digestOf(groups) })
}

/** top → left → bottom and top → right → bottom; `u` in top. */
const DIAMOND: GroupData[] = [
  { name: 'bottom', permissions: ['doc:read'], users: [] },
  { name: 'left', permissions: [], users: [], includes: ['bottom'] },
  { name: 'right', permissions: ['audit:*'], users: [], includes: ['bottom'] },
  { name: 'top', permissions: [], users: ['u'], includes: ['left', 'right'] }
]

test('a snapshot\'s inclusions: grants held through every path of a diamond, until the last goes', async (t) => {
  const s = stateOf(DIAMOND)
  t.ok(s.check('u', 'doc:read'))
  t.ok(s.check('u', 'audit:write'))
  s.apply({ op: 'exclude-group', group: 'left', includes: 'bottom' })
  t.ok(s.check('u', 'doc:read'), 'still through right')
  s.apply({ op: 'exclude-group', group: 'right', includes: 'bottom' })
  t.notOk(s.check('u', 'doc:read'), 'no path left')
  t.ok(s.check('u', 'audit:write'), 'right\'s own grant stays')
  s.apply({ op: 'remove-permission', group: 'right', permission: 'audit:*' })
  t.notOk(s.check('u', 'audit:write'))
  s.apply({ op: 'include-group', group: 'left', includes: 'bottom' })
  s.apply({ op: 'add-permission', group: 'bottom', permission: 'reports:read' })
  t.ok(s.check('u', 'reports:read'), 'a grant added at the bottom reaches the top')
  s.apply({ op: 'remove-permission', group: 'bottom', permission: 'reports:read' })
  t.notOk(s.check('u', 'reports:read'), 'and goes')
  t.equal(s.digest, digestOf(s.view()))
})

test('deleting a group in the middle cuts what came through it, both ways', async (t) => {
  const s = stateOf(DIAMOND)
  s.apply({ op: 'delete-group', group: 'left' })
  t.ok(s.check('u', 'doc:read'), 'through right still')
  s.apply({ op: 'delete-group', group: 'right' })
  t.notOk(s.check('u', 'doc:read'))
  t.same(s.view().map((g) => [g.name, g.includes]), [['bottom', []], ['top', []]])
  s.apply({ op: 'create-group', group: 'right' })
  s.apply({ op: 'add-permission', group: 'right', permission: 'x' })
  t.notOk(s.check('u', 'x'), 'a recreated group is included by no one')
  t.equal(s.digest, digestOf(s.view()))
})

test('an inclusion closing a cycle is ignored, digest and prediction alike; a snapshot naming an unknown group includes nothing', async (t) => {
  const s = stateOf(DIAMOND)
  const before = s.digest
  for (const change of [{ op: 'include-group', group: 'bottom', includes: 'top' }, { op: 'include-group', group: 'left', includes: 'left' }] as const) {
    t.equal(s.digestAfter(change), before, `${change.group} → ${change.includes}: predicted unchanged`)
    s.apply(change)
    t.equal(s.digest, before, `${change.group} → ${change.includes}: unchanged`)
  }
  s.apply({ op: 'assign-user', group: 'bottom', user: 'b' })
  t.notOk(s.check('b', 'audit:write'), 'nothing came back up')

  const cyclic = stateOf([
    { name: 'a', permissions: ['p'], users: ['ua'], includes: ['b', 'ghost'] },
    { name: 'b', permissions: ['q'], users: ['ub'], includes: ['a'] }
  ])
  t.ok(cyclic.check('ua', 'q'), 'the first inclusion holds')
  t.notOk(cyclic.check('ub', 'p'), 'the one closing the cycle is ignored')
  t.same(cyclic.view().map((g) => [g.name, g.includes]), [['a', ['b']], ['b', []]])
  cyclic.apply({ op: 'remove-permission', group: 'b', permission: 'q' })
  t.notOk(cyclic.check('ua', 'q'), 'and nothing stays held by a loop')
})

test('a grant held twice over stays until its last support goes: the same grant added again, and given both below and in the middle', async (t) => {
  const s = stateOf([
    { name: 'bottom', permissions: [], users: [] },
    { name: 'middle', permissions: [], users: [], includes: ['bottom'] },
    { name: 'top', permissions: [], users: ['u'], includes: ['middle'] }
  ])
  s.apply({ op: 'add-permission', group: 'bottom', permission: 'doc:read' })
  s.apply({ op: 'add-permission', group: 'bottom', permission: 'doc:read' })
  s.apply({ op: 'add-permission', group: 'middle', permission: 'doc:read' })
  s.apply({ op: 'remove-permission', group: 'bottom', permission: 'doc:read' })
  t.ok(s.check('u', 'doc:read'), 'still the middle\'s own')
  s.apply({ op: 'remove-permission', group: 'middle', permission: 'doc:read' })
  t.notOk(s.check('u', 'doc:read'), 'the grant added twice to bottom was one grant, and is gone')
  t.same(s.userView('u').permissions, [])
  t.equal(s.digest, digestOf(s.view()))
})

test('the chain a grant is held through is the shortest, and of the shortest the first by name — whatever order the inclusions came in', async (t) => {
  // top (u) includes c, then b; both include d, which grants doc:read; top also grants audit:read itself, and b too.
  const s = stateOf([
    { name: 'b', permissions: ['audit:read'], users: [] },
    { name: 'c', permissions: [], users: [] },
    { name: 'd', permissions: ['doc:read'], users: [] },
    { name: 'top', permissions: ['audit:read'], users: ['u'] }
  ])
  for (const [group, includes] of [['c', 'd'], ['b', 'd'], ['top', 'c'], ['top', 'b']]) s.apply({ op: 'include-group', group, includes })
  t.same(s.userView('u').grants, [
    { permission: 'audit:read', chain: ['top'] },
    { permission: 'doc:read', chain: ['top', 'b', 'd'] }
  ], 'audit:read from top itself, not through b; doc:read through b, not c')
  // Reverse lookup: y then x grant report:read; top2 includes both; w includes d2, which c2 includes first, then b2; a2 includes c2, then b2.
  const r = stateOf([
    { name: 'y', permissions: ['report:read'], users: [] },
    { name: 'x', permissions: ['report:read'], users: [] },
    { name: 'top2', permissions: [], users: ['v'] },
    { name: 'd2', permissions: ['sheet:read'], users: [] },
    { name: 'c2', permissions: [], users: [] },
    { name: 'b2', permissions: [], users: [] },
    { name: 'a2', permissions: [], users: ['w'] }
  ])
  for (const [group, includes] of [['top2', 'y'], ['top2', 'x'], ['c2', 'd2'], ['b2', 'd2'], ['a2', 'c2'], ['a2', 'b2']]) r.apply({ op: 'include-group', group, includes })
  t.same(r.holderPage('report:read', undefined, 10).items, [{ user: 'v', groups: ['top2'], chains: [['top2', 'x']] }], 'through x, the first by name of the groups granting it')
  t.same(r.holderPage('sheet:read', undefined, 10).items, [{ user: 'w', groups: ['a2'], chains: [['a2', 'b2', 'd2']] }], 'through b2, the first by name of the groups including d2')
})

test('digestAfter predicts a batch that removes an inclusion the tenant already had', async (t) => {
  const s = stateOf(DIAMOND)
  const batch = { op: 'batch' as const, changes: [{ op: 'exclude-group' as const, group: 'left', includes: 'bottom' }, { op: 'add-permission' as const, group: 'bottom', permission: 'x:read' }] }
  const predicted = s.digestAfter(batch)
  t.ok(s.applyAll([{ ...batch, revision: s.revision + 1 }]))
  t.equal(s.digest, predicted)
  t.equal(s.digest, digestOf(s.view()))
})
