/**
 * Section 1 — the in-process check: the plugin's sync hot path (`checkSync`) and async `check`, on
 * tenants of 1 k and 100 k members, next to node-casbin's RBAC-with-domains `enforceSync` /
 * `enforce` on the same policy. Each figure is the median of several timed rounds.
 */
import Fastify from 'fastify'
import { newEnforcer, newModelFromString, type Enforcer } from 'casbin'
import type { Kysely } from 'kysely'
import policyCache, { createSqliteDb, type PolicyCacheApi } from '../lib/plugin.js'
import { CASBIN_MODEL, casbinRules, checkWorkload, seedTenant, SHAPES, snapshotOf, type TenantShape } from './fixtures.js'
import { fmt, median, ratio, type RunOptions, type SectionResult } from './stats.js'

const WORKLOAD = 1024 // a power of two: the loops index with `i & (WORKLOAD - 1)`
const PREFIX = 'bench_'

/** Milliseconds of CPU (user + system) this process used during `fn`, and of wall clock. */
export async function timed (fn: () => void | Promise<void>): Promise<{ cpu: number, wall: number }> {
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await fn()
  const wall = performance.now() - t0
  const c = process.cpuUsage(c0)
  return { cpu: (c.user + c.system) / 1000, wall }
}

export type Round = (iterations: number) => void | Promise<void>
export type Rate = { cpu: number, wall: number }

/**
 * Calibrates each round to last about `ms`, then runs `reps` passes over all of them, interleaved
 * so that drifting machine load hits every contender alike: median rates per CPU-second (what one
 * core does, whatever else the shared machine runs) and per wall-second.
 */
export async function rates (rounds: Record<string, Round>, ms: number, reps: number): Promise<Record<string, Rate>> {
  const iterations: Record<string, number> = {}
  for (const [name, round] of Object.entries(rounds)) {
    let n = 64
    for (;;) {
      const { wall } = await timed(() => round(n))
      if (wall >= ms / 4) { iterations[name] = Math.ceil(n * ms / wall); break }
      n *= 4
    }
  }
  const samples: Record<string, { cpu: number[], wall: number[] }> = {}
  for (let r = 0; r < reps; r++) {
    for (const [name, round] of Object.entries(rounds)) {
      const n = iterations[name]
      const t = await timed(() => round(n))
      const s = (samples[name] ??= { cpu: [], wall: [] })
      s.cpu.push(n / (t.cpu / 1000))
      s.wall.push(n / (t.wall / 1000))
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([name, s]) => [name, { cpu: median(s.cpu), wall: median(s.wall) }]))
}

interface Contender {
  enforcer: Enforcer
  users: string[]
  permissions: string[]
}

/** Seeds `tenant` into the plugin's store and a casbin enforcer; checks both agree on the workload. */
async function contender (db: Kysely<any>, tenant: string, shape: TenantShape): Promise<Contender> {
  const snapshot = snapshotOf(shape)
  await seedTenant(db, PREFIX, tenant, snapshot)
  const enforcer = await newEnforcer(newModelFromString(CASBIN_MODEL))
  const rules = casbinRules(tenant, snapshot)
  await enforcer.addNamedPolicies('p', rules.p)
  await enforcer.addNamedGroupingPolicies('g', rules.g)
  return { enforcer, ...checkWorkload(shape, WORKLOAD) }
}

async function agree (engine: PolicyCacheApi, tenant: string, c: Contender): Promise<void> {
  for (let i = 0; i < WORKLOAD; i++) {
    const ours = await engine.check(tenant, c.users[i], c.permissions[i])
    const theirs = c.enforcer.enforceSync(c.users[i], tenant, c.permissions[i])
    if (ours !== theirs) throw new Error(`casbin and the plugin disagree on ${tenant} ${c.users[i]} ${c.permissions[i]}: ${theirs} vs ${ours}`)
  }
}

export async function runCheck ({ quick, log }: RunOptions): Promise<SectionResult> {
  const ms = quick ? 100 : 250
  const reps = quick ? 3 : 7
  const mask = WORKLOAD - 1
  let sink = 0
  log('check: building the 1 k and 100 k member tenants (plugin + casbin)')
  const db = createSqliteDb(':memory:')
  const app = Fastify()
  app.addHook('onClose', () => db.destroy())
  const small = await contender(db, 'small', SHAPES.members1k)
  const big = await contender(db, 'big', SHAPES.members100k)
  // Diagnostic: a bare Map.get of the workload's users on maps of 1 k and 100 k users — the memory floor.
  const userMap = (shape: TenantShape): Map<string, number> => new Map(snapshotOf(shape).groups.flatMap((g) => g.users.map((u) => [u, 1] as [string, number])))
  const maps = { small: userMap(SHAPES.members1k), big: userMap(SHAPES.members100k) }
  await app.register(policyCache, { db, tablePrefix: PREFIX, routes: false, syncIntervalMs: 0 })
  await app.ready()
  const engine = app.policyCache
  await agree(engine, 'small', small)
  await agree(engine, 'big', big)

  const syncRound = (tenant: string, w: { users: string[], permissions: string[] }): Round => (n) => {
    for (let i = 0; i < n; i++) if (engine.checkSync(tenant, w.users[i & mask], w.permissions[i & mask]) === true) sink++
  }
  const asyncRound = (tenant: string, w: Contender): Round => async (n) => {
    for (let i = 0; i < n; i++) if (await engine.check(tenant, w.users[i & mask], w.permissions[i & mask])) sink++
  }
  const casbinSyncRound = (tenant: string, w: Contender): Round => (n) => {
    for (let i = 0; i < n; i++) if (w.enforcer.enforceSync(w.users[i & mask], tenant, w.permissions[i & mask])) sink++
  }
  const casbinAsyncRound = (tenant: string, w: Contender): Round => async (n) => {
    for (let i = 0; i < n; i++) if (await w.enforcer.enforce(w.users[i & mask], tenant, w.permissions[i & mask])) sink++
  }
  log('check: checkSync')
  const sync = await rates({ small: syncRound('small', small), big: syncRound('big', big) }, ms, reps)
  const mapRound = (map: Map<string, number>, w: Contender): Round => (n) => {
    for (let i = 0; i < n; i++) sink += map.get(w.users[i & mask]) ?? 0
  }
  const lookup = await rates({ small: mapRound(maps.small, small), big: mapRound(maps.big, big) }, ms, reps)
  log('check: check (async)')
  const asy = await rates({ small: asyncRound('small', small), big: asyncRound('big', big) }, ms, reps)
  log('check: casbin enforceSync / enforce')
  const cs = await rates({ small: casbinSyncRound('small', small), big: casbinSyncRound('big', big) }, ms, reps)
  const ca = await rates({ small: casbinAsyncRound('small', small), big: casbinAsyncRound('big', big) }, ms, reps)
  await app.close()
  if (sink < 0) log('unreachable')
  const results = {
    '1k': { sync: sync.small, async: asy.small, casbinSync: cs.small, casbinAsync: ca.small, lookup: lookup.small },
    '100k': { sync: sync.big, async: asy.big, casbinSync: cs.big, casbinAsync: ca.big, lookup: lookup.big }
  } as Record<string, Record<string, Rate>>
  const one = results['1k']
  const hundred = results['100k']
  const row = (name: string, key: string): string[] => [
    name, fmt(one[key].cpu), fmt(hundred[key].cpu), ratio(one[key].cpu, hundred[key].cpu), fmt(one[key].wall), fmt(hundred[key].wall)
  ]
  const costRatio = one.sync.cpu / hundred.sync.cpu
  return {
    id: 'check',
    title: '1. In-process check',
    tables: [{
      caption: 'checks per CPU-second (one core) and per wall-second, medians of rounds; cost ratio = CPU time per check on 100 k ÷ on 1 k',
      rows: [
        ['check', '1 k members /cpu-s', '100 k members /cpu-s', 'cost ratio 100k/1k', '1 k /wall-s', '100 k /wall-s'],
        row('plugin `checkSync` (sync hot path)', 'sync'),
        row('plugin `check` (async)', 'async'),
        row('node-casbin `enforceSync` (RBAC with domains)', 'casbinSync'),
        row('node-casbin `enforce` (async)', 'casbinAsync'),
        ['plugin `checkSync` ÷ casbin `enforceSync`', ratio(one.sync.cpu, one.casbinSync.cpu), ratio(hundred.sync.cpu, hundred.casbinSync.cpu), '', '', ''],
        row('diagnostic: a bare `Map.get` of the same users in a map of the tenant\'s users', 'lookup')
      ]
    }],
    targets: [
      { name: 'sync check throughput (100 k tenant)', target: '≥ 5 M/s per core', measured: `${fmt(hundred.sync.cpu / 1e6)} M/cpu-s`, met: hundred.sync.cpu >= 5e6 },
      { name: 'sync check cost 100k/1k', target: '≤ 1.5', measured: fmt(costRatio), met: costRatio <= 1.5 }
    ],
    notes: [
      `The workload cycles through ${WORKLOAD} (user, permission) pairs: a third allowed by an exact grant, a third through a wildcard grant, a third denied. Both engines answer identically on all of them (checked before timing). Each user is in two of 50 groups; each group holds 4 grants, one a wildcard. casbin's matcher is \`g(r.sub, p.sub, r.dom) && r.dom == p.dom && keyMatch(r.obj, p.obj)\`.`,
      '"Per core" is measured as checks per CPU-second of the benchmark process (`process.cpuUsage`), so other load on the shared machine does not count against it; the wall-clock rates are shown beside it.',
      'What limits the 100k/1k ratio and the 100 k throughput: memory locality, not the algorithm. A check does the same operations on both tenants (one map lookup for the user, then one set lookup and one prefix test per group of the user), and nothing in it grows with the tenant. But the 1 k tenant\'s index fits in the CPU caches, while on the 100 k tenant the workload\'s 1 024 users are scattered over ~100 k map entries, so each check waits on cache misses. The user index is therefore laid out to touch as little memory as it can: the map\'s value is a small integer (stored in the map entry itself), the offset of the user\'s membership record in one `Int32Array` of group ids — where it used to be a per-user array of group objects, one more cache miss per check (with it: 4.0 M/cpu-s on 100 k, cost ratio 1.96, 26.5 MB). What remains is the map lookup itself: its hash bucket, its entry and the key string it compares, which the diagnostic row shows on its own — a bare `Map.get` of the same users slows down with the map\'s size although its work is the same.',
      'Optimisations made for this section (profiled with CPU-time microbenchmarks): the permission is validated by one character scan instead of a regular expression; a user maps to the offset of a record of group ids in one typed array (no name → group lookup, no per-user object); groups with few wildcards test them with `startsWith` (no slice allocation), and only when one of them begins with the permission\'s first character (a 32-bit mask of first characters per group: a denied check, or one answered by an exact grant of another group, usually tests no prefix at all); the tenant cache remembers the tenant it answered last, so repeated checks on one tenant skip the LRU bookkeeping.'
    ]
  }
}
