/**
 * Section 11 — the role hierarchy: `checkSync` on a tenant whose 50 groups form a 5-level hierarchy
 * against the same policy written flat (every inherited grant copied into the groups above), on 1 k
 * and 100 k members; the delta apply of an inclusion change on a 5-level, 200-group tenant (at the
 * top, at the bottom, a grant moving up, and the worst case of the tenant), on 1 k and 100 k
 * members; the heap of the 100 k-member tenant with the hierarchy and flat.
 */
import Fastify from 'fastify'
import { TenantState } from '../lib/cache/tenant-state.js'
import { digestOf } from '../lib/digest.js'
import type { GroupData, LoggedChange, TenantSnapshot } from '../lib/model.js'
import policyCache, { createSqliteDb } from '../lib/plugin.js'
import { gcFunction } from './catchup.js'
import { rates, type Round } from './check.js'
import { checkWorkload, seedTenant, SHAPES, snapshotOf, type TenantShape } from './fixtures.js'
import { cpuMicros } from './lookup.js'
import { fmt, median, ratio, type RunOptions, type SectionResult } from './stats.js'

const WORKLOAD = 1024
const PREFIX = 'bench_h_'
const LEVELS = 5

/** The groups `name` reaches through `includes` (itself included). */
function closure (byName: Map<string, GroupData>, name: string): Set<string> {
  const seen = new Set([name])
  for (const at of seen) for (const next of byName.get(at)?.includes ?? []) seen.add(next)
  return seen
}

/**
 * `snapshot`'s groups arranged in LEVELS levels (group i at level i mod LEVELS, so every level has
 * members), each including two groups of the next level; and the same policy flat: each group
 * holding its own grants and every grant of the groups it reaches.
 */
function layered (snapshot: TenantSnapshot): { hierarchy: TenantSnapshot, flat: TenantSnapshot } {
  const count = snapshot.groups.length
  const perLevel = Math.ceil(count / LEVELS)
  const name = (level: number, k: number): string | undefined => {
    const i = (k % perLevel) * LEVELS + level
    return i < count ? snapshot.groups[i].name : undefined
  }
  const groups = snapshot.groups.map((group, i) => {
    const level = i % LEVELS
    const k = Math.floor(i / LEVELS)
    const includes = level === LEVELS - 1 ? [] : [name(level + 1, k), name(level + 1, k + 1)].filter((n): n is string => n !== undefined)
    return { ...group, includes: [...new Set(includes)].sort() }
  })
  const byName = new Map(groups.map((group) => [group.name, group]))
  const flatGroups = groups.map(({ includes: _includes, ...group }) => ({
    ...group,
    permissions: [...new Set([...closure(byName, group.name)].flatMap((n) => byName.get(n)!.permissions))].sort()
  }))
  return {
    hierarchy: { revision: snapshot.revision, groups, digest: digestOf(groups) },
    flat: { revision: snapshot.revision, groups: flatGroups, digest: digestOf(flatGroups) }
  }
}

/** A 5-level, 200-group tenant of `members` members (each in two groups), 4 grants a group. */
function wide (members: number): TenantSnapshot {
  return layered(snapshotOf({ members, groups: 200, grantsPerGroup: 4 })).hierarchy
}

/** Heap (MB) a TenantState of `snapshot` takes, median of three builds (each kept alive). */
function heapOf (snapshot: TenantSnapshot, gc: () => void): number {
  const heap: number[] = []
  const kept: TenantState[] = []
  for (let k = 0; k < 3; k++) {
    gc()
    const before = process.memoryUsage().heapUsed
    kept.push(new TenantState(snapshot))
    gc()
    heap.push((process.memoryUsage().heapUsed - before) / 2 ** 20)
  }
  if (kept.length !== 3) throw new Error('unreachable')
  return median(heap)
}

/**
 * A change and its undo, applied alternately as changelog deltas (what a peer does with a notice):
 * CPU µs per apply. Each apply goes through `applyAll`, so it includes the digest's update (the
 * hashes of the facts it moves) and the cycle check of an inclusion.
 */
function deltaMicros (state: TenantState, change: LoggedChange, undo: LoggedChange, reps: number, rounds: number): number {
  return cpuMicros(() => {
    state.applyAll([{ ...(state.revision % 2 === 0 ? change : undo), revision: state.revision + 1 } as LoggedChange])
  }, reps, rounds)
}

/** The inclusion change that moves the most: the group with the most groups above it including the group holding the most it does not reach yet. */
function worstInclusion (snapshot: TenantSnapshot): { group: string, includes: string, moved: number } {
  const byName = new Map(snapshot.groups.map((group) => [group.name, group]))
  const above = new Map<string, number>()
  for (const group of snapshot.groups) for (const reached of closure(byName, group.name)) above.set(reached, (above.get(reached) ?? 0) + 1)
  let worst = { group: '', includes: '', moved: -1 }
  for (const group of snapshot.groups) {
    const reach = closure(byName, group.name)
    const held = new Set([...reach].flatMap((n) => byName.get(n)!.permissions))
    for (const other of snapshot.groups) {
      if (reach.has(other.name) || closure(byName, other.name).has(group.name)) continue
      const brings = [...closure(byName, other.name)].flatMap((n) => byName.get(n)!.permissions).filter((p) => !held.has(p))
      const moved = new Set(brings).size * above.get(group.name)!
      if (moved > worst.moved) worst = { group: group.name, includes: other.name, moved }
    }
  }
  return worst
}

export async function runHierarchy ({ quick, log }: RunOptions): Promise<SectionResult> {
  const ms = quick ? 100 : 250
  const reps = quick ? 3 : 7
  const rounds = quick ? 3 : 9
  const mask = WORKLOAD - 1
  let sink = 0

  log('hierarchy: seeding the 1 k and 100 k member tenants, 5-level and flat')
  const db = createSqliteDb(':memory:')
  const app = Fastify()
  app.addHook('onClose', () => db.destroy())
  const shapes: Array<[string, TenantShape]> = [['1k', SHAPES.members1k], ['100k', SHAPES.members100k]]
  const tenants = shapes.map(([size, shape]) => ({ size, shape, ...layered(snapshotOf(shape)) }))
  for (const { size, hierarchy, flat } of tenants) {
    await seedTenant(db, PREFIX, `h${size}`, hierarchy)
    await seedTenant(db, PREFIX, `f${size}`, flat)
  }
  await app.register(policyCache, { db, tablePrefix: PREFIX, routes: false, syncIntervalMs: 0 })
  await app.ready()
  const engine = app.policyCache
  await engine.warm(tenants.flatMap(({ size }) => [`h${size}`, `f${size}`]))
  // The same answers from both, and the hierarchy really gives some (the workload's users sit at every level).
  const workloads = tenants.map(({ shape }) => checkWorkload(shape, WORKLOAD))
  let inherited = 0
  for (const [i, { size, hierarchy }] of tenants.entries()) {
    const { users, permissions } = workloads[i]
    const byName = new Map(hierarchy.groups.map((group) => [group.name, group]))
    for (let k = 0; k < WORKLOAD; k++) {
      const h = engine.checkSync(`h${size}`, users[k], permissions[k])
      if (h !== engine.checkSync(`f${size}`, users[k], permissions[k])) throw new Error(`hierarchy and flat disagree on ${users[k]} ${permissions[k]}`)
      if (h === true && !hierarchy.groups.some((g) => g.users.includes(users[k]) && byName.get(g.name)!.permissions.includes(permissions[k]))) inherited++
    }
  }
  if (inherited === 0) throw new Error('the workload never needs the hierarchy')
  const round = (tenant: string, w: { users: string[], permissions: string[] }): Round => (n) => {
    for (let i = 0; i < n; i++) if (engine.checkSync(tenant, w.users[i & mask], w.permissions[i & mask]) === true) sink++
  }
  log('hierarchy: checkSync, 5 levels vs flat')
  const check = await rates(Object.fromEntries(tenants.flatMap(({ size }, i) => [[`h${size}`, round(`h${size}`, workloads[i])], [`f${size}`, round(`f${size}`, workloads[i])]])), ms, reps)
  await app.close()

  log('hierarchy: delta apply on a 5-level, 200-group tenant')
  const deltaReps = quick ? 50 : 400
  const deltaRows: string[][] = [['change (applied as a changelog delta, then undone)', '1 k members (µs)', '100 k members (µs)']]
  const deltas: Record<string, number[]> = {}
  const wideTenants = [wide(1000), wide(100000)]
  const top = wideTenants[0].groups[0]
  const bottom = wideTenants[0].groups[LEVELS - 1]
  // A level-1 group the top one does not include yet; a level-4 group the level-3 one does not.
  const levelOne = wideTenants[0].groups.find((g, i) => i % LEVELS === 1 && !(top.includes ?? []).includes(g.name))!.name
  const lowMid = wideTenants[0].groups[LEVELS - 2]
  const levelFour = wideTenants[0].groups.find((g, i) => i % LEVELS === LEVELS - 1 && !(lowMid.includes ?? []).includes(g.name))!.name
  const worst = worstInclusion(wideTenants[0])
  const cases: Array<[string, LoggedChange, LoggedChange]> = [
    [`include-group at the top (${top.name}, level 1 of 5, includes ${levelOne}, level 2)`, { op: 'include-group', group: top.name, includes: levelOne, revision: 0 }, { op: 'exclude-group', group: top.name, includes: levelOne, revision: 0 }],
    [`include-group low (${lowMid.name}, level 4, includes ${levelFour}, level 5)`, { op: 'include-group', group: lowMid.name, includes: levelFour, revision: 0 }, { op: 'exclude-group', group: lowMid.name, includes: levelFour, revision: 0 }],
    [`add-permission at the bottom (${bottom.name}, level 5: the grant moves up to every group above)`, { op: 'add-permission', group: bottom.name, permission: 'new:grant', revision: 0 }, { op: 'remove-permission', group: bottom.name, permission: 'new:grant', revision: 0 }],
    [`worst case of the tenant: ${worst.group} includes ${worst.includes} (${worst.moved} held grants move)`, { op: 'include-group', group: worst.group, includes: worst.includes, revision: 0 }, { op: 'exclude-group', group: worst.group, includes: worst.includes, revision: 0 }],
    ['for scale: assign-user (a flat change)', { op: 'assign-user', group: top.name, user: 'newcomer', revision: 0 }, { op: 'unassign-user', group: top.name, user: 'newcomer', revision: 0 }]
  ]
  for (const [name, change, undo] of cases) {
    const micros = wideTenants.map((snapshot) => deltaMicros(new TenantState(snapshot), change, undo, deltaReps, rounds))
    deltas[name] = micros
    deltaRows.push([name, fmt(micros[0]), fmt(micros[1])])
  }
  const worstMicros = Math.max(...deltas[cases[3][0]])
  const topMicros = Math.max(...deltas[cases[0][0]])

  log('hierarchy: heap of the 100 k-member tenant')
  const gc = gcFunction()
  const big = tenants[1]
  const heap = { hierarchy: heapOf(big.hierarchy, gc), flat: heapOf(big.flat, gc), wide: heapOf(wideTenants[1], gc) }
  if (sink < 0) log('unreachable')

  const cost = (size: string): number => check[`f${size}`].cpu / check[`h${size}`].cpu
  const rows = [
    ['checkSync', '1 k members /cpu-s', '100 k members /cpu-s', '1 k /wall-s', '100 k /wall-s'],
    ['5-level hierarchy (50 groups)', fmt(check.h1k.cpu), fmt(check.h100k.cpu), fmt(check.h1k.wall), fmt(check.h100k.wall)],
    ['the same policy flat (inherited grants copied)', fmt(check.f1k.cpu), fmt(check.f100k.cpu), fmt(check.f1k.wall), fmt(check.f100k.wall)],
    ['cost ratio hierarchy ÷ flat (CPU time per check)', ratio(check.f1k.cpu, check.h1k.cpu), ratio(check.f100k.cpu, check.h100k.cpu), '', '']
  ]
  return {
    id: 'hierarchy',
    title: '11. Role hierarchy',
    tables: [
      { caption: 'checks per CPU-second (one core) and per wall-second, medians of rounds', rows },
      { caption: `CPU µs per delta on a 5-level, 200-group tenant (4 grants a group, each including two of the next level), medians of ${rounds} rounds`, rows: deltaRows },
      {
        caption: 'heap of the tenant\'s index (after gc), 100 k members',
        rows: [
          ['tenant', 'MB'],
          ['50 groups, 5-level hierarchy', fmt(heap.hierarchy)],
          ['50 groups, the same policy flat', fmt(heap.flat)],
          ['200 groups, 5-level hierarchy', fmt(heap.wide)]
        ]
      }
    ],
    targets: [
      { name: 'checkSync, 5-level hierarchy vs flat (1 k members)', target: '≤ 1.2×', measured: `${fmt(cost('1k'))}×`, met: cost('1k') <= 1.2 },
      { name: 'checkSync, 5-level hierarchy vs flat (100 k members)', target: '≤ 1.2×', measured: `${fmt(cost('100k'))}×`, met: cost('100k') <= 1.2 },
      { name: 'checkSync with a 5-level hierarchy (100 k members)', target: '≥ 5 M/s per core', measured: `${fmt(check.h100k.cpu / 1e6)} M/cpu-s`, met: check.h100k.cpu >= 5e6 },
      { name: 'delta apply of an inclusion change at the top (200 groups)', target: '< 1 ms', measured: `${fmt(topMicros)} µs (worst case ${fmt(worstMicros)} µs)`, met: topMicros < 1000 }
    ],
    notes: [
      `The tenants of section 1 (50 groups, each user in two, each group 4 grants of which one a wildcard) with their groups in 5 levels — group i at level i mod 5, each including two groups of the next level — so a member of a top group holds the grants of up to 31 groups. The flat tenant is the same policy as a user without inclusions writes it: every group holds its own grants and a copy of every grant it reaches. Both answer the ${WORKLOAD}-pair workload of section 1 identically (checked before timing; ${inherited} of its allowed answers come through inclusions only).`,
      'Why the check does not see the hierarchy: it is resolved when a change is applied, not when a check is asked. Each group keeps the index of the grants its members hold through it — its own and those of the groups it includes, transitively — so a check still reads the user\'s record of group ids and asks each of those groups\' one index. Each held grant counts its supports (the group\'s own grant, and each included group holding it), so a change moves only the grants whose count reaches or leaves zero, up through the groups that include the one changed: no member is visited, which is why the delta costs the same on 1 k and 100 k members.',
      'The delta rows apply a change and its undo alternately through `applyAll`, as a peer applies a notice\'s change or a changelog entry — including the digest\'s update and, for an inclusion, the cycle check. The worst case is the inclusion, among every pair of groups of the tenant that would not close a cycle, that moves the most (held grants × groups they move through).'
    ]
  }
}
