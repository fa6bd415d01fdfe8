/**
 * Model-based property test of the role hierarchy (fast-check, seeded): random hierarchies and
 * writes — single ones and batches, inclusions, exclusions, deletions of groups in the middle of a
 * hierarchy, refused cycles among them — sent to random instances of a three-instance cluster, against
 * a naive reference that recomputes each group's transitive closure from scratch. After every write:
 * the write succeeds or fails as the reference says (404, the coded 409 for a cycle), with the same
 * effect; and every check on every instance, answered from memory at the write's revision (the peers
 * applied the notice's change or the changelog, not a reload asked for here), agrees with the reference.
 */
import fc from 'fast-check'
import { test } from 'tap'
import type { Change } from '../../lib/model.js'
import type { PolicyCacheApi } from '../../lib/plugin.js'
import { startCluster } from '../helpers/cluster.js'

const SEED = Number(process.env.FC_SEED ?? 20261213)
const GROUPS = ['g0', 'g1', 'g2', 'g3', 'g4', 'g5']
const USERS = ['u0', 'u1', 'u2', 'u3']
const GRANTS = ['doc:read', 'doc:*', 'doc:x:*', 'admin:read', '*']
const CHECKED = ['doc:read', 'doc:write', 'doc:x:y', 'admin:read', 'other']

const group = fc.constantFrom(...GROUPS)
const change: fc.Arbitrary<Change> = fc.oneof(
  { weight: 3, arbitrary: group.map((g): Change => ({ op: 'create-group', group: g })) },
  { weight: 1, arbitrary: group.map((g): Change => ({ op: 'delete-group', group: g })) },
  { weight: 2, arbitrary: fc.tuple(group, fc.constantFrom(...GRANTS)).map(([g, permission]): Change => ({ op: 'add-permission', group: g, permission })) },
  { weight: 1, arbitrary: fc.tuple(group, fc.constantFrom(...GRANTS)).map(([g, permission]): Change => ({ op: 'remove-permission', group: g, permission })) },
  { weight: 2, arbitrary: fc.tuple(group, fc.constantFrom(...USERS)).map(([g, user]): Change => ({ op: 'assign-user', group: g, user })) },
  { weight: 1, arbitrary: fc.tuple(group, fc.constantFrom(...USERS)).map(([g, user]): Change => ({ op: 'unassign-user', group: g, user })) },
  { weight: 5, arbitrary: fc.tuple(group, group).map(([g, includes]): Change => ({ op: 'include-group', group: g, includes })) },
  { weight: 2, arbitrary: fc.tuple(group, group).map(([g, includes]): Change => ({ op: 'exclude-group', group: g, includes })) }
)
/** A write: one change, or a batch of a few, at an instance. */
const write = fc.record({ at: fc.nat({ max: 2 }), changes: fc.oneof({ weight: 3, arbitrary: change.map((c) => [c]) }, { weight: 1, arbitrary: fc.array(change, { minLength: 2, maxLength: 6 }) }), batch: fc.boolean() })

interface Group { grants: Set<string>, users: Set<string>, includes: Set<string> }
type Tenant = Map<string, Group>

/** The groups `name` reaches (itself included), computed from scratch. */
function closure (tenant: Tenant, name: string): Set<string> {
  const seen = new Set([name])
  for (const at of seen) for (const next of tenant.get(at)!.includes) seen.add(next)
  return seen
}

const matches = (grant: string, permission: string): boolean =>
  grant === '*' || grant === permission || (grant.endsWith(':*') && permission.startsWith(grant.slice(0, -1)))

/** The naive check: some group of the user reaches a group with a matching grant. */
function allowed (tenant: Tenant, user: string, permission: string): boolean {
  for (const [name, g] of tenant) {
    if (!g.users.has(user)) continue
    for (const reached of closure(tenant, name)) if ([...tenant.get(reached)!.grants].some((grant) => matches(grant, permission))) return true
  }
  return false
}

/** Applies one change to the reference; returns whether it had an effect, or the code it fails with. */
function apply (tenant: Tenant, c: Change): boolean | string {
  const g = tenant.get(c.group)
  const set = <T>(items: Set<T>, item: T, present: boolean): boolean => {
    if (items.has(item) === present) return false
    if (present) items.add(item)
    else items.delete(item)
    return true
  }
  switch (c.op) {
    case 'create-group':
      if (g !== undefined) return false
      tenant.set(c.group, { grants: new Set(), users: new Set(), includes: new Set() })
      return true
    case 'delete-group':
      if (g === undefined) return false
      tenant.delete(c.group)
      for (const other of tenant.values()) other.includes.delete(c.group)
      return true
    case 'add-permission':
      return g === undefined ? 'FST_POLICY_CACHE_GROUP_NOT_FOUND' : set(g.grants, c.permission, true)
    case 'remove-permission':
      return g !== undefined && set(g.grants, c.permission, false)
    case 'assign-user':
      return g === undefined ? 'FST_POLICY_CACHE_GROUP_NOT_FOUND' : set(g.users, c.user, true)
    case 'unassign-user':
      return g !== undefined && set(g.users, c.user, false)
    case 'include-group':
      if (g === undefined || !tenant.has(c.includes)) return 'FST_POLICY_CACHE_GROUP_NOT_FOUND'
      if (g.includes.has(c.includes)) return false
      if (closure(tenant, c.includes).has(c.group)) return 'FST_POLICY_CACHE_INCLUSION_CYCLE'
      return set(g.includes, c.includes, true)
    case 'exclude-group':
      return g !== undefined && set(g.includes, c.includes, false)
  }
}

/** One change through the decorator's own method for it. */
function writeOne (engine: PolicyCacheApi, tenant: string, c: Change) {
  switch (c.op) {
    case 'create-group': return engine.createGroup(tenant, c.group)
    case 'delete-group': return engine.deleteGroup(tenant, c.group)
    case 'add-permission': return engine.addPermission(tenant, c.group, c.permission)
    case 'remove-permission': return engine.removePermission(tenant, c.group, c.permission)
    case 'assign-user': return engine.assignUser(tenant, c.group, c.user)
    case 'unassign-user': return engine.unassignUser(tenant, c.group, c.user)
    case 'include-group': return engine.includeGroup(tenant, c.group, c.includes)
    case 'exclude-group': return engine.excludeGroup(tenant, c.group, c.includes)
  }
}

/** A deep copy of the reference, so that a failing batch leaves it as it was. */
const copy = (tenant: Tenant): Tenant =>
  new Map([...tenant].map(([name, g]) => [name, { grants: new Set(g.grants), users: new Set(g.users), includes: new Set(g.includes) }]))

test('every check on every instance agrees with a naive transitive closure after every write', async (t) => {
  const nodes = await startCluster(t, 3, { ackTimeoutMs: 10_000 })
  const engines = nodes.map((node) => node.app.policyCache)
  const pairs = USERS.flatMap((user) => CHECKED.map((permission) => ({ user, permission })))
  const seen = { writes: 0, refused: { FST_POLICY_CACHE_GROUP_NOT_FOUND: 0, FST_POLICY_CACHE_INCLUSION_CYCLE: 0 } as Record<string, number>, inherited: 0, checks: 0 }
  let run = 0

  await fc.assert(fc.asyncProperty(fc.array(write, { minLength: 10, maxLength: 30 }), async (writes) => {
    const tenant = `t${run++}`
    let reference: Tenant = new Map()
    let revision = 0
    // Every instance has the tenant cached, so that each applies the notices (an uncached one loads lazily).
    for (const engine of engines) await engine.revision(tenant)
    // Every group first, so that most writes find theirs; deletions and refusals come from the random writes.
    const setup = { at: 0, changes: GROUPS.map((g): Change => ({ op: 'create-group', group: g })), batch: true }
    for (const { at, changes, batch } of [setup, ...writes]) {
      // The reference's outcome: the effects, or the first failure (a batch writes nothing then).
      const next = copy(reference)
      const outcomes = changes.map((c) => apply(next, c))
      const failure = outcomes.find((o): o is string => typeof o === 'string')
      const single = changes.length === 1 && !batch
      const writing = single ? writeOne(engines[at], tenant, changes[0]).then((r) => ({ ...r, effects: [r.changed] })) : engines[at].batch(tenant, changes)
      const settled = await writing.then((ok) => ({ ok, err: undefined }), (err: { code?: string }) => ({ ok: undefined, err }))
      if (failure !== undefined) {
        if (settled.err?.code !== failure) throw new Error(`${JSON.stringify(changes)}: expected ${failure}, got ${JSON.stringify(settled)}`)
        seen.refused[failure]++
      } else {
        const result = settled.ok
        if (result === undefined) throw new Error(`${JSON.stringify(changes)}: refused with ${String(settled.err?.code)}`)
        const effects = outcomes.slice(0, changes.length) as boolean[]
        if (JSON.stringify(result.effects) !== JSON.stringify(effects)) throw new Error(`${JSON.stringify(changes)}: effects ${JSON.stringify(result.effects)}, expected ${JSON.stringify(effects)}`)
        if (result.changed) {
          revision++
          if (result.revision !== revision || result.peers.acked !== result.peers.total) throw new Error(`revision ${result.revision} (expected ${revision}), peers ${JSON.stringify(result.peers)}`)
        }
        reference = next
        seen.writes++
      }
      // Every instance, from memory, at the write's revision.
      const expected = pairs.map(({ user, permission }) => allowed(reference, user, permission))
      for (const [i, engine] of engines.entries()) {
        const answer = await engine.checkBatch(tenant, pairs)
        if (answer.revision !== revision) throw new Error(`instance ${i} answers from revision ${answer.revision}, not ${revision}`)
        const wrong = pairs.filter((_pair, k) => answer.results[k] !== expected[k])
        if (wrong.length > 0) throw new Error(`instance ${i} at revision ${revision} after ${JSON.stringify(changes)}: wrong for ${JSON.stringify(wrong)}`)
        seen.checks += pairs.length
      }
      // Answers that only inheritance gives: the property exercised the hierarchy.
      seen.inherited += pairs.filter(({ user, permission }) => allowed(reference, user, permission) &&
        ![...reference.values()].some((g) => g.users.has(user) && [...g.grants].some((grant) => matches(grant, permission)))).length
    }
  }), { numRuns: 30, seed: SEED })

  t.ok(seen.writes > 100, `${seen.writes} writes applied`)
  t.ok(seen.refused.FST_POLICY_CACHE_INCLUSION_CYCLE > 0, `${seen.refused.FST_POLICY_CACHE_INCLUSION_CYCLE} cycles refused`)
  t.ok(seen.refused.FST_POLICY_CACHE_GROUP_NOT_FOUND > 0, `${seen.refused.FST_POLICY_CACHE_GROUP_NOT_FOUND} writes to missing groups refused`)
  t.ok(seen.inherited > 100, `${seen.inherited} allowed answers held through inclusions only`)
  const stats = engines.map((engine) => engine.stats())
  t.ok(stats.some((s) => s.carriedCatchUps > 0), `peers applied ${stats.map((s) => s.carriedCatchUps).join('/')} carried changes`)
  t.equal(stats.reduce((n, s) => n + s.repairs, 0), 0, 'no instance ever needed a repair: every delta gave the database\'s digest')
  t.comment(`seed ${SEED}: ${seen.checks} checks agreed`)
})
