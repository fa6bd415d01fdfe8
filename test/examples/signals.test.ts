/**
 * The example server and the demo stop the way a supervisor stops them, however the README says to
 * start them: each is spawned in a process group of its own, the signal goes to the top process
 * only (what `docker stop`, systemd or `kill <pid>` do), and then the top process has exited 0, the
 * ports refuse connections and no process of the tree is left. Ctrl-C in a terminal (SIGINT to the
 * whole group) too. Linux only: the tree is read from /proc.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import tap, { test, type Test } from 'tap'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** Bound a start and a stop, so that a broken one fails the test instead of hanging it. */
const START_LIMIT_MS = 60000
const EXIT_LIMIT_MS = 30000
// Seven real starts, two of them three-server clusters: more than the suite's per-file default.
tap.setTimeout(480000)

/** The variables the example server reads, cleared so the caller's environment cannot leak in. */
const SERVER_VARIABLES = ['PORT', 'HOST', 'SERVER_ID', 'WEBHOOK_SECRET', 'OTHER_SERVERS', 'POLICY_DB', 'PUBLIC_URL',
  'SYNC_INTERVAL_MS', 'ACK_TIMEOUT_MS', 'POLICY_TABLE_PREFIX', 'LOG_LEVEL', 'ADMIN_TOKEN', 'METRICS', 'MEMBERSHIP',
  'MEMBERSHIP_HEARTBEAT_MS', 'MEMBERSHIP_TTL_MS', 'MEMBERSHIP_POLL_MS', 'SHUTDOWN_DELAY_MS']

interface Started {
  /** The process spawned, leader of its own process group. */
  top: ChildProcess
  /** Everything it wrote on stdout and stderr so far. */
  output: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/** Spawns `command` in a new process group and resolves once its output matches `ready`. */
async function start (t: Test, command: string, args: string[], ready: RegExp, extraEnv: NodeJS.ProcessEnv = {}): Promise<Started> {
  const dir = mkdtempSync(join(tmpdir(), 'policy-cache-signals-'))
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const name of SERVER_VARIABLES) delete env[name]
  // Through `env -u NODE_OPTIONS`, which execs the command (same pid): without the coverage hook tap
  // adds to every child's NODE_OPTIONS, the tree runs as a user runs it, and the demo's three servers
  // start within the demo's own health deadline even on a loaded machine.
  const top = spawn('env', ['-u', 'NODE_OPTIONS', command, ...args], {
    cwd: ROOT,
    env: { ...env, POLICY_DB: join(dir, 'policy.db'), LOG_LEVEL: 'info', ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true
  })
  let output = ''
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    top.once('exit', (code, signal) => resolve({ code, signal }))
  })
  t.teardown(() => {
    // Whatever the test found, nothing it started outlives it.
    try { process.kill(-top.pid!, 'SIGKILL') } catch {}
    rmSync(dir, { recursive: true, force: true })
  })
  await new Promise<void>((resolve, reject) => {
    const limit = setTimeout(() => reject(new Error(`${command} ${args.join(' ')} did not start within ${START_LIMIT_MS} ms:\n${output}`)), START_LIMIT_MS)
    const onData = (chunk: Buffer): void => {
      output += chunk
      if (ready.test(output)) {
        clearTimeout(limit)
        resolve()
      }
    }
    top.stdout!.on('data', onData)
    top.stderr!.on('data', onData)
    exited.then(({ code, signal }) => {
      clearTimeout(limit)
      reject(new Error(`${command} exited (${code ?? signal}) before it was ready:\n${output}`))
    }, () => {})
  })
  return { top, output: () => output, exited }
}

/** The pids of `pid` and of all its descendants, now. */
function tree (pid: number): number[] {
  const pids = [pid]
  for (let i = 0; i < pids.length; i++) {
    for (const task of readdirSync(`/proc/${pids[i]}/task`)) {
      const children = readFileSync(`/proc/${pids[i]}/task/${task}/children`, 'utf8').trim()
      if (children !== '') pids.push(...children.split(' ').map(Number))
    }
  }
  return pids
}

/** Whether a process with this pid exists (a zombie, exited but not yet reaped, counts as gone). */
function alive (pid: number): boolean {
  try {
    return statOf(pid).state !== 'Z'
  } catch {
    return false
  }
}

function statOf (pid: number): { state: string, pgrp: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // pid (comm) state ppid pgrp …; comm may itself contain spaces and parentheses.
  const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { state, pgrp: Number(pgrp) }
}

/** The live processes of process group `pgid`. */
function group (pgid: number): number[] {
  return readdirSync('/proc').filter((name) => /^[0-9]+$/.test(name)).map(Number).filter((pid) => {
    try {
      const { state, pgrp } = statOf(pid)
      return pgrp === pgid && state !== 'Z'
    } catch {
      return false
    }
  })
}

/** Resolves with the error code of a connection attempt to 127.0.0.1:`port` (`connected` if it was accepted). */
function connectResult (port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve('connected') })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  })
}

/**
 * Sends `signal` to `target` (a pid; negative: a process group), then asserts what a supervisor
 * needs: the top process exits 0, every port refuses connections, no process of the tree is left.
 */
async function stopAndCheck (t: Test, started: Started, target: number, signal: NodeJS.Signals, ports: number[]): Promise<void> {
  const pids = tree(started.top.pid!)
  process.kill(target, signal)
  let timer: NodeJS.Timeout | undefined
  const stuck = new Promise<'still running'>((resolve) => { timer = setTimeout(() => resolve('still running'), EXIT_LIMIT_MS) })
  const exit = await Promise.race([started.exited, stuck])
  clearTimeout(timer)
  t.same(exit, { code: 0, signal: null }, `exit code 0 after ${signal}`)
  if (exit === 'still running') return
  for (const port of ports) t.equal(await connectResult(port), 'ECONNREFUSED', `port ${port} released`)
  t.same(pids.filter(alive), [], `none of the ${pids.length} processes of the tree is left`)
  t.same(group(started.top.pid!), [], 'the process group is empty')
}

/** The port the example server logged it listens on. */
function listeningPort (output: string): number {
  const line = output.split('\n').find((l) => l.includes('policy-cache example server started'))
  return Number(new URL(JSON.parse(line!).listening).port)
}

const SERVER_READY = /"msg":"policy-cache example server started"/

/** Whether this machine lets an unprivileged user make PID namespaces (a container without a runtime). */
function pidNamespaces (): boolean {
  const probe = spawnSync('unshare', ['--user', '--map-root-user', '--pid', '--fork', 'true'], { stdio: 'ignore' })
  return probe.status === 0
}

function run (): void {
  const ways = [
    { name: 'npm run server', command: 'npm', args: ['run', 'server', '--', '0'], signal: 'SIGTERM' },
    { name: 'npm run server', command: 'npm', args: ['run', 'server', '--', '0'], signal: 'SIGINT' },
    { name: 'node --import tsx examples/server.ts', command: process.execPath, args: ['--import', 'tsx', 'examples/server.ts', '0'], signal: 'SIGTERM' }
  ] as const
  for (const way of ways) {
    test(`${way.name}: ${way.signal} to the top process shuts the server down gracefully`, async (t) => {
      const started = await start(t, way.command, [...way.args], SERVER_READY)
      await stopAndCheck(t, started, started.top.pid!, way.signal, [listeningPort(started.output())])
      t.match(started.output(), new RegExp(`"signal":"${way.signal}".*"msg":"shutting down"`), 'the server logged its graceful shutdown')
    })
  }

  test('SIGTERM drains first: /health answers 503 closing and writes a coded 503 for SHUTDOWN_DELAY_MS, then the server exits 0', async (t) => {
    // The delay is the window under test, not a bound on it: long enough for a loaded machine to
    // make the requests below inside it.
    const started = await start(t, process.execPath, ['--import', 'tsx', 'examples/server.ts', '0'], SERVER_READY, { SHUTDOWN_DELAY_MS: '5000' })
    const base = `http://127.0.0.1:${listeningPort(started.output())}`
    t.equal((await fetch(`${base}/health`)).status, 200)
    process.kill(started.top.pid!, 'SIGTERM')
    let health = await fetch(`${base}/health`)
    while (health.status === 200) health = await fetch(`${base}/health`)
    t.equal(health.status, 503, '/health answers 503 once the drain began')
    t.match(await health.json(), { status: 'closing' })
    const write = await fetch(`${base}/create-group`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tenant: 't1', group: 'g' }) })
    t.equal(write.status, 503, 'a write is refused')
    t.match(await write.json(), { code: 'FST_POLICY_CACHE_CLOSING' })
    const check = await fetch(`${base}/check-access?tenant=t1&user=u&permission=a:b`)
    t.equal(check.status, 200, 'checks are still answered')
    await stopAndCheck(t, started, started.top.pid!, 'SIGTERM', [Number(new URL(base).port)])
  })

  test('npm run server: Ctrl-C in a terminal (SIGINT to the whole process group)', async (t) => {
    const started = await start(t, 'npm', ['run', 'server', '--', '0'], SERVER_READY)
    await stopAndCheck(t, started, -started.top.pid!, 'SIGINT', [listeningPort(started.output())])
  })

  test('CMD ["npm", "run", "server"]: SIGTERM to npm as PID 1 of its own PID namespace', async (t) => {
    if (!pidNamespaces()) {
      t.skip('unshare --user --pid is not permitted on this machine', () => {})
      return
    }
    // unshare stands for the container runtime: it waits for its child, npm, which is PID 1 inside.
    // As PID 1, npm gets only the signals it handles; `docker stop` sends SIGTERM to it alone.
    const started = await start(t, 'unshare', ['--user', '--map-root-user', '--pid', '--fork', '--kill-child', 'npm', 'run', 'server', '--', '0'], SERVER_READY)
    const [npm] = tree(started.top.pid!).slice(1)
    const nsPid = readFileSync(`/proc/${npm}/status`, 'utf8').match(/^NSpid:\s+\d+\s+(\d+)/m)?.[1]
    t.equal(nsPid, '1', 'npm is PID 1 in its namespace')
    await stopAndCheck(t, started, npm, 'SIGTERM', [listeningPort(started.output())])
  })

  // While its servers start (the signal does not wait for them): deterministic however loaded the
  // machine is. And once the cluster is up, as a user presses Ctrl-C after the walkthrough.
  const demoCases = [
    { when: 'while its servers start', ready: /webhook secret/, signal: 'SIGTERM', toGroup: false, listed: 3 },
    // After the walkthrough, which started a fourth instance and stopped it: three still run.
    { when: 'once the cluster is up', ready: /Press Ctrl-C/, signal: 'SIGINT', toGroup: true, listed: 4 }
  ] as const
  for (const { when, ready, signal, toGroup, listed } of demoCases) {
    test(`npm run demo: ${signal} to ${toGroup ? 'the whole process group (Ctrl-C)' : 'npm'} ${when} leaves none of its three servers`, async (t) => {
      // --keep: the cluster stays up after the walkthrough as at a terminal (without one, the demo ends by itself).
      const started = await start(t, 'npm', ['run', 'demo', '--', '--keep'], ready)
      const ports = [...new Set([...started.output().matchAll(/server-\d +http:\/\/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1])))]
      t.equal(ports.length, listed, `${listed} servers listed`)
      const dir = /data directory +(\S+)/.exec(started.output())![1]
      const processes = tree(started.top.pid!).length
      t.ok(processes >= 5, `npm, the demo and three servers are running (${processes} processes)`)
      await stopAndCheck(t, started, toGroup ? -started.top.pid! : started.top.pid!, signal, ports)
      t.notOk(existsSync(dir), 'the data directory is removed')
    })
  }
}

if (process.platform === 'linux') run()
else test('signals', (t) => t.skip('reads the process tree from /proc: Linux only', () => {}))
