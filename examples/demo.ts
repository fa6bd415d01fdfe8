/**
 * The seed's walkthrough on a real cluster: three example servers as child processes sharing one
 * fresh SQLite file, finding each other through it (membership, no peer list), signing their
 * webhooks with a random per-run secret; then a fourth joins and leaves.
 *
 *   npm run demo              run the walkthrough, then keep the cluster up until Ctrl-C (in a terminal;
 *                             without one, e.g. under CI, it exits like --once)
 *   npm run demo -- --once    run the walkthrough and exit: 0 when every step passed, 1 otherwise
 *   npm run demo -- --keep    keep the cluster up after the walkthrough even without a terminal
 *
 * It prints the policy board's URL first (server-3's, README "Policy board"): open it to watch the
 * steps land, the cluster and the tenant live.
 *   npm run demo -- --transport nats|redis|pg-notify
 *                             the same walkthrough with notices over NATS (127.0.0.1:4222, or
 *                             NATS_URL), Redis (127.0.0.1:6379, or REDIS_URL) or PostgreSQL
 *                             LISTEN/NOTIFY (POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test,
 *                             on tables of a fresh prefix) instead of webhooks; no membership
 *
 * ACK_TIMEOUT_MS (default 1000 here) and SYNC_INTERVAL_MS are passed on to the servers.
 *
 * The cluster helpers are exported for the tests (test/examples/).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, realpathSync, rmSync, writeSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SERVER_SCRIPT = fileURLToPath(new URL('./server.ts', import.meta.url))

/** A strong per-run webhook secret in Standard Webhooks form: `whsec_` + 32 random bytes, base64. */
export function generateSecret (): string {
  return 'whsec_' + randomBytes(32).toString('base64')
}

/** `count` distinct free loopback ports: all bound at once on port 0, then released. */
export async function freePorts (count: number, host = '127.0.0.1'): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, host, () => resolve(server))
  })))
  const ports = servers.map((server) => (server.address() as { port: number }).port)
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
  return ports
}

export interface Instance {
  serverId: string
  port: number
  url: string
  child: ChildProcess
  /** What the child wrote to stderr (also in the log file): the one-line reason of a failed start. */
  stderr: () => string
  /** Resolves with the exit code (or signal name) once the child has exited. */
  exited: Promise<number | string>
}

export interface ClusterOptions {
  size?: number
  /** `POLICY_DB` of every instance. Default: `policy.db` in `dir`. */
  policyDb?: string
  /** Working directory for the database and log. Default: a fresh temp directory. */
  dir?: string
  /** Extra environment for every instance (e.g. `ACK_TIMEOUT_MS`, `POLICY_TABLE_PREFIX`). */
  env?: Record<string, string>
  logLevel?: string
  /**
   * List the others in OTHER_SERVERS as well (the original system's way). Default false: the
   * instances find each other through the database's membership, with no peer list.
   */
  staticPeers?: boolean
  /**
   * The transport (TRANSPORT of every instance): `webhook` (default) or a broker's — `nats://…`,
   * `redis://…` or `pg-notify` (then `policyDb` must be a postgres:// URL). With a broker there is no
   * peer list and no membership.
   */
  transport?: string
}

export interface Cluster {
  instances: Instance[]
  dir: string
  dbLabel: string
  logFile: string
  /** Stops every instance (SIGTERM, then SIGKILL after 5 s) and waits for them. Idempotent. */
  stop: () => Promise<void>
  /**
   * Starts one more instance on the same database (`serverId` default `server-<n>`; `port` default a
   * fresh one, or the port of a stopped instance to restart it in place), added to `instances`.
   */
  add: (serverId?: string, port?: number) => Promise<Instance>
  /** TRANSPORT as given to the instances (`webhook` by default). */
  transport: string
}

/** The environment given to an instance: the caller's, minus the variables the cluster sets itself. */
function childEnv (extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const name of ['PORT', 'HOST', 'SERVER_ID', 'WEBHOOK_SECRET', 'OTHER_SERVERS', 'POLICY_DB', 'PUBLIC_URL',
    'SYNC_INTERVAL_MS', 'ACK_TIMEOUT_MS', 'POLICY_TABLE_PREFIX', 'LOG_LEVEL', 'MEMBERSHIP', 'MEMBERSHIP_HEARTBEAT_MS',
    'MEMBERSHIP_TTL_MS', 'MEMBERSHIP_POLL_MS']) delete env[name]
  return { ...env, ...extra }
}

/**
 * Starts `size` example servers (default 3) on free loopback ports, each with the others as peers,
 * sharing one database and one log file. Returns as soon as they are spawned; see {@link waitHealthy}.
 */
export async function startCluster (options: ClusterOptions = {}): Promise<Cluster> {
  const size = options.size ?? 3
  const dir = options.dir ?? mkdtempSync(join(realpathSync(tmpdir()), 'policy-cache-demo-'))
  const policyDb = options.policyDb ?? join(dir, 'policy.db')
  const logFile = join(dir, 'servers.log')
  const logFd = openSync(logFile, 'a')
  const secret = generateSecret()
  const ports = await freePorts(size)
  const urls = ports.map((port) => `http://127.0.0.1:${port}`)
  // The loader tsx registers, by absolute URL: works whatever the working directory.
  const tsx = import.meta.resolve('tsx')

  const broker = options.transport !== undefined && options.transport !== 'webhook'
  const spawnInstance = (serverId: string, port: number, peers: string[]): Instance => {
    const url = `http://127.0.0.1:${port}`
    const env = childEnv({
      HOST: '127.0.0.1',
      SERVER_ID: serverId,
      WEBHOOK_SECRET: secret,
      OTHER_SERVERS: peers.join(','),
      POLICY_DB: policyDb,
      PUBLIC_URL: url,
      LOG_LEVEL: options.logLevel ?? 'warn',
      ...(broker ? { TRANSPORT: options.transport as string, MEMBERSHIP: '0' } : {}),
      ...options.env
    })
    const child = spawn(process.execPath, ['--import', tsx, SERVER_SCRIPT, String(port)], {
      cwd: ROOT,
      env,
      stdio: ['ignore', logFd, 'pipe']
    })
    let stderr = ''
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
      try { writeSync(logFd, chunk) } catch {}
    })
    const exited = new Promise<number | string>((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'))
      child.once('error', (err) => {
        stderr += `${err.message}\n`
        resolve('spawn-failed')
      })
    })
    return { serverId, port, url, child, stderr: () => stderr, exited }
  }
  const instances = ports.map((port, i) =>
    spawnInstance(`server-${i + 1}`, port, options.staticPeers === true && !broker ? urls.filter((_, j) => j !== i) : []))
  const add = async (serverId = `server-${instances.length + 1}`, port?: number): Promise<Instance> => {
    const instance = spawnInstance(serverId, port ?? (await freePorts(1))[0], [])
    instances.push(instance)
    return instance
  }

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all(instances.map(async ({ child, exited }) => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
        await exited
        clearTimeout(timer)
      }))
      try { closeSync(logFd) } catch {}
    })()
    return stopping
  }
  const dbLabel = /^[a-z]+:\/\//i.test(policyDb) ? policyDb.replace(/\/\/[^@/]*@/, '//') : policyDb
  return { instances, dir, dbLabel, logFile, stop, add, transport: broker ? options.transport as string : 'webhook' }
}

/**
 * Polls `/servers` of each instance until each sends to exactly the other running `instances`
 * (membership), within `deadlineMs`.
 */
export async function waitPeers (instances: readonly Instance[], deadlineMs = 60000): Promise<void> {
  const deadline = Date.now() + deadlineMs
  await Promise.all(instances.map(async (instance) => {
    const want = instances.filter((other) => other !== instance).map((other) => other.url).sort().join(' ')
    for (;;) {
      try {
        const res = await fetch(`${instance.url}/servers`, { signal: AbortSignal.timeout(1000) })
        const { peers } = await res.json() as { peers: Array<{ url: string }> }
        if (peers.map((peer) => peer.url).sort().join(' ') === want) return
      } catch {}
      if (Date.now() > deadline) throw new StepError(`${instance.serverId} did not see exactly the other ${instances.length - 1} instances within ${deadlineMs} ms`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }))
}

/** A failed step of the walkthrough, or a failed start. */
export class StepError extends Error {}

/**
 * Polls every instance's `/health` until all answer 200, within `deadlineMs`. Fails at once when
 * an instance exits, with the reason it printed.
 */
export async function waitHealthy (cluster: Cluster, deadlineMs = 60000): Promise<void> {
  const deadline = Date.now() + deadlineMs
  await Promise.all(cluster.instances.map(async (instance) => {
    let exit: number | string | undefined
    instance.exited.then((code) => { exit = code }, () => {})
    for (;;) {
      if (exit !== undefined) {
        const reason = instance.stderr().trim().split('\n').pop() ?? ''
        throw new StepError(`${instance.serverId} exited (${exit}) before it was healthy${reason === '' ? '' : `: ${reason}`}`)
      }
      try {
        const res = await fetch(`${instance.url}/health`, { signal: AbortSignal.timeout(1000) })
        if (res.status === 200) return
      } catch {}
      if (Date.now() > deadline) throw new StepError(`${instance.serverId} was not healthy within ${deadlineMs} ms`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }))
}

export interface CallResult<T = any> {
  status: number
  body: T
  /** Round trip in milliseconds, from sending the request to the parsed answer. */
  ms: number
  /** `performance.now()` when the answer was complete. */
  at: number
}

/** One JSON request; throws a StepError for a network failure or a non-2xx answer. */
export async function call<T = any> (method: 'GET' | 'POST', url: string, body?: unknown): Promise<CallResult<T>> {
  const start = performance.now()
  let res: Response
  try {
    res = await fetch(url, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(5000)
    })
  } catch (err) {
    throw new StepError(`${method} ${url} failed: ${(err as Error).message}`)
  }
  const text = await res.text()
  const at = performance.now()
  let parsed: any
  try { parsed = JSON.parse(text) } catch { parsed = text }
  if (res.status < 200 || res.status > 299) {
    throw new StepError(`${method} ${url} answered ${res.status}: ${typeof parsed === 'object' && parsed !== null ? parsed.message : text}`)
  }
  return { status: res.status, body: parsed, ms: at - start, at }
}

const TENANT = 'tenant1'
const GROUP = 'editors'
const USER = 'alice'

function ms (value: number): string {
  return `${value.toFixed(1)} ms`
}

function check (tenant: string, user: string, permission: string): string {
  // Identifiers and permissions are URL-safe as they are (README.md, "Policy model"); kept readable for the curl examples.
  return `/check-access?tenant=${tenant}&user=${user}&permission=${permission}`
}

/** What the walkthrough measured, for the summary. */
interface Results {
  writes: Array<{ what: string, server: string, revision: number, acked: number, total: number, ms: number }>
  grant?: { writeMs: number, propagationMs: number }
  revoke?: { writeMs: number, propagationMs: number }
  /** From spawning a fourth instance to every instance sending to it; from its SIGTERM to out of every send set. */
  join?: { visibleMs: number }
  leave?: { goneMs: number }
}

/**
 * The seed's scenario (test_webhook_system) against a running cluster of three, printing each step.
 * Throws a StepError naming the step that failed.
 */
export async function runWalkthrough (cluster: Cluster, print: (line: string) => void): Promise<Results> {
  const [s1, s2, s3] = cluster.instances
  // Webhooks and NATS acknowledge: a write returns once every other instance has it. Redis and
  // pg-notify do not: the reads below then pass the write's revision as minRevision.
  const acknowledged = cluster.transport === 'webhook' || cluster.transport.startsWith('nats://')
  const broker = cluster.transport !== 'webhook'
  const results: Results = { writes: [] }
  const steps = 11
  let n = 0
  const step = async (title: string, fn: () => Promise<void>): Promise<void> => {
    n++
    print('')
    print(`Step ${n}/${steps}: ${title}`)
    try {
      await fn()
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err)
      throw new StepError(`step ${n} (${title}) failed: ${reason}`)
    }
    print('  -> ok')
  }
  const expect = (ok: boolean, message: string): void => {
    if (!ok) throw new StepError(message)
  }
  const write = async (instance: Instance, route: string, body: Record<string, string>): Promise<CallResult> => {
    const res = await call('POST', `${instance.url}/${route}`, { tenant: TENANT, ...body })
    const { revision, changed, peers } = res.body
    print(`  POST ${route} ${JSON.stringify(body)} on ${instance.serverId}: revision ${revision}, changed ${changed}, ` +
      `peers acked ${peers.acked}/${peers.total}, ${ms(res.ms)}`)
    expect(changed === true, `${route} did not change anything`)
    if (acknowledged) {
      expect(peers.acked === peers.total && peers.total === cluster.instances.length - 1,
        `only ${peers.acked} of ${peers.total} peers acknowledged ${route}`)
    } else {
      expect(peers.acked === 0 && peers.total === 0, `${route} reported acknowledgements on an unacknowledged transport`)
    }
    results.writes.push({ what: `${route} ${Object.values(body).join(' ')}`, server: instance.serverId, revision, acked: peers.acked, total: peers.total, ms: res.ms })
    return res
  }
  const checkOn = async (instances: Instance[], permission: string, want: boolean, minRevision: number): Promise<CallResult[]> => {
    const answers = await Promise.all(instances.map((instance) => call(
      'GET', `${instance.url}${check(TENANT, USER, permission)}${acknowledged || minRevision === 0 ? '' : `&minRevision=${minRevision}`}`)))
    answers.forEach((res, i) => {
      print(`  ${instances[i].serverId}: ${USER} ${permission} -> ${res.body.allowed ? 'allowed' : 'denied'} ` +
        `(revision ${res.body.revision}, ${ms(res.ms)})`)
    })
    answers.forEach((res, i) => {
      expect(res.body.allowed === want, `${instances[i].serverId} answered ${res.body.allowed ? 'allowed' : 'denied'}, expected ${want ? 'allowed' : 'denied'}`)
      expect(res.body.revision >= minRevision, `${instances[i].serverId} answered from revision ${res.body.revision}, behind ${minRevision}`)
    })
    return answers
  }

  await step('health of all three servers', async () => {
    const answers = await Promise.all(cluster.instances.map((instance) => call('GET', `${instance.url}/health`)))
    answers.forEach((res, i) => {
      const { status, serverId, db, peers } = res.body
      print(`  ${cluster.instances[i].serverId} ${cluster.instances[i].url}: ${status}, serverId ${serverId}, db ${db}, peers ${peers.total}`)
      expect(status === 'ok' && serverId === cluster.instances[i].serverId, `${cluster.instances[i].serverId} is not healthy`)
    })
  })

  await step(`before any write: ${USER} documents:read on servers 2 and 3 (loads ${TENANT} into their caches)`, async () => {
    await checkOn([s2, s3], 'documents:read', false, 0)
  })

  let revision = 0
  await step(`create group "${GROUP}" in "${TENANT}" on server 1`, async () => {
    revision = (await write(s1, 'create-group', { group: GROUP })).body.revision
  })

  await step('add permissions documents:read and documents:write on server 1', async () => {
    await write(s1, 'add-permission', { group: GROUP, permission: 'documents:read' })
    revision = (await write(s1, 'add-permission', { group: GROUP, permission: 'documents:write' })).body.revision
  })

  let sentAt = 0
  let assigned: CallResult | undefined
  await step(`assign user "${USER}" to "${GROUP}" on server 1`, async () => {
    sentAt = performance.now()
    assigned = await write(s1, 'assign-user', { group: GROUP, user: USER })
    revision = assigned.body.revision
  })

  await step(`immediately (no wait): ${USER} documents:read on servers 2 and 3`, async () => {
    const answers = await checkOn([s2, s3], 'documents:read', true, revision)
    const propagationMs = Math.max(...answers.map((res) => res.at)) - sentAt
    results.grant = { writeMs: assigned!.ms, propagationMs }
    print(`  propagation: ${ms(propagationMs)} from sending the assign-user write to both peers answering allowed ` +
      `(the write itself took ${ms(assigned!.ms)})`)
  })

  let revoked: CallResult | undefined
  await step('revoke documents:read from "editors" on server 3', async () => {
    sentAt = performance.now()
    revoked = await write(s3, 'remove-permission', { group: GROUP, permission: 'documents:read' })
    revision = revoked.body.revision
  })

  await step(`immediately (no wait): ${USER} documents:read on server 1, documents:write still on all`, async () => {
    const [answer] = await checkOn([s1], 'documents:read', false, revision)
    const propagationMs = answer.at - sentAt
    results.revoke = { writeMs: revoked!.ms, propagationMs }
    print(`  propagation: ${ms(propagationMs)} from sending the revoke on server-3 to server-1 answering denied ` +
      `(the write itself took ${ms(revoked!.ms)})`)
    await checkOn(cluster.instances, 'documents:write', true, revision)
  })

  await step(broker ? 'transport status on server 1 (/servers)' : 'peer status on server 1 (/servers)', async () => {
    const { body } = await call('GET', `${s1.url}/servers`)
    if (broker) {
      const { type, state, channel, subscriptions, published, received, hints, dropped } = body.transport
      print(`  ${type} on ${channel}: ${state}, subscriptions ${subscriptions}, published ${published}, received ${received}, hints ${hints}, dropped ${dropped}`)
      expect(state === 'up', `the ${type} subscription is ${state}`)
      expect(published >= 4, `${published} messages published, expected one per write (4)`)
      return
    }
    for (const peer of body.peers) {
      print(`  ${peer.url}: ${peer.state}, serverId ${peer.serverId}, delivered ${peer.delivered}, failed ${peer.failed}, ` +
        `latency ${peer.latencyMs === null ? '-' : ms(peer.latencyMs)}`)
    }
    for (const other of [s2, s3]) {
      const peer = body.peers.find((p: { url: string }) => p.url === other.url)
      expect(peer !== undefined, `${other.url} is not listed`)
      expect(peer.state === 'up' && peer.serverId === other.serverId, `${other.serverId} is not listed up with its serverId`)
    }
  })

  const three = [...cluster.instances]
  let s4: Instance | undefined
  await step(broker
    ? 'start a fourth instance: it subscribes, and the next write reaches it'
    : 'start a fourth instance with no peer list: it joins every /servers, and the next write reaches it', async () => {
    const spawned = performance.now()
    s4 = await cluster.add()
    await waitHealthy({ ...cluster, instances: [s4] })
    if (broker) {
      results.join = { visibleMs: performance.now() - spawned }
      print(`  ${s4.serverId} ${s4.url}: healthy and subscribed ${ms(results.join.visibleMs)} after it was spawned (process start included)`)
      const written = await write(s1, 'assign-user', { group: GROUP, user: 'bob' })
      await checkOn([s4], 'documents:write', true, written.body.revision)
      return
    }
    await waitPeers(cluster.instances)
    results.join = { visibleMs: performance.now() - spawned }
    print(`  ${s4.serverId} ${s4.url}: in every instance's /servers ${ms(results.join.visibleMs)} after it was spawned (process start included)`)
    const { body } = await call('GET', `${s1.url}/servers`)
    const listed = body.peers.find((p: { url: string }) => p.url === s4!.url)
    print(`  on server-1: ${s4.serverId} source ${listed?.source}, incarnation ${listed?.incarnation}, heartbeat ${listed?.heartbeatAgeMs} ms ago`)
    await write(s1, 'assign-user', { group: GROUP, user: 'bob' })
  })

  await step(broker ? 'stop server-4 gracefully (SIGTERM): the next write does not count it' : 'stop server-4 gracefully (SIGTERM): it leaves every send set', async () => {
    const leaving = s4!
    const stopped = performance.now()
    leaving.child.kill('SIGTERM')
    const code = await leaving.exited
    expect(code === 0, `${leaving.serverId} exited with ${code}`)
    if (broker) {
      results.leave = { goneMs: performance.now() - stopped }
      cluster.instances.splice(cluster.instances.indexOf(leaving), 1)
      print(`  ${leaving.serverId} exited 0 ${ms(results.leave.goneMs)} after SIGTERM`)
      await write(s1, 'assign-user', { group: GROUP, user: 'carol' })
      return
    }
    await waitPeers(three)
    results.leave = { goneMs: performance.now() - stopped }
    print(`  ${leaving.serverId} exited 0 and is out of every /servers ${ms(results.leave.goneMs)} after SIGTERM`)
  })
  return results
}

/** The policy board of the demo's third server, on the walkthrough's tenant. */
export function boardUrl (cluster: Cluster): string {
  return `${cluster.instances[2].url}/policy-board/?tenant=${TENANT}`
}

function tryItOut (cluster: Cluster): string[] {
  const [s1, s2, s3] = cluster.instances
  return [
    'The cluster keeps running. Try it (each write on one server is seen at once on the others):',
    '',
    `  policy board (live): ${boardUrl(cluster)}`,
    '',
    `  curl -s '${s2.url}${check(TENANT, USER, 'documents:write')}'`,
    `  curl -s -X POST ${s1.url}/assign-user -H 'content-type: application/json' -d '{"tenant":"${TENANT}","group":"${GROUP}","user":"bob"}'`,
    `  curl -s '${s3.url}${check(TENANT, 'bob', 'documents:write')}'`,
    `  curl -s ${s2.url}/tenants/${TENANT}`,
    `  curl -s ${s1.url}/servers`,
    `  curl -s ${s3.url}/health`,
    '',
    `Server logs: ${cluster.logFile}`,
    'Press Ctrl-C to stop the three servers and remove the data directory.'
  ]
}

async function main (): Promise<number> {
  const args = process.argv.slice(2)
  const keep = args.includes('--keep')
  // Kept up for a person at a terminal (or asked with --keep); ends by itself where nobody can press Ctrl-C.
  const once = args.includes('--once') || (!keep && process.stdin.isTTY !== true)
  const at = args.indexOf('--transport')
  const transportName = at === -1 ? 'webhook' : args[at + 1]
  const unknown = args.filter((arg, i) => arg !== '--once' && arg !== '--keep' && (at === -1 || (i !== at && i !== at + 1)))
  if (unknown.length > 0 || !['webhook', 'nats', 'redis', 'pg-notify'].includes(transportName ?? '')) {
    process.stderr.write(`demo: ${unknown.length > 0 ? `unknown argument ${unknown[0]}` : `unknown transport ${transportName ?? '(none)'}`} (usage: npm run demo [-- --once | --keep] [--transport webhook|nats|redis|pg-notify])\n`)
    return 2
  }
  // The broker's URL, the policy database and its table prefix per transport (pg-notify listens on the policy database).
  const transport = transportName === 'nats'
    ? process.env.NATS_URL ?? 'nats://127.0.0.1:4222'
    : transportName === 'redis' ? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' : transportName as string
  const postgres = transportName === 'pg-notify' ? process.env.POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test' : undefined
  const print = (line: string): void => { process.stdout.write(line + '\n') }

  let cluster: Cluster | undefined
  let stopping = false
  const shutdown = async (code: number, removeDir: boolean): Promise<number> => {
    stopping = true
    if (cluster !== undefined) {
      await cluster.stop()
      if (removeDir) rmSync(cluster.dir, { recursive: true, force: true })
      else print(`Logs and database kept in ${cluster.dir}`)
    }
    return code
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return
    print(`\n${signal}: stopping the servers...`)
    shutdown(0, true).then((code) => {
      print('Stopped.')
      process.exit(code)
    }, () => process.exit(1))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  // Last resort (an unexpected crash): never leave a server behind.
  process.on('exit', () => {
    for (const { child } of cluster?.instances ?? []) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  print(postgres === undefined
    ? 'fastify-policy-cache demo: three instances of examples/server.ts sharing one SQLite database'
    : 'fastify-policy-cache demo: three instances of examples/server.ts sharing one PostgreSQL database')
  try {
    // A write waits up to ACK_TIMEOUT_MS for both peers (it returns as soon as they have acknowledged);
    // 1 s instead of the plugin's 200 ms so a busy laptop does not fail the walkthrough.
    const env: Record<string, string> = { ACK_TIMEOUT_MS: process.env.ACK_TIMEOUT_MS ?? '1000' }
    if (process.env.SYNC_INTERVAL_MS !== undefined) env.SYNC_INTERVAL_MS = process.env.SYNC_INTERVAL_MS
    // A fresh table prefix on PostgreSQL (its tables are left there, named in the summary); SQLite gets a fresh file.
    if (postgres !== undefined) env.POLICY_TABLE_PREFIX = `demo_${randomBytes(4).toString('hex')}_`
    cluster = await startCluster({ env, transport, policyDb: postgres })
    print('')
    print(`  data directory  ${cluster.dir}`)
    print(`  database        ${cluster.dbLabel}`)
    print(`  server log      ${cluster.logFile}`)
    for (const instance of cluster.instances) print(`  ${instance.serverId.padEnd(15)} ${instance.url}`)
    print(`  policy board    ${boardUrl(cluster)}`)
    print('  webhook secret  random per run (whsec_, 32 bytes)')
    print(`  ack timeout     ${env.ACK_TIMEOUT_MS} ms`)
    print(`  transport       ${transport}${postgres === undefined ? '' : ` (tables prefixed ${env.POLICY_TABLE_PREFIX as string})`}`)
    const started = performance.now()
    await waitHealthy(cluster)
    print(`  all three healthy after ${ms(performance.now() - started)}`)
    if (transport === 'webhook') {
      await waitPeers(cluster.instances)
      print(`  each sends to the other two (found through the database, no peer list) after ${ms(performance.now() - started)}`)
    }

    const results = await runWalkthrough(cluster, print)

    print('')
    print('Summary: every step passed')
    for (const w of results.writes) {
      print(`  ${w.what.padEnd(40)} on ${w.server}: revision ${w.revision}, peers ${w.acked}/${w.total}, ${ms(w.ms)}`)
    }
    print(`  grant propagation (assign-user on server-1 -> allowed on server-2 and server-3): ${ms(results.grant!.propagationMs)}`)
    print(`  revoke propagation (remove-permission on server-3 -> denied on server-1): ${ms(results.revoke!.propagationMs)}`)
    print(`  join (spawn server-4 -> in every send set): ${ms(results.join!.visibleMs)}; graceful leave (SIGTERM -> out of every send set): ${ms(results.leave!.goneMs)}`)
  } catch (err) {
    // Interrupted: the signal handler is stopping the servers and exits when done.
    if (stopping) return new Promise<number>(() => {})
    const message = err instanceof StepError ? err.message : (err as Error)?.stack ?? String(err)
    print('')
    print(`FAILED: ${message}`)
    if (cluster !== undefined) print(`Server log: ${cluster.logFile}`)
    return shutdown(1, false)
  }

  if (once) {
    if (!args.includes('--once')) print('\nNot a terminal: stopping the cluster (npm run demo -- --keep keeps it up).')
    return shutdown(0, true)
  }

  print('')
  for (const line of tryItOut(cluster)) print(line)
  // Keep running until a signal; a server dying on its own ends the demo with a failure.
  // (Only the instances still running: the walkthrough's fourth has left already, on purpose.)
  const running = cluster.instances.filter(({ child }) => child.exitCode === null && child.signalCode === null)
  const first = await Promise.race(running.map(async (instance) => ({ instance, code: await instance.exited })))
  if (stopping) return new Promise<number>(() => {})
  print(`\n${first.instance.serverId} exited on its own (${first.code}); stopping the others. Log: ${cluster.logFile}`)
  return shutdown(1, false)
}

function isMain (): boolean {
  const script = process.argv[1]
  if (script === undefined) return false
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href
  } catch {
    return false
  }
}

if (isMain()) {
  main().then((code) => process.exit(code), (err) => {
    process.stderr.write(`demo: ${(err as Error)?.stack ?? String(err)}\n`)
    process.exit(1)
  })
}
