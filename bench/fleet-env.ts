/**
 * What the fleet section (bench/fleet.ts) runs on, made by the bench and torn down by it, even when it
 * fails: servers of its own (PostgreSQL with room for 100 listening connections, nats-server,
 * redis-server), network namespaces joined by veth pairs to a bridge so that the peers' messages cross
 * a real interface, and the compiled JavaScript the instance processes run (no tsx in 100 instances).
 *
 * Each part falls back and says so (`notes`): no PostgreSQL binaries → the test server at
 * TEST_POSTGRES_URL (pg-notify's fleet is then bounded by its free connections); no `ip` or not root →
 * everything on 127.0.0.1.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { appendFileSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { reachable } from '../test/helpers/brokers.js'
import { freePort } from './cluster.js'
import { sleep } from './stats.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** Synchronous clean-ups, run once: by `close`, or on process exit when the run dies half-way. */
class Janitor {
  readonly #tasks: Array<{ name: string, run: () => void }> = []
  readonly #onExit = (): void => this.run()

  constructor () {
    process.on('exit', this.#onExit)
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130))
  }

  add (name: string, run: () => void): void {
    this.#tasks.push({ name, run })
  }

  /** Last added, first run; a failing task does not stop the others. */
  run (): void {
    while (this.#tasks.length > 0) {
      const task = this.#tasks.pop()!
      try { task.run() } catch (err) { process.stderr.write(`fleet clean-up (${task.name}): ${(err as Error).message}\n`) }
    }
    process.off('exit', this.#onExit)
  }
}

/** A network namespace for peer processes, and its address on the bench's bridge. */
export interface Namespace { name: string, address: string }

export interface FleetEnv {
  /** As seen from any instance process (root namespace or not). */
  pgUrl: string
  natsUrl: string
  redisUrl: string
  /** Redis as BentoCache's ioredis options want it. */
  redis: { host: string, port: number }
  /** Where the writer listens (webhook transport). */
  hostAddress: string
  /** Namespaces to put peer processes in, one per process (round robin); empty: all on 127.0.0.1. */
  namespaces: Namespace[]
  /** The PostgreSQL connections the fleet may open; pg-notify needs one per instance. */
  pgConnections: number
  /** The compiled bench/fleet-worker.js. */
  workerScript: string
  /** CPU time (user + system, ms) used so far by the servers of the bench's own and their children (PostgreSQL's backends); NaN with the shared servers. */
  serverCpuMs (): number
  /** Kills children that were handed to `adopt` if they outlive the run. */
  adopt (child: ChildProcess): void
  /** What was used and what fell back, for the report's notes. */
  notes: string[]
  close (): void
}

const onPath = (command: string): boolean => {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const run = (file: string, args: string[], timeout = 60000): Promise<string> => new Promise((resolve, reject) => {
  execFile(file, args, { timeout, encoding: 'utf8' }, (err, stdout, stderr) => {
    if (err !== null) reject(new Error(`${file} ${args.join(' ')}: ${err.message} ${stderr}`))
    else resolve(stdout)
  })
})

/**
 * Compiles lib/ and the worker to plain JavaScript with TypeScript's per-file transpiler (no type
 * check: `npm run typecheck` does that; lib/ is written for isolated transpilation, as tsx runs it).
 * A `node_modules` link and `"type": "module"` make the output resolve as the sources do.
 */
function compile (dir: string): string {
  const files = [
    ...readdirSync(join(ROOT, 'lib'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => join(ROOT, 'lib', f)),
    join(ROOT, 'bench', 'fleet-worker.ts'),
    join(ROOT, 'bench', 'stats.ts')
  ]
  for (const file of files) {
    const out = join(dir, relative(ROOT, file)).replace(/\.ts$/, '.js')
    const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, sourceMap: false }
    })
    mkdirSync(dirname(out), { recursive: true })
    writeFileSync(out, outputText)
  }
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n')
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  return join(dir, 'bench', 'fleet-worker.js')
}

/** `/proc/<pid>/stat`'s fields after the command name (the first is the state, index 1 the parent, 11 and 12 user and system ticks). */
function stat (pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return text.slice(text.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/** CPU time (ms) of the processes `roots` and their direct children, from /proc (Linux; 100 ticks a second). */
function processCpuMs (roots: number[]): number {
  const pids = new Set(roots)
  for (const entry of readdirSync('/proc')) {
    if (/^\d+$/.test(entry) && pids.has(Number(stat(Number(entry))?.[1]))) pids.add(Number(entry))
  }
  let ticks = 0
  for (const pid of pids) {
    const fields = stat(pid)
    if (fields !== undefined) ticks += Number(fields[11]) + Number(fields[12])
  }
  return ticks * 10
}

/** A PostgreSQL cluster of the bench's own (initdb as `postgres` when run as root), listening on `addresses`. */
async function ownPostgres (janitor: Janitor, addresses: string[], connections: number): Promise<{ url: (host: string) => string, pid: () => number }> {
  const dir = mkdtempSync(join(tmpdir(), 'policy-cache-fleet-pg-'))
  janitor.add('postgres data', () => rmSync(dir, { recursive: true, force: true }))
  const asRoot = userInfo().uid === 0
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }))
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }))
    chownSync(dir, uid, gid)
  }
  const as = (args: string[]): [string, string[]] => asRoot ? ['runuser', ['-u', 'postgres', '--', ...args]] : [args[0], args.slice(1)]
  const data = join(dir, 'data')
  await run(...as(['initdb', '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']))
  // The namespaces reach it through the bridge: trust the subnets the server is on.
  appendFileSync(join(data, 'pg_hba.conf'), 'host all all samenet trust\n')
  const port = await freePort()
  const settings = `-p ${port} -c listen_addresses='${addresses.join(',')}' -c max_connections=${connections} -c unix_socket_directories='${dir}' -c shared_buffers=64MB`
  janitor.add('postgres', () => { execFileSync(...as(['pg_ctl', '-D', data, '-m', 'immediate', '-w', '-t', '20', 'stop']), { stdio: 'ignore', timeout: 30000 }) })
  await run(...as(['pg_ctl', '-D', data, '-l', join(dir, 'log'), '-w', '-t', '30', '-o', settings, 'start']))
  return { url: (host) => `postgres://postgres@${host}:${port}/postgres`, pid: () => Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]) }
}

/** A broker process of the bench's own, SIGKILLed at the clean-up. */
async function ownServer (janitor: Janitor, command: string, args: (port: number) => string[], host: string, pids: number[]): Promise<number> {
  const port = await freePort()
  const child = spawn(command, args(port), { stdio: 'ignore' })
  pids.push(child.pid!)
  janitor.add(command, () => { child.kill('SIGKILL') })
  const deadline = Date.now() + 10000
  while (!await reachable(`tcp://${host}:${port}`)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${command} did not start on ${host}:${port}`)
    await sleep(20)
  }
  return port
}

/**
 * `count` namespaces, each with a veth pair whose other end is on a bridge in the root namespace
 * (address `<prefix>.1`); namespace i is `<prefix>.(10 + i)`, its default route the bridge.
 */
async function namespaces (janitor: Janitor, count: number): Promise<{ bridge: string, list: Namespace[] }> {
  const id = randomBytes(2).toString('hex')
  const taken = execFileSync('ip', ['-4', '-o', 'addr'], { encoding: 'utf8' })
  let prefix = ''
  for (let attempt = 0; attempt < 50 && prefix === ''; attempt++) {
    const candidate = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}`
    if (!taken.includes(` ${candidate}.`)) prefix = candidate
  }
  if (prefix === '') throw new Error('no free 10.x.y.0/24 for the bridge')
  const bridge = `pcf${id}br`
  const ip = (...args: string[]): Promise<string> => run('ip', args, 10000)
  janitor.add('bridge', () => { execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' }) })
  await ip('link', 'add', bridge, 'type', 'bridge')
  await ip('addr', 'add', `${prefix}.1/24`, 'dev', bridge)
  await ip('link', 'set', bridge, 'up')
  const list: Namespace[] = []
  for (let i = 0; i < count; i++) {
    const name = `pcf-${id}-${i}`
    const outer = `pcf${id}h${i}`
    const inner = `pcf${id}n${i}`
    const address = `${prefix}.${10 + i}`
    janitor.add(`namespace ${name}`, () => { execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' }) })
    await ip('netns', 'add', name)
    await ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner, 'netns', name)
    await ip('link', 'set', outer, 'master', bridge)
    await ip('link', 'set', outer, 'up')
    await ip('-n', name, 'addr', 'add', `${address}/24`, 'dev', inner)
    await ip('-n', name, 'link', 'set', inner, 'up')
    await ip('-n', name, 'link', 'set', 'lo', 'up')
    await ip('-n', name, 'route', 'add', 'default', 'via', `${prefix}.1`)
    list.push({ name, address })
  }
  return { bridge: `${prefix}.1`, list }
}

/** Whether a process in namespace `ns` connects to `host:port` (the veth path works). */
async function crosses (ns: string, host: string, port: number): Promise<boolean> {
  const script = `require('net').connect(${port}, '${host}').on('connect', () => process.exit(0)).on('error', () => process.exit(1))`
  return await run('ip', ['netns', 'exec', ns, process.execPath, '-e', script], 10000).then(() => true, () => false)
}

/**
 * Builds the environment. `connections`: the PostgreSQL connections to allow (own server);
 * `wantNamespaces`: how many namespaces to make (0: none).
 */
export async function fleetEnv (connections: number, wantNamespaces: number, log: (line: string) => void): Promise<FleetEnv> {
  const janitor = new Janitor()
  const notes: string[] = []
  const children = new Set<ChildProcess>()
  janitor.add('instance processes', () => { for (const child of children) if (child.exitCode === null) child.kill('SIGKILL') })
  try {
    const build = mkdtempSync(join(tmpdir(), 'policy-cache-fleet-js-'))
    janitor.add('compiled JavaScript', () => rmSync(build, { recursive: true, force: true }))
    const workerScript = compile(build)
    log('fleet: compiled lib/ and the worker to JavaScript')

    let host = '127.0.0.1'
    let list: Namespace[] = []
    const canNamespace = wantNamespaces > 0 && userInfo().uid === 0 && onPath('ip')
    if (canNamespace) {
      const made = await namespaces(janitor, wantNamespaces)
      host = made.bridge
      list = made.list
    } else if (wantNamespaces > 0) {
      notes.push('Network namespaces were not used: they need root and `ip` (iproute2); every instance ran on 127.0.0.1.')
    }
    const addresses = [...new Set(['127.0.0.1', host])]
    const ownServers = onPath('initdb') && onPath('pg_ctl') && onPath('nats-server') && onPath('redis-server')
    let pgUrl: string
    let natsUrl: string
    let redisPort: number
    let pgConnections = connections
    let serverCpuMs = (): number => NaN
    if (ownServers) {
      const pg = await ownPostgres(janitor, addresses, connections)
      pgUrl = pg.url(host)
      const pids: number[] = []
      natsUrl = `nats://${host}:${await ownServer(janitor, 'nats-server', (port) => ['-a', host, '-p', String(port)], host, pids)}`
      redisPort = await ownServer(janitor, 'redis-server', (port) => ['--bind', ...addresses, '--protected-mode', 'no', '--port', String(port), '--save', '', '--appendonly', 'no'], host, pids)
      serverCpuMs = () => processCpuMs([...pids, pg.pid()])
      notes.push(`Servers of the bench's own for this section: PostgreSQL (initdb, max_connections = ${connections}, default durability), nats-server and redis-server, listening on ${addresses.join(' and ')}.`)
    } else {
      if (list.length > 0) {
        janitor.run()
        throw new Error('network namespaces need servers of the bench\'s own (initdb, pg_ctl, nats-server, redis-server on PATH)')
      }
      pgUrl = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
      natsUrl = process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222'
      redisPort = Number(new URL(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379').port)
      pgConnections = 80
      notes.push('The shared PostgreSQL, NATS and Redis servers were used (no initdb / pg_ctl / nats-server / redis-server on PATH); pg-notify fleets are bounded by 80 connections.')
    }
    if (list.length > 0) {
      const { hostname, port } = new URL(pgUrl)
      if (!await crosses(list[0].name, hostname, Number(port))) throw new Error(`a process in namespace ${list[0].name} cannot reach ${hostname}:${port} through the bridge`)
      notes.push(`Network namespaces: every peer process ran in a namespace of its own (${list.length} made), joined to the root namespace by a veth pair on a bridge (${host}/24); the writer and the servers are in the root namespace, so every message to or from a peer crosses a veth interface and the bridge. Made with \`ip netns\` / \`ip link\` by the bench and deleted at its end.`)
    }
    return {
      pgUrl,
      natsUrl,
      redisUrl: `redis://${host}:${redisPort}`,
      redis: { host, port: redisPort },
      hostAddress: host,
      namespaces: list,
      pgConnections,
      workerScript,
      serverCpuMs: () => serverCpuMs(),
      adopt: (child) => {
        children.add(child)
        child.once('exit', () => children.delete(child))
      },
      notes,
      close: () => janitor.run()
    }
  } catch (err) {
    janitor.run()
    throw err
  }
}
