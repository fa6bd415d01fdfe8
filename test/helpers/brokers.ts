/**
 * In-process instances on a broker transport (nats, redis), sharing one SQLite file, with the
 * periodic sync off (only the transport and its resyncs can make a write visible elsewhere); and
 * brokers of the test's own on free ports (nats-server, redis-server) that a test can stop and start.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import policyCache, { type PolicyCacheOptions, type TransportOption } from '../../lib/plugin.js'
import type { TransportStatus } from '../../lib/broadcast/transport.js'
import { createSqliteDb, KyselyPolicyStore } from '../../lib/store/index.js'
import { SECRET, tempDir } from './app.js'
import { freePort } from './cluster.js'

export { until } from '../membership/suite.js'

export const NATS_URL = process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222'
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** Whether something accepts TCP connections at `url`'s host and port. */
export async function reachable (url: string): Promise<boolean> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  socket.setTimeout(2000, () => socket.destroy(new Error('timeout')))
  try {
    await once(socket, 'connect')
    return true
  } catch {
    return false
  } finally {
    socket.destroy()
  }
}

/** A random subject or channel name, unique to one test. */
export function randomName (what = 'policy'): string {
  return `${what}_${Math.random().toString(36).slice(2, 10)}`
}

/** One instance. */
export interface BrokerNode {
  app: FastifyInstance
  serverId: string
  /** The SQLite file the instances share. */
  file: string
  /** Its transport's status, as `/servers` shows it. */
  transport (): Promise<TransportStatus>
}

/** Starts one instance on the SQLite `file`, closed at the end of the test. */
export async function startBrokerNode (t: Test, file: string, serverId: string, transport: TransportOption, options: PolicyCacheOptions = {}): Promise<BrokerNode> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, {
    sqliteFile: file,
    serverId,
    webhookSecret: SECRET,
    syncIntervalMs: 0,
    transport,
    ...options
  })
  await app.ready()
  return {
    app,
    serverId,
    file,
    transport: async () => (await app.inject({ url: '/servers' })).json().transport
  }
}

/** `count` instances `n1`… on one new SQLite file, started one after the other. */
export async function startBrokerNodes (t: Test, count: number, transport: TransportOption, options: PolicyCacheOptions = {}): Promise<BrokerNode[]> {
  const file = join(tempDir(t), 'brokers.db')
  const nodes: BrokerNode[] = []
  for (let i = 1; i <= count; i++) nodes.push(await startBrokerNode(t, file, `n${i}`, transport, options))
  return nodes
}

/** A writer outside the plugin on the instances' SQLite `file`: its writes send no notice. Closed at the end of the test. */
export function outsideWriter (t: Test, file: string): KyselyPolicyStore {
  const db = createSqliteDb(file)
  t.teardown(() => db.destroy())
  return new KyselyPolicyStore({ db })
}

/** A broker process of the test's own on a fixed free port: stopped and started again at will, killed at the end. */
export interface OwnServer {
  url: string
  stop (): Promise<void>
  start (): Promise<void>
  /** SIGSTOP: the process keeps its sockets but answers nothing (a hung broker). */
  pause (): void
  /** SIGCONT after `pause`. */
  resume (): void
}

/** Starts `command args(port)` on a free port, waits until it accepts connections; killed at the end of the test. */
async function ownServer (t: Test, scheme: string, command: string, args: (port: number) => string[]): Promise<OwnServer> {
  const port = await freePort()
  const url = `${scheme}://127.0.0.1:${port}`
  let child: ChildProcess | undefined
  const stop = async (): Promise<void> => {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null) return
    const exited = once(running, 'exit')
    running.kill('SIGKILL')
    await exited
  }
  const start = async (): Promise<void> => {
    child = spawn(command, args(port), { stdio: 'ignore' })
    const deadline = Date.now() + 10000
    while (!await reachable(url)) {
      if (Date.now() > deadline) throw new Error(`${command} did not start on port ${port}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  const signal = (name: NodeJS.Signals) => () => { child?.kill(name) }
  // A test process told to exit skips its teardowns (Stryker's runner ends one that runs past its
  // time with SIGTERM, which its hook turns into an exit): the server goes with it.
  const killOnExit = (): void => { child?.kill('SIGKILL') }
  process.on('exit', killOnExit)
  t.teardown(async () => {
    process.off('exit', killOnExit)
    child?.kill('SIGCONT')
    await stop()
  })
  await start()
  return { url, stop, start, pause: signal('SIGSTOP'), resume: signal('SIGCONT') }
}

/** A nats-server of the test's own (core NATS, no JetStream). */
export async function ownNatsServer (t: Test): Promise<OwnServer> {
  return await ownServer(t, 'nats', 'nats-server', (port) => ['-a', '127.0.0.1', '-p', String(port)])
}

/** A redis-server of the test's own, keeping nothing on disk. */
export async function ownRedisServer (t: Test): Promise<OwnServer> {
  return await ownServer(t, 'redis', 'redis-server', (port) => ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'])
}
