/**
 * TenantState's listings and reverse lookup against a naive reference, through random snapshots and
 * random changes, inclusions among them (the reverse grant index, the sorted members and the
 * inclusions must follow every change).
 */
import fc from 'fast-check'
import { test } from 'tap'
import { grantsHolding, TenantState, type Holder, type KeyPage } from '../../lib/cache/tenant-state.js'
import { digestOf } from '../../lib/digest.js'
import type { Change, GroupData } from '../../lib/model.js'

/** Does grant `grant` hold `permission` (concrete, or a wildcard), by the policy model's definition? */
function holds (grant: string, permission: string): boolean {
  if (grant === '*') return true
  if (grant.endsWith(':*')) return permission !== '*' && permission.startsWith(grant.slice(0, -1))
  return grant === permission
}

interface ModelGroup { grants: Set<string>, users: Set<string>, includes: Set<string> }

/** The groups `name` reaches through inclusions, itself included, with their distance: recomputed from scratch. */
function reach (groups: Map<string, ModelGroup>, name: string): Map<string, number> {
  const found = new Map([[name, 0]])
  for (const [at, distance] of found) for (const next of groups.get(at)!.includes) if (!found.has(next)) found.set(next, distance + 1)
  return found
}

/** Does group `name` grant `permission` itself? */
const grants = (groups: Map<string, ModelGroup>, name: string, permission: string): boolean =>
  [...groups.get(name)!.grants].some((grant) => holds(grant, permission))

/** The naive reverse lookup: every user of every group reaching a group granting it, without the chains. */
function naiveHolders (groups: Map<string, ModelGroup>, permission: string): Array<Omit<Holder, 'chains'>> {
  const through = new Map<string, string[]>()
  for (const [name, group] of groups) {
    if (![...reach(groups, name).keys()].some((reached) => grants(groups, reached, permission))) continue
    for (const user of group.users) through.set(user, [...(through.get(user) ?? []), name])
  }
  return [...through.keys()].sort().map((user) => ({ user, groups: through.get(user)!.sort() }))
}

/** Whether `chain` is a shortest chain of inclusions from `group` to a group granting `permission`. */
function shortestChain (groups: Map<string, ModelGroup>, group: string, chain: string[], permission: string): boolean {
  if (chain[0] !== group || !grants(groups, chain[chain.length - 1], permission)) return false
  for (let i = 1; i < chain.length; i++) if (!groups.get(chain[i - 1])!.includes.has(chain[i])) return false
  const shortest = Math.min(...[...reach(groups, group)].filter(([name]) => grants(groups, name, permission)).map(([, distance]) => distance))
  return chain.length === shortest + 1
}

/** Every page of a listing, walked with `limit` from the start; fails on a page over the limit or a last page with a cursor. */
function walk<T> (page: (after: string | undefined) => KeyPage<T>, limit: number, key: (item: T) => string): T[] {
  const all: T[] = []
  let after: string | undefined
  for (let pages = 0; pages < 10_000; pages++) {
    const { items, last } = page(after)
    if (items.length > limit) throw new Error(`a page of ${items.length} over the limit ${limit}`)
    all.push(...items)
    if (last === undefined) return all
    if (items.length !== limit || key(items[items.length - 1]) !== last) throw new Error('a cursor not at a full page\'s last key')
    after = last
  }
  throw new Error('no end')
}

const groupName = fc.constantFrom('g1', 'g2', 'g3', 'g4', 'g5')
const userName = fc.constantFrom('u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'U8', 'a.b')
const grant = fc.constantFrom('*', 'a:*', 'a:b:*', 'a:b', 'a:b:c', 'a:c', 'b:*', 'b:x', 'a')
const query = fc.constantFrom('*', 'a:*', 'a:b:*', 'b:*', 'a:b', 'a:b:c', 'a:b:c:d', 'a:c', 'b:x', 'a', 'c:d')
const change: fc.Arbitrary<Change> = fc.oneof(
  fc.record({ op: fc.constantFrom('create-group' as const, 'delete-group' as const), group: groupName }),
  fc.record({ op: fc.constantFrom('add-permission' as const, 'remove-permission' as const), group: groupName, permission: grant }),
  fc.record({ op: fc.constantFrom('assign-user' as const, 'unassign-user' as const), group: groupName, user: userName }),
  fc.record({ op: fc.constantFrom('include-group' as const, 'exclude-group' as const), group: groupName, includes: groupName })
)
// Inclusions in a snapshot go from a group to one later in name order: never a cycle, as a store holds them.
const snapshot = fc.uniqueArray(fc.record({ name: groupName, permissions: fc.uniqueArray(grant, { maxLength: 4 }), users: fc.uniqueArray(userName, { maxLength: 6 }), includes: fc.uniqueArray(groupName, { maxLength: 3 }) }), { selector: (g) => g.name, maxLength: 5 })
  .map((groups) => groups.map((g) => ({ ...g, includes: g.includes.filter((name) => name > g.name && groups.some((other) => other.name === name)).sort() })))

/** The reference model: the snapshot with the changes applied as the policy model says (an inclusion closing a cycle is ignored, as the store refuses it). */
function model (groups: GroupData[], changes: Change[]) {
  const m = new Map<string, ModelGroup>(groups.map((g) => [g.name, { grants: new Set(g.permissions), users: new Set(g.users), includes: new Set(g.includes) }]))
  const fresh = (): ModelGroup => ({ grants: new Set(), users: new Set(), includes: new Set() })
  for (const c of changes) {
    if (c.op === 'delete-group') {
      m.delete(c.group)
      for (const g of m.values()) g.includes.delete(c.group)
      continue
    }
    let g = m.get(c.group)
    if (g === undefined && (c.op === 'remove-permission' || c.op === 'unassign-user' || c.op === 'exclude-group')) continue
    if (g === undefined) m.set(c.group, g = fresh())
    if (c.op === 'add-permission') g.grants.add(c.permission)
    if (c.op === 'remove-permission') g.grants.delete(c.permission)
    if (c.op === 'assign-user') g.users.add(c.user)
    if (c.op === 'unassign-user') g.users.delete(c.user)
    if (c.op === 'include-group') {
      if (!m.has(c.includes)) m.set(c.includes, fresh())
      if (!reach(m, c.includes).has(c.group)) g.includes.add(c.includes)
    }
    if (c.op === 'exclude-group') g.includes.delete(c.includes)
  }
  return m
}

test('grantsHolding: the permission, each wildcard on a proper prefix, and *', async (t) => {
  t.same(grantsHolding('a:b:c'), ['a:b:c', 'a:*', 'a:b:*', '*'])
  t.same(grantsHolding('a'), ['a', '*'])
  t.same(grantsHolding('a:b:*'), ['a:b:*', 'a:*', '*'])
  t.same(grantsHolding('a:*'), ['a:*', '*'])
  t.same(grantsHolding('*'), ['*'])
})

test('listings and reverse lookup equal the naive reference after random changes, at every page size', async (t) => {
  await fc.assert(fc.property(snapshot, fc.array(fc.array(change, { minLength: 1, maxLength: 4 }), { maxLength: 6 }), query, fc.integer({ min: 1, max: 4 }),
    (groups, batches, permission, limit) => {
      const state = new TenantState({ revision: 1, groups, digest: digestOf(groups) })
      // Listings read between changes too: a sorted list cached by one read must not outlive a change.
      for (const batch of batches) {
        walk((after) => state.holderPage(permission, after, limit), limit, (h) => h.user)
        walk((after) => state.groupPage(after, limit), limit, (g) => g)
        for (const c of batch) state.apply(c)
      }
      const m = model(groups, batches.flat())
      const names = [...m.keys()].sort()
      if (JSON.stringify(walk((after) => state.groupPage(after, limit), limit, (g) => g)) !== JSON.stringify(names)) return false
      for (const name of names) {
        const users = walk((after) => state.userPage(name, after, limit)!, limit, (u) => u)
        const grants = walk((after) => state.grantPage(name, after, limit)!, limit, (g) => g)
        if (JSON.stringify(users) !== JSON.stringify([...m.get(name)!.users].sort())) return false
        if (JSON.stringify(grants) !== JSON.stringify([...m.get(name)!.grants].sort())) return false
      }
      if (state.userPage('absent', undefined, limit) !== undefined || state.grantPage('absent', undefined, limit) !== undefined) return false
      if (JSON.stringify(state.view().map((g) => g.includes)) !== JSON.stringify(names.map((name) => [...m.get(name)!.includes].sort()))) return false
      const holders = walk((after) => state.holderPage(permission, after, limit), limit, (h) => h.user)
      if (JSON.stringify(holders.map(({ user, groups }) => ({ user, groups }))) !== JSON.stringify(naiveHolders(m, permission))) return false
      for (const { groups, chains } of holders) {
        if (chains.length !== groups.length || groups.some((group, i) => !shortestChain(m, group, chains[i], permission))) return false
      }
      // For a concrete permission the holders are exactly the users the check allows.
      if (!permission.includes('*')) {
        const allowed = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'U8', 'a.b'].filter((u) => state.check(u, permission)).sort()
        if (JSON.stringify(allowed) !== JSON.stringify(holders.map((h) => h.user))) return false
      }
      return true
    }), { numRuns: 400, seed: 13 })
  t.pass('400 random tenants')
})

test('a page resumes strictly after the cursor key, present or not', async (t) => {
  const groups = [{ name: 'g', permissions: ['a:*'], users: ['b', 'd', 'f'] }]
  const state = new TenantState({ revision: 1, groups, digest: digestOf(groups) })
  t.same(state.userPage('g', 'c', 10), { items: ['d', 'f'], last: undefined }, 'a key no longer there')
  t.same(state.userPage('g', 'd', 1), { items: ['f'], last: undefined })
  t.same(state.userPage('g', 'a', 2), { items: ['b', 'd'], last: 'd' })
  t.same(state.holderPage('a:x', 'd', 5).items, [{ user: 'f', groups: ['g'], chains: [['g']] }])
  t.same(state.holderPage('a:x', 'f', 5), { items: [], last: undefined })
})
