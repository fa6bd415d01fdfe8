/**
 * Model-based consistency tests (fast-check) over random sequences of writes, checks and network
 * faults on a three-instance fault cluster (test/helpers/fault-cluster.ts). Asserted after every step
 * and at the end of every run:
 *  - monotonic reads: no instance's revision of a tenant ever goes backwards;
 *  - read-your-writes: a check with minRevision=r answers from ≥ r, and its answer is the one the
 *    database's changelog gives at the revision it reports; a minRevision ahead of the database → 412;
 *  - acknowledged writes: `peers.acked === peers.total` means every instance answers from ≥ r at once;
 *  - revisions: writes (concurrent ones from two instances included) get unique, gap-free revisions;
 *  - convergence: once faults stop, every instance is at the database's revision after one sync
 *    round that started after the faults stopped (counted in rounds, not timed).
 * The same runs, with the same properties, also go over the real transports (pg-notify on
 * PostgreSQL, nats, redis: test/helpers/fault-transports.ts), the faults injected between the
 * transport's receipt and the engine. There, in addition, what the transport did before any fault:
 *  - every write that committed reached every other instance's receipt, unless a crash kept its
 *    notice from being sent — which on nats and redis is a crash between commit and publish, and
 *    on pg-notify cannot happen: the NOTIFY is part of the transaction, so a crash before the commit
 *    loses the change with its notice and a crash after it loses neither;
 *  - every notice received names a write the database committed, from the instance that sent it,
 *    carrying that write's change (a rolled-back transaction's NOTIFY never arrives).
 * Runs are seeded (FC_SEED overrides) and bounded in number and time.
 */
import fc from 'fast-check'
import { test, type Test } from 'tap'
import type { Kysely } from 'kysely'
import type { AuditEntry, Change, LoggedChange } from '../../lib/model.js'
import { NATS_URL, reachable, REDIS_URL, until } from '../helpers/brokers.js'
import { dropPrefixed, POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { CrashedError, startFaultCluster, type Fault, type FaultCluster, type FaultClusterOptions } from '../helpers/fault-cluster.js'
import { natsFaults, pgNotifyFaults, redisFaults } from '../helpers/fault-transports.js'

const INSTANCES = 3
const TENANTS = ['t1', 't2', 't3']
const GROUPS = ['g1', 'g2']
const USERS = ['alice', 'bob']
const GRANTS = ['doc:read', 'doc:write', 'doc:*']
const CHECKED = ['doc:read', 'doc:write']
const SYNC_INTERVAL_MS = 40
const SEED = Number(process.env.FC_SEED ?? 20261129)
/** Runs per real transport: each connects three clients and, on nats, a faulted write waits for its replies. */
const TRANSPORT_RUNS = 4
/** Over a transport, crashes are three times as frequent: what a crash loses differs per transport. */
const TRANSPORT_CRASH_WEIGHT = 3

type Command =
  | { kind: 'write', at: number, tenant: string, change: Change }
  | { kind: 'concurrent', at: [number, number], tenant: string, changes: [Change, Change] }
  | { kind: 'refresh', at: number, tenant: string, writer: number, change: Change }
  | { kind: 'check', at: number, tenant: string, user: string, permission: string, min: 'none' | 'token' | 'ahead' }
  | { kind: 'fault', mode: Fault }
  | { kind: 'partition', at: number }
  | { kind: 'crash', at: number }
  | { kind: 'recover' }
  | { kind: 'release', order: number[] }

const instance = fc.integer({ min: 0, max: INSTANCES - 1 })
const tenant = fc.constantFrom(...TENANTS)
const group = fc.constantFrom(...GROUPS)
const change: fc.Arbitrary<Change> = fc.oneof(
  { weight: 2, arbitrary: group.map((g): Change => ({ op: 'create-group', group: g })) },
  { weight: 1, arbitrary: group.map((g): Change => ({ op: 'delete-group', group: g })) },
  { weight: 3, arbitrary: fc.tuple(group, fc.constantFrom(...GRANTS)).map(([g, p]): Change => ({ op: 'add-permission', group: g, permission: p })) },
  { weight: 1, arbitrary: fc.tuple(group, fc.constantFrom(...GRANTS)).map(([g, p]): Change => ({ op: 'remove-permission', group: g, permission: p })) },
  { weight: 3, arbitrary: fc.tuple(group, fc.constantFrom(...USERS)).map(([g, u]): Change => ({ op: 'assign-user', group: g, user: u })) },
  { weight: 1, arbitrary: fc.tuple(group, fc.constantFrom(...USERS)).map(([g, u]): Change => ({ op: 'unassign-user', group: g, user: u })) }
)
const distinctPair = fc.tuple(instance, fc.integer({ min: 1, max: INSTANCES - 1 })).map(([a, d]): [number, number] => [a, (a + d) % INSTANCES])

/** The commands of a run; `crashWeight` makes crashes more frequent where what they mean is under test. */
const commandOf = (crashWeight: number): fc.Arbitrary<Command> => fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('write' as const), at: instance, tenant, change }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('concurrent' as const), at: distinctPair, tenant, changes: fc.tuple(change, change) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('refresh' as const), at: instance, tenant, writer: instance, change }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('check' as const), at: instance, tenant, user: fc.constantFrom(...USERS), permission: fc.constantFrom(...CHECKED), min: fc.constantFrom('none' as const, 'token' as const, 'token' as const, 'ahead' as const) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('fault' as const), mode: fc.constantFrom<Fault>('none', 'drop', 'duplicate', 'delay', 'hold') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('partition' as const), at: instance }) },
  { weight: crashWeight, arbitrary: fc.record({ kind: fc.constant('crash' as const), at: instance }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('recover' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('release' as const), order: fc.array(fc.nat({ max: 20 }), { maxLength: 8 }) }) }
)

class Violation extends Error {}
function expect (ok: boolean, message: string): void {
  if (!ok) throw new Violation(message)
}

/** Whether `user` may do `permission` in the state the changelog gives at `revision` (an independent model). */
function modelAllows (log: LoggedChange[], revision: number, user: string, permission: string): boolean {
  const groups = new Map<string, { grants: Set<string>, users: Set<string> }>()
  // A batch entry is its changes, in order, at one revision.
  const flat = log.flatMap((entry) => entry.op === 'batch' ? entry.changes.map((change) => ({ ...change, revision: entry.revision })) : [entry])
  for (const entry of flat) {
    if (entry.revision > revision) break
    const g = groups.get(entry.group)
    switch (entry.op) {
      case 'create-group': groups.set(entry.group, { grants: new Set(), users: new Set() }); break
      case 'delete-group': groups.delete(entry.group); break
      case 'add-permission': g?.grants.add(entry.permission); break
      case 'remove-permission': g?.grants.delete(entry.permission); break
      case 'assign-user': g?.users.add(entry.user); break
      case 'unassign-user': g?.users.delete(entry.user); break
    }
  }
  const matches = (grant: string) => grant === permission || (grant.endsWith(':*') && permission.startsWith(grant.slice(0, -1)))
  return [...groups.values()].some((g) => g.users.has(user) && [...g.grants].some(matches))
}

/** A change as the changelog holds it, without its revision, comparable as text. */
function canonical (change: Change | LoggedChange | AuditEntry['change']): string {
  return JSON.stringify(Object.entries(change).filter(([key]) => key !== 'revision').sort(([a], [b]) => a.localeCompare(b)))
}

/**
 * Over a real transport, what it did before any fault: every committed write's notice reached every
 * other instance (unless a crash kept it from being sent), and every notice received is a committed
 * write's, from its writer, with its change. Waits for the notices still on their way, bounded.
 */
async function checkReceipts (cluster: FaultCluster, where: string): Promise<number> {
  const { engines, network, truth } = cluster
  const committed = new Map<string, AuditEntry>()
  for (const t of TENANTS) {
    for (const entry of (await truth.changes(t, 0, 10000)).entries) committed.set(`${entry.origin}/${t}/${entry.revision}`, entry)
  }
  const expected = [...committed.keys()].filter((key) => !network.unsent.has(key)).flatMap((key) =>
    engines.map((engine, to) => ({ key, to })).filter(({ to }) => !key.startsWith(`${engines[to].serverId}/`)))
  const arrived = (): Set<string> => new Set(network.receipts.map((r) => `${r.to}:${r.origin}/${r.tenant}/${r.revision}`))
  await until(`${where}: every committed write's notice reached every other instance`, () => {
    const got = arrived()
    return expected.every(({ key, to }) => got.has(`${to}:${key}`))
  }, 10000).catch(() => {
    const got = arrived()
    const missing = expected.filter(({ key, to }) => !got.has(`${to}:${key}`)).map(({ key, to }) => `${key} → ${to}`)
    throw new Violation(`${where}: notices never received: ${missing.join(', ')}`)
  })
  for (const receipt of network.receipts) {
    const entry = committed.get(`${receipt.origin}/${receipt.tenant}/${receipt.revision}`)
    expect(entry !== undefined, `${where}: instance ${receipt.to} received a notice of ${receipt.tenant}@${receipt.revision} from ${receipt.origin}, which the database has not from it`)
    expect(receipt.carried === undefined || canonical(receipt.carried) === canonical(entry!.change),
      `${where}: the notice of ${receipt.tenant}@${receipt.revision} carried ${JSON.stringify(receipt.carried)}, the database committed ${JSON.stringify(entry!.change)}`)
  }
  return network.receipts.length
}

/** What one run observed, for the measurements reported at the end. */
/** `carried`: catch-ups served by the change a notice carried (the path without a database read). */
/** `lost`: notices dropped or held back by the network; `behind`: (instance, tenant) pairs behind the database when the faults stopped. */
/** `received`: notice entries a real transport handed to the fault layer (0 in process); `crashedAfter`/`crashedBefore`: writes a crash cut short after / before their commit. */
interface RunReport { convergedMs: number, steps: number, faults: number, carried: number, lost: number, behind: number, received: number, crashedAfter: number, crashedBefore: number }

type ClusterFactory = (options: FaultClusterOptions) => Promise<FaultCluster>

async function run (commands: Command[], seed: number, start: ClusterFactory): Promise<RunReport> {
  const cluster = await start({ instances: INSTANCES, syncIntervalMs: SYNC_INTERVAL_MS, seed })
  const { engines, network, truth } = cluster
  try {
    // Every instance caches every tenant: the hard case (a cached tenant must catch up, not load).
    for (const engine of engines) for (const t of TENANTS) await engine.revision(t)
    const seen = engines.map(() => new Map(TENANTS.map((t) => [t, 0])))
    const tokens = new Map<string, number>()
    const written = new Map<string, Map<number, Change>>(TENANTS.map((t) => [t, new Map()]))

    const observe = (i: number, t: string, revision: number, where: string) => {
      const before = seen[i].get(t) ?? 0
      expect(revision >= before, `${where}: instance ${i} went back on ${t} from ${before} to ${revision}`)
      seen[i].set(t, revision)
    }
    const sample = async (where: string) => {
      for (const [i, engine] of engines.entries()) for (const t of TENANTS) observe(i, t, await engine.revision(t), where)
    }
    const dbRevision = async (t: string) => (await truth.revisions([t])).get(t)?.revision ?? 0

    const write = async (i: number, t: string, c: Change, where: string) => {
      try {
        const outcome = await engines[i].write(t, c)
        if (!outcome.changed) return
        const mine = written.get(t)!
        expect(!mine.has(outcome.revision), `${where}: revision ${outcome.revision} of ${t} given to two writes`)
        mine.set(outcome.revision, c)
        tokens.set(t, Math.max(tokens.get(t) ?? 0, outcome.revision))
        if (outcome.peers.total > 0 && outcome.peers.acked === outcome.peers.total) {
          for (const [j, engine] of engines.entries()) {
            const revision = await engine.revision(t)
            expect(revision >= outcome.revision, `${where}: acknowledged by all, yet instance ${j} answers ${t} from ${revision} < ${outcome.revision}`)
          }
        }
      } catch (err) {
        const { code, cause } = err as { code?: string, cause?: unknown }
        // A crash after the commit, or (pg-notify) before it: the store's failure then wraps it.
        if (err instanceof CrashedError || cause instanceof CrashedError || code === 'FST_POLICY_CACHE_GROUP_NOT_FOUND') return
        throw err
      }
    }

    let faults = 0
    for (const [step, cmd] of commands.entries()) {
      const where = `step ${step} ${JSON.stringify(cmd)}`
      switch (cmd.kind) {
        case 'write':
          await write(cmd.at, cmd.tenant, cmd.change, where)
          break
        case 'concurrent':
          await Promise.all([write(cmd.at[0], cmd.tenant, cmd.changes[0], where), write(cmd.at[1], cmd.tenant, cmd.changes[1], where)])
          break
        case 'refresh': {
          // A full reload racing a write (and its notice): the reload must never move a revision back.
          const [reloaded] = await Promise.all([engines[cmd.at].refresh(cmd.tenant), write(cmd.writer, cmd.tenant, cmd.change, where)])
          expect(reloaded.revision >= (seen[cmd.at].get(cmd.tenant) ?? 0), `${where}: refresh answered ${reloaded.revision}, behind what instance ${cmd.at} already answered`)
          break
        }
        case 'check': {
          const engine = engines[cmd.at]
          if (cmd.min === 'ahead') {
            const ahead = await dbRevision(cmd.tenant) + 1
            const err = await engine.decide(cmd.tenant, cmd.user, cmd.permission, { minRevision: ahead }).then(() => null, (e: { code?: string }) => e)
            expect(err?.code === 'FST_POLICY_CACHE_REVISION_AHEAD', `${where}: minRevision ${ahead} beyond the database gave ${JSON.stringify(err)}`)
            break
          }
          const min = cmd.min === 'token' ? tokens.get(cmd.tenant) ?? 0 : undefined
          const decision = await engine.decide(cmd.tenant, cmd.user, cmd.permission, { minRevision: min })
          expect(decision.revision >= (min ?? 0), `${where}: minRevision ${min} answered from ${decision.revision}`)
          observe(cmd.at, cmd.tenant, decision.revision, where)
          const log = await truth.changesSince(cmd.tenant, 0) ?? []
          expect(decision.allowed === modelAllows(log, decision.revision, cmd.user, cmd.permission),
            `${where}: answered ${decision.allowed} at revision ${decision.revision}, the changelog says otherwise`)
          break
        }
        case 'fault':
          network.mode = cmd.mode
          faults++
          break
        case 'partition':
          network.partitioned.add(cmd.at)
          faults++
          break
        case 'crash':
          network.crashed.add(cmd.at)
          faults++
          break
        case 'recover':
          network.heal()
          break
        case 'release':
          network.release(cmd.order)
          break
      }
      await sample(where)
    }

    // Faults stop. Held notices stay lost for now: convergence must come from the sync alone.
    network.heal()
    const healed = performance.now()
    let behind = 0
    for (const t of TENANTS) {
      const expected = await dbRevision(t)
      for (const engine of engines) if (await engine.revision(t) < expected) behind++
    }
    await cluster.nextSyncRound()
    const convergedMs = performance.now() - healed
    for (const t of TENANTS) {
      const expected = await dbRevision(t)
      for (const [i, engine] of engines.entries()) {
        const revision = await engine.revision(t)
        expect(revision === expected, `after one sync round, instance ${i} is at ${revision} on ${t}, the database at ${expected}`)
        observe(i, t, revision, 'converged')
        const held = JSON.stringify((await engine.tenant(t)).groups)
        expect(held === JSON.stringify((await truth.snapshot(t)).groups), `after one sync round, instance ${i} holds other contents of ${t} than the database`)
      }
      // Gap-free, duplicate-free revisions, each successful write at its own revision.
      const log = await truth.changesSince(t, 0) ?? []
      expect(log.every((entry, k) => entry.revision === k + 1) && log.length === expected, `changelog of ${t} is not 1..${expected}: ${log.map((e) => e.revision).join(',')}`)
      for (const [revision, c] of written.get(t)!) {
        const entry = log[revision - 1]
        expect(entry?.op === c.op && entry.group === c.group, `revision ${revision} of ${t} is not the write that got it`)
      }
    }

    const received = cluster.transports.length === 0 ? 0 : await checkReceipts(cluster, 'over the transport')

    // Late, reordered notices after convergence change nothing.
    network.release([3, 1, 4, 1, 5])
    await network.quiesce()
    await sample('after late notices')
    return { convergedMs, steps: commands.length, faults, carried: engines.reduce((n, engine) => n + engine.stats().carriedCatchUps, 0), lost: network.stats.dropped + network.stats.held, behind, received, crashedAfter: network.stats.crashedAfterCommit, crashedBefore: network.stats.crashedBeforeCommit }
  } finally {
    await cluster.close()
  }
}

/**
 * Runs the property `numRuns` times (seeded, bounded in time) and reports what it measured. Over a
 * transport (`transport`), crashes weigh `TRANSPORT_CRASH_WEIGHT`; `inTransaction`: it publishes in
 * the write's transaction, so a crash can also come before the commit.
 */
async function property (t: Test, numRuns: number, start: ClusterFactory, transport?: { inTransaction: boolean }): Promise<void> {
  const reports: RunReport[] = []
  const command = commandOf(transport === undefined ? 1 : TRANSPORT_CRASH_WEIGHT)
  await fc.assert(
    fc.asyncProperty(fc.array(command, { minLength: 15, maxLength: 60 }), fc.nat(), async (commands, seed) => {
      reports.push(await run(commands, seed, start))
    }),
    { numRuns, seed: SEED, timeout: 15000, interruptAfterTimeLimit: 40000, markInterruptAsFailure: true }
  )
  // The properties mean something only if the faults really cost notices (seeded: the same every run).
  const lost = reports.reduce((n, r) => n + r.lost, 0)
  t.ok(lost > 0, `the network dropped or held back ${lost} notices`)
  const carried = reports.reduce((n, r) => n + r.carried, 0)
  t.ok(carried > 0, `notices carry their change and the runs applied ${carried} of them without a changelog query`)
  const sorted = reports.map((r) => r.convergedMs).sort((a, b) => a - b)
  const median = sorted[Math.floor(sorted.length / 2)]
  if (transport !== undefined) {
    const sum = (field: 'received' | 'crashedAfter' | 'crashedBefore'): number => reports.reduce((n, r) => n + r[field], 0)
    t.ok(sum('received') > 0, `${sum('received')} notice entries received over the transport`)
    t.ok(sum('crashedAfter') > 0, `${sum('crashedAfter')} writes cut short by a crash after their commit`)
    if (transport.inTransaction) t.ok(sum('crashedBefore') > 0, `${sum('crashedBefore')} writes lost whole by a crash before their commit`)
  }
  t.comment(`seed ${SEED}: ${reports.reduce((n, r) => n + r.steps, 0)} steps, ${reports.reduce((n, r) => n + r.faults, 0)} faults;` +
    ` faults stop → all converged: median ${median.toFixed(0)} ms, max ${sorted[sorted.length - 1].toFixed(0)} ms (syncIntervalMs ${SYNC_INTERVAL_MS});` +
    ` ${reports.filter((r) => r.behind > 0).length} of ${reports.length} runs had an instance behind when the faults stopped`)
}

test('instances converge, reads are monotonic, minRevision holds, revisions are unique, under random faults', async (t) => {
  await property(t, 25, startFaultCluster)
})

/** Clusters on fresh tables of the test PostgreSQL (dropped after each run); `pgNotify`: notices over pg-notify. */
function onPostgres (db: Kysely<any>, pgNotify = false): ClusterFactory {
  return async (options) => {
    const tablePrefix = randomPrefix()
    const transport = pgNotify ? pgNotifyFaults(`${tablePrefix}notify`) : undefined
    const cluster = await startFaultCluster({ ...options, db, tablePrefix, maxDbDelayMs: 0, transport })
    return { ...cluster, close: async () => { await cluster.close(); await dropPrefixed(db, tablePrefix) } }
  }
}

test('the same on PostgreSQL: concurrent writes from two instances really race on the tenant row', async (t) => {
  const db = await postgresDb()
  if (db === undefined) return unreachable(t, 'PostgreSQL', POSTGRES_URL)
  t.teardown(() => db.destroy())
  await property(t, 8, onPostgres(db))
})

test('over pg-notify: the NOTIFY in the write\'s transaction, faults between the listener and the engine', async (t) => {
  const db = await postgresDb()
  if (db === undefined) return unreachable(t, 'PostgreSQL', POSTGRES_URL)
  t.teardown(() => db.destroy())
  await property(t, TRANSPORT_RUNS, onPostgres(db, true), { inTransaction: true })
})

test('over nats: replies are the acknowledgements, faults between the subscription and the engine', async (t) => {
  if (!await reachable(NATS_URL)) return unreachable(t, 'NATS', NATS_URL)
  await property(t, TRANSPORT_RUNS, (options) => startFaultCluster({ ...options, transport: natsFaults(INSTANCES) }), { inTransaction: false })
})

test('over redis: faults between the subscriber and the engine', async (t) => {
  if (!await reachable(REDIS_URL)) return unreachable(t, 'Redis', REDIS_URL)
  await property(t, TRANSPORT_RUNS, (options) => startFaultCluster({ ...options, transport: redisFaults() }), { inTransaction: false })
})
