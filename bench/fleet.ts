/**
 * Section 10 — large fleets: one writer and N − 1 peers, N = 3, 10, 30, 100, for each transport
 * (webhook, pg-notify, nats, redis; the plugin on PostgreSQL) and BentoCache's Redis bus beside them.
 * Per write: its latency on the writer, the writer process's CPU time during it, and when the change
 * became visible in every peer's own check. Then pg-notify's sustained writes/s with N − 1 listeners.
 *
 * Harness (bench/fleet-env.ts, bench/fleet-worker.ts): compiled JavaScript (no tsx), the writer alone
 * in its process, the peers up to ten per process started one after the other, at most two processes
 * starting at a time; servers of the bench's own; each peer process in a network namespace of its own
 * when the bench runs as root. Everything is bounded (start, each write, the whole section) and torn
 * down at the end, also on failure. `BENCH_FLEET_SIZES=3,30` and
 * `BENCH_FLEET_SYSTEMS=nats,redis` run only some (development); `BENCH_FLEET_PROFILE=<dir>` writes a
 * CPU profile of each writer process there (node --cpu-prof).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { loadavg } from 'node:os'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { drive, SECRET, type Driven } from './cluster.js'
import { dropPrefixed } from '../test/helpers/databases.js'
import { casbinCsv, casbinRules, seedTenant, SHAPES, snapshotOf } from './fixtures.js'
import { fleetEnv, type FleetEnv, type Namespace } from './fleet-env.js'
import type { FleetSystem, WorkerConfig } from './fleet-worker.js'
import { fmt, median, now, percentile, ratio, sleep, type RunOptions, type SectionResult, type Target } from './stats.js'

const SYSTEMS: FleetSystem[] = ['webhook', 'pg-notify', 'nats', 'redis', 'BentoCache']
const BROKERS: FleetSystem[] = ['pg-notify', 'nats', 'redis']
const PER_PROCESS = 10
/** The tenant every measured write goes to, and those of the sustained pg-notify run. */
const TENANT = 'small'
const BURST_TENANTS = Array.from({ length: 8 }, (_, i) => `burst${i}`)

interface Worker {
  driven: Driven
  count: number
  urls: string[]
  /** Resolves with the worker's report on change `seq` (per instance, NaN: not seen in time). */
  visible (seq: number): Promise<{ at: number[], late: number }>
}

/** Starts one worker process (in namespace `ns` when given) and waits for its instances. */
async function startWorker (env: FleetEnv, config: WorkerConfig, ns: Namespace | undefined): Promise<Worker> {
  const options = { env: { ...process.env, FLEET_WORKER: JSON.stringify(config) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] as Array<'ignore' | 'inherit' | 'ipc'> }
  const child: ChildProcess = ns === undefined
    ? fork(env.workerScript, [], { ...options, execArgv: config.first === 1 && process.env.BENCH_FLEET_PROFILE !== undefined ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_FLEET_PROFILE] : [] })
    : fork(env.workerScript, [], { ...options, execPath: 'ip', execArgv: ['netns', 'exec', ns.name, process.execPath] })
  env.adopt(child)
  const reports = new Map<number, { at: number[], late: number }>()
  const waiters = new Map<number, (report: { at: number[], late: number }) => void>()
  const driven = drive(child, `fleet ${config.system} worker ${config.first}`, (msg) => {
    if (msg.event !== 'visible') return
    const report = { at: (msg.at as Array<number | null>).map((v) => v ?? NaN), late: msg.late }
    reports.set(msg.seq, report)
    waiters.get(msg.seq)?.(report)
  }, 20000 + 5000 * config.count)
  try {
    const { urls } = await driven.ready
    return {
      driven,
      count: config.count,
      urls,
      visible: (seq) => {
        const report = reports.get(seq)
        if (report !== undefined) return Promise.resolve(report)
        return new Promise((resolve) => waiters.set(seq, (r) => { waiters.delete(seq); reports.delete(seq); resolve(r) }))
      }
    }
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  }
}

/** Runs `tasks` at most `limit` at a time; on a failure, closes the workers that started and rethrows. */
async function startAll (tasks: Array<() => Promise<Worker>>, limit: number): Promise<Worker[]> {
  const started: Worker[] = []
  let failure: unknown
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, async () => {
    while (next < tasks.length && failure === undefined) {
      const task = tasks[next++]
      try { started.push(await task()) } catch (err) { failure ??= err }
    }
  }))
  if (failure !== undefined) {
    await Promise.all(started.map((w) => w.driven.close()))
    throw failure
  }
  return started
}

interface Fleet {
  system: FleetSystem
  n: number
  processes: number
  startSeconds: number
  /** Per write: returned on the writer, ms; the writer's CPU during it, ms. */
  writes: number[]
  cpu: number[]
  /** Per (write, peer): visible − write start; per write: the last peer's. */
  perPeer: number[]
  allPeers: number[]
  visibleAtReturn: number
  ackedAll: number
  /** The largest `peers.total` a write reported (what the writer waited for). */
  total: number
  count: number
  missed: number
  /** Peer observations first made by the 20 ms safety net (late by up to 20 ms). */
  late: number
  /** Per measured write: CPU time of all peer processes together, and of the servers (ms). */
  peersCpu: number
  serversCpu: number
  /** pg-notify: sustained writes. */
  sustained?: Array<{ tenants: number, perSecond: number, cpuPerWrite: number, drainMs: number, converged: boolean }>
}

/** `count` writes, one at a time: watch on every peer, write, wait for every peer's report. */
async function measure (fleet: Fleet | undefined, writer: Worker, peers: Worker[], count: number, next: { seq: number }, timeoutMs: number): Promise<void> {
  for (let k = 0; k < count; k++) {
    const seq = next.seq++
    await Promise.all(peers.map((w) => w.driven.call('watch', { tenant: TENANT, seq, timeoutMs })))
    const reports = peers.map((w) => w.visible(seq))
    const out = await writer.driven.call<{ start: number, end: number, cpuMs: number, acked?: number, total?: number }>('write', { tenant: TENANT, seq }, timeoutMs)
    const seen = (await Promise.all(reports))
    if (fleet === undefined) continue
    fleet.count++
    fleet.writes.push(out.end - out.start)
    fleet.cpu.push(out.cpuMs)
    fleet.total = Math.max(fleet.total, out.total ?? 0)
    if (out.total !== undefined && out.acked === out.total) fleet.ackedAll++
    const at = seen.flatMap((r) => r.at)
    fleet.late += seen.reduce((sum, r) => sum + r.late, 0)
    if (at.some(Number.isNaN)) { fleet.missed++; continue }
    const latencies = at.map((t) => t - out.start)
    fleet.perPeer.push(...latencies)
    fleet.allPeers.push(Math.max(...latencies))
    if (at.every((t) => t <= out.end)) fleet.visibleAtReturn++
    await sleep(3)
  }
}

/** pg-notify: writes back to back on `tenants` for `ms`, then how long until every peer has the last revision. */
async function sustain (writer: Worker, peers: Worker[], tenants: string[], ms: number, next: { seq: number }): Promise<NonNullable<Fleet['sustained']>[number]> {
  const out = await writer.driven.call<{ count: number, seconds: number, next: number, cpuMs: number }>('burst', { tenants, ms, from: next.seq }, ms + 60000)
  next.seq = out.next
  const ended = now()
  const target = await Promise.all(tenants.map(async (tenant) => (await writer.driven.call<Array<number | null>>('revisions', { tenant }))[0]))
  let converged = false
  while (!converged && now() - ended < 30000) {
    const behind = await Promise.all(peers.map(async (w) => {
      for (const [i, tenant] of tenants.entries()) {
        const revisions = await w.driven.call<Array<number | null>>('revisions', { tenant })
        if (revisions.some((r) => r === null || r < (target[i] ?? 0))) return true
      }
      return false
    }))
    converged = !behind.includes(true)
    if (!converged) await sleep(20)
  }
  return { tenants: tenants.length, perSecond: out.count / out.seconds, cpuPerWrite: out.cpuMs / out.count, drainMs: now() - ended, converged }
}

async function runSize (env: FleetEnv, system: FleetSystem, n: number, counts: { warmup: number, writes: number, burstMs: number }, log: (line: string) => void): Promise<Fleet> {
  const prefix = `fleet_${randomBytes(4).toString('hex')}_`
  const bentoName = `fleet${randomBytes(4).toString('hex')}`
  const admin = new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: env.pgUrl, max: 2 }) }) })
  const workers: Worker[] = []
  try {
    if (system !== 'BentoCache') {
      for (const tenant of [TENANT, ...BURST_TENANTS]) await seedTenant(admin, prefix, tenant, snapshotOf(SHAPES.small))
    }
    const base: Omit<WorkerConfig, 'count' | 'first' | 'host'> = {
      system, pgUrl: env.pgUrl, natsUrl: env.natsUrl, redis: env.redis, tablePrefix: prefix, secret: SECRET, poolSize: 2, bentoName
    }
    // The peers spread evenly over as few processes as hold at most PER_PROCESS each.
    const processes = Math.ceil((n - 1) / PER_PROCESS)
    const sizes = Array.from({ length: processes }, (_, i) => Math.floor((n - 1) / processes) + (i < (n - 1) % processes ? 1 : 0))
    const started = now()
    log(`fleet: ${system}, ${n} instances: starting ${n - 1} peers in ${sizes.length} processes`)
    let first = 2
    const peers = await startAll(sizes.map((count, i) => {
      const ns = env.namespaces.length === 0 ? undefined : env.namespaces[i % env.namespaces.length]
      const config: WorkerConfig = { ...base, count, first, host: ns?.address ?? env.hostAddress }
      first += count
      return () => startWorker(env, config, ns)
    }), 2)
    workers.push(...peers)
    const writer = await startWorker(env, { ...base, count: 1, first: 1, host: env.hostAddress, poolSize: 10, peers: peers.flatMap((w) => w.urls) }, undefined)
    workers.push(writer)
    const startSeconds = (now() - started) / 1000
    if (system === 'BentoCache') {
      const rules = casbinCsv(casbinRules(TENANT, snapshotOf(SHAPES.small))).trim().split('\n')
      await writer.driven.call('seed', { tenant: TENANT, rules })
    }
    const tenants = system === 'pg-notify' ? [TENANT, ...BURST_TENANTS] : [TENANT]
    // Two processes at a time, as they started: a hundred instances loading at once on two cores
    // would make each load wait for seconds.
    for (const tenant of tenants) await startAll(workers.map((w) => async () => { await w.driven.call('load', { tenant }, 120000); return w }), 2)
    const fleet: Fleet = {
      system,
      n,
      processes: workers.length,
      startSeconds,
      writes: [],
      cpu: [],
      perPeer: [],
      allPeers: [],
      visibleAtReturn: 0,
      ackedAll: 0,
      total: 0,
      count: 0,
      missed: 0,
      late: 0,
      peersCpu: NaN,
      serversCpu: NaN
    }
    const next = { seq: 1 }
    log(`fleet: ${system}, ${n} instances: started in ${fmt(startSeconds)} s; ${counts.warmup} warm-up + ${counts.writes} writes (load ${loadavg()[0].toFixed(2)})`)
    await measure(undefined, writer, peers, counts.warmup, next, 10000)
    const cpu = async (): Promise<number> => (await Promise.all(peers.map((w) => w.driven.call<NodeJS.CpuUsage>('cpu'))))
      .reduce((sum, used) => sum + (used.user + used.system) / 1000, 0)
    const [peersBefore, serversBefore] = [await cpu(), env.serverCpuMs()]
    await measure(fleet, writer, peers, counts.writes, next, 10000)
    fleet.peersCpu = (await cpu() - peersBefore) / fleet.count
    fleet.serversCpu = (env.serverCpuMs() - serversBefore) / fleet.count
    if (system === 'pg-notify') {
      log(`fleet: pg-notify, ${n} instances: sustained writes, 1 and ${BURST_TENANTS.length} tenants in parallel`)
      fleet.sustained = [
        await sustain(writer, peers, BURST_TENANTS.slice(0, 1), counts.burstMs, next),
        await sustain(writer, peers, BURST_TENANTS, counts.burstMs, next)
      ]
    }
    return fleet
  } finally {
    await Promise.all(workers.map((w) => w.driven.close()))
    if (system !== 'BentoCache') await dropPrefixed(admin, prefix).catch(() => {})
    await admin.destroy()
  }
}

/** The systems to run (BENCH_FLEET_SYSTEMS=nats,redis, else all). */
function systemsOf (): FleetSystem[] {
  const given = process.env.BENCH_FLEET_SYSTEMS?.split(',')
  return given === undefined ? SYSTEMS : SYSTEMS.filter((s) => given.includes(s))
}

/** The sizes to run (BENCH_FLEET_SIZES, else 3, 10, 30, 100; --quick: 3 and 10). */
function sizesOf (quick: boolean): number[] {
  const given = process.env.BENCH_FLEET_SIZES
  if (given !== undefined) return given.split(',').map(Number).filter((v) => Number.isInteger(v) && v >= 2)
  return quick ? [3, 10] : [3, 10, 30, 100]
}

export async function runFleet ({ quick, log }: RunOptions): Promise<SectionResult> {
  const sizes = sizesOf(quick)
  const counts = quick ? { warmup: 3, writes: 10, burstMs: 1000 } : { warmup: 10, writes: 100, burstMs: 3000 }
  const biggest = Math.max(...sizes)
  const env = await fleetEnv(biggest + 2 * Math.ceil(biggest / PER_PROCESS) + 60, Math.ceil((biggest - 1) / PER_PROCESS), log)
  const fleets: Fleet[] = []
  const skipped: string[] = []
  const deadline = setTimeout(() => {
    process.stderr.write('fleet: the section did not finish within its time limit; stopping\n')
    process.exit(1)
  }, (quick ? 15 : 90) * 60000)
  try {
    for (const n of sizes) {
      for (const system of systemsOf()) {
        const connections = (system === 'pg-notify' ? n : 0) + 2 * Math.ceil((n - 1) / PER_PROCESS) + 14
        if (system !== 'BentoCache' && connections > env.pgConnections) {
          skipped.push(`${system} at ${n} instances (needs ${connections} PostgreSQL connections, ${env.pgConnections} available)`)
          continue
        }
        fleets.push(await runSize(env, system, n, counts, log))
      }
    }
  } finally {
    clearTimeout(deadline)
    env.close()
  }
  return report(fleets, sizes, counts, env.notes, skipped)
}

/** What bounds "visible on all" at the largest size: the peers' CPU per write, spread over two cores. */
function limits (get: (system: FleetSystem, n: number) => Fleet | undefined, sizes: number[]): string {
  const n = Math.max(...sizes)
  const parts = SYSTEMS.flatMap((system) => {
    const f = get(system, n)
    return f === undefined ? [] : [`${system} ${fmt(f.peersCpu)} ms (${fmt(f.peersCpu / (n - 1))} ms per peer)`]
  })
  return `What limits propagation to all. At ${n} instances a write costs the peer processes together ${parts.join(', ')} of CPU time — every peer receives, verifies and applies it, and answers where the transport acknowledges. On two cores that work alone keeps the last peer from seeing a write sooner than half of it after the write, before any waiting for a core the other jobs on the machine hold; the pg-notify row adds PostgreSQL's own work (servers' CPU: its listening backends are each woken for every NOTIFY). No transport changes that sum much: it is per peer, and the peers share the two cores.`
}

function report (fleets: Fleet[], sizes: number[], counts: { warmup: number, writes: number, burstMs: number }, envNotes: string[], skipped: string[]): SectionResult {
  const get = (system: FleetSystem, n: number): Fleet | undefined => fleets.find((f) => f.system === system && f.n === n)
  const rows: string[][] = [['system', 'instances', 'processes', 'write p50 ms', 'write p99 ms', 'writer CPU per write ms', 'all peers\' CPU per write ms', 'servers\' CPU per write ms', 'visible on all p50 ms', 'visible on all p99 ms', 'per peer p50 ms', 'visible everywhere at return', 'acked = total', 'missed', 'started in s']]
  for (const n of sizes) {
    for (const system of SYSTEMS) {
      const f = get(system, n)
      if (f === undefined) continue
      const ok = f.count - f.missed
      rows.push([system, String(n), String(f.processes), fmt(median(f.writes)), fmt(percentile(f.writes, 99)), fmt(median(f.cpu)), fmt(f.peersCpu), fmt(f.serversCpu),
        fmt(median(f.allPeers)), fmt(percentile(f.allPeers, 99)), fmt(median(f.perPeer)), `${f.visibleAtReturn}/${ok}`,
        system === 'webhook' || system === 'nats' ? `${f.ackedAll}/${f.count} (of ${f.total})` : '—', String(f.missed), fmt(f.startSeconds)])
    }
  }
  const sustained: string[][] = [['pg-notify listeners', 'tenants written in parallel', 'writes/s', 'writer CPU per write ms', 'every listener caught up after the last write, ms']]
  for (const n of sizes) {
    for (const s of get('pg-notify', n)?.sustained ?? []) {
      sustained.push([String(n - 1), String(s.tenants), fmt(s.perSecond), fmt(s.cpuPerWrite), s.converged ? fmt(s.drainMs) : 'not within 30 s'])
    }
  }
  const cpuRatio = (system: FleetSystem): number => median(get(system, 100)?.cpu ?? []) / median(get(system, 3)?.cpu ?? [])
  const p99All = (system: FleetSystem, n: number): number => percentile(get(system, n)?.allPeers ?? [], 99)
  const targets: Target[] = []
  for (const system of BROKERS) {
    const r = cpuRatio(system)
    targets.push({ name: `${system}: writer CPU per write, 100 ÷ 3 instances`, target: '≤ 1.2×', measured: Number.isFinite(r) ? `${fmt(r)}×` : 'not measured', met: r <= 1.2 })
  }
  for (const [n, limit] of [[30, 20], [100, 50]]) {
    for (const system of SYSTEMS.filter((s) => s !== 'BentoCache')) {
      const p = p99All(system, n)
      targets.push({ name: `${system}: visible on all p99, ${n} instances`, target: `≤ ${limit} ms`, measured: Number.isFinite(p) ? `${fmt(p)} ms` : 'not measured', met: p <= limit })
    }
  }
  const crossover = sizes.find((n) => {
    const web = get('webhook', n)
    const nats = get('nats', n)
    // Beyond this run's noise: half again as slow and as costly as nats, which keeps the same promise.
    return web !== undefined && nats !== undefined && median(web.writes) > 1.5 * median(nats.writes) && median(web.cpu) > 1.5 * median(nats.cpu)
  })
  targets.push({
    name: 'where the webhook transport stops being the right choice',
    target: 'published',
    measured: crossover === undefined ? `not within ${Math.max(...sizes)} instances` : `from ${crossover} instances (webhook's write p50 and writer CPU > 1.5× nats')`,
    met: get('webhook', Math.max(...sizes)) !== undefined
  })
  const series = (value: (f: Fleet) => number): Record<string, Array<[number, number]>> => Object.fromEntries(SYSTEMS.map((system) =>
    [system, sizes.flatMap((n): Array<[number, number]> => { const f = get(system, n); return f === undefined ? [] : [[n, value(f)]] })]))
  const lates = fleets.reduce((sum, f) => sum + f.late, 0)
  const observations = fleets.reduce((sum, f) => sum + f.count * (f.n - 1), 0)
  return {
    id: 'fleet',
    title: '10. Large fleets: every transport from 3 to 100 instances',
    tables: [
      { caption: 'one writer, N − 1 peers; "visible on all" = write start → the last peer\'s own check shows the change; writer CPU = the writer process\'s user + system time during the write call', rows },
      { caption: `pg-notify, sustained: writes back to back for ${counts.burstMs / 1000} s on one tenant, then on ${BURST_TENANTS.length} tenants in parallel, with N − 1 listening instances`, rows: sustained },
      {
        caption: 'ratios against 3 instances (writer CPU per write, visible on all p99)',
        rows: [['system', ...sizes.map((n) => `CPU ${n} ÷ 3`), ...sizes.map((n) => `all p99 ${n} ÷ 3`)], ...SYSTEMS.map((system) => [system,
          ...sizes.map((n) => ratio(median(get(system, n)?.cpu ?? []), median(get(system, 3)?.cpu ?? []))),
          ...sizes.map((n) => ratio(p99All(system, n), p99All(system, 3)))])]
      }
    ],
    targets,
    notes: [
      `Method. One writer and N − 1 peers, all on one PostgreSQL (the plugin; BentoCache on Redis); the periodic sync is off, so only the transport makes a write visible elsewhere. For each system and size: ${counts.warmup} warm-up writes, then ${counts.writes} measured writes, one at a time (3 ms apart), each adding a grant to a 40-rule tenant that every instance has loaded. Before each write every peer is told which change to watch for; it checks its own engine (\`checkSync\`; BentoCache \`get\`) on the event-loop turn after any of its process's sockets received data, and every 20 ms as a safety net (${lates} of ${observations} observations came from the safety net, i.e. up to 20 ms late). Timestamps are \`performance.timeOrigin + performance.now()\`, one clock for the host's processes. A change not seen on every peer within 10 s counts as missed.`,
      `Harness. Starting 100 instances on 2 cores: the instance processes run JavaScript compiled once at the start of the section (TypeScript's transpiler over lib/ and bench/fleet-worker.ts into a temporary directory; no tsx); the writer is alone in its process, so that process.cpuUsage() is its own cost; the peers are grouped up to ${PER_PROCESS} per process (${Math.ceil(99 / PER_PROCESS)} processes at 100 instances), started one after the other within a process, at most two processes starting at a time. Instances of one process share one pool of 2 PostgreSQL connections (the writer: 10); pg-notify adds each instance's own listening connection. Peers in one process take turns on its event loop, as they would on one core; "started in" is the time to start every instance of the size.`,
      ...envNotes,
      'All peers\' CPU per write: the CPU time of every peer process together (process.cpuUsage over the measured writes, including the instances\' background work: probes, presence) ÷ writes — what one write costs the fleet besides the writer. Servers\' CPU per write: the bench\'s own PostgreSQL (postmaster and backends, the listening ones included), nats-server and redis-server, from /proc, ÷ writes (10 ms ticks, summed over the run).',
      'Writer CPU per write is the writer process\'s user + system time from the write call to its return (process.cpuUsage), the median over the writes: the transaction\'s client side, signing, sending — for webhook one HTTP request per peer, for nats one publish and the replies of every peer, for pg-notify the NOTIFY inside the transaction, for redis one PUBLISH — and whatever the process\'s event loop did meanwhile. The database\'s and the brokers\' own CPU is not in it.',
      '"Visible everywhere at return" counts writes after whose return every peer\'s check already showed the change; "acked = total" is the plugin\'s own report (webhook and nats wait for acknowledgements, bounded by ackTimeoutMs = 200 ms, the default). pg-notify, redis and BentoCache return without waiting.',
      '"Visible everywhere at return" is measured by each peer\'s own check on the event-loop turn after the data arrived, so it undercounts when a peer process is descheduled between applying a notice (and acknowledging it) and that check; "acked = total" is the plugin\'s own account of what its guarantee rests on.',
      limits(get, sizes),
      ...(skipped.length > 0 ? [`Not measured: ${skipped.join('; ')}.`] : []),
      `Load average when the section ended: ${loadavg().map((l) => l.toFixed(2)).join(' / ')}. All processes share two cores: with 100 instances, the per-peer work of a write (verify, apply, reply) is done ~99 times on those two cores, which is what bounds "visible on all" for every transport.`
    ],
    curves: [
      { file: 'benchmarks-fleet-propagation.svg', title: 'Visible on all peers, p99, against the number of instances', xLabel: 'instances', yLabel: 'write start → last peer sees it, p99 (ms)', series: series((f) => percentile(f.allPeers, 99)) },
      { file: 'benchmarks-fleet-cpu.svg', title: 'Writer CPU time per write against the number of instances', xLabel: 'instances', yLabel: 'writer process CPU per write, median (ms)', series: series((f) => median(f.cpu)) }
    ]
  }
}
