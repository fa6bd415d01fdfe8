/**
 * Spawning benchmark instances (bench/instance.ts) as separate processes and driving them over IPC.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import type { InstanceConfig } from './instance.js'
import { now } from './stats.js'

export { freePort } from '../test/helpers/cluster.js'

const SCRIPT = fileURLToPath(new URL('./instance.ts', import.meta.url))

export const SECRET = 'whsec_' + Buffer.from('benchmark-secret-long-enough-32b').toString('base64')

export interface Instance {
  url: string
  call<T = unknown> (cmd: string, args?: object, timeoutMs?: number): Promise<T>
  /** Resolves with the timestamp at which this instance first saw change `seq` (or rejects on timeout). */
  visible (seq: number, timeoutMs: number): Promise<number>
  /** When the request that carried change `seq` reached this instance, if it reports that. */
  arrival (seq: number): number | undefined
  /** This instance's clock minus ours, estimated from one IPC round trip (ms), and that round trip. */
  clockOffset (): Promise<{ offset: number, rtt: number }>
  close (): Promise<void>
}

/** A child process driven over IPC: `{ id, cmd, args }` → `{ id, result }` or `{ id, error }`. */
export interface Driven {
  /** Resolves with the child's `{ event: 'ready' }` message; rejects if it exits or does not send it within `startMs`. */
  ready: Promise<any>
  call<T = unknown> (cmd: string, args?: object, timeoutMs?: number): Promise<T>
  /** Asks the child to close, SIGKILLs it if it does not exit. */
  close (): Promise<void>
}

/** Drives `child` (named `name` in errors); every other event message goes to `onEvent`. */
export function drive (child: ChildProcess, name: string, onEvent: (msg: any) => void, startMs = 60000): Driven {
  let nextId = 1
  const calls = new Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }>()
  let ready!: (msg: any) => void
  let failed!: (err: Error) => void
  const started = new Promise<any>((resolve, reject) => { ready = resolve; failed = reject })
  child.on('message', (msg: any) => {
    if (msg.event === 'ready') ready(msg)
    else if (msg.event !== undefined) onEvent(msg)
    else {
      const call = calls.get(msg.id)
      calls.delete(msg.id)
      if (msg.error !== undefined) call?.reject(new Error(`${name}: ${msg.error}`))
      else call?.resolve(msg.result)
    }
  })
  child.on('exit', (code) => {
    failed(new Error(`${name} exited with ${code}`))
    for (const call of calls.values()) call.reject(new Error(`${name} exited with ${code}`))
    calls.clear()
  })
  const startTimer = setTimeout(() => failed(new Error(`${name} did not start in ${startMs / 1000} s`)), startMs)
  started.then(() => clearTimeout(startTimer), () => clearTimeout(startTimer))

  const call = <T>(cmd: string, args: object = {}, timeoutMs = 60000): Promise<T> => new Promise<T>((resolve, reject) => {
    const id = nextId++
    const timer = setTimeout(() => { calls.delete(id); reject(new Error(`${name}: ${cmd} timed out`)) }, timeoutMs)
    calls.set(id, {
      resolve: (v) => { clearTimeout(timer); resolve(v) },
      reject: (e) => { clearTimeout(timer); reject(e) }
    })
    child.send({ id, cmd, args })
  })
  return {
    ready: started,
    call,
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      await call('close', {}, 10000).catch(() => child.kill('SIGKILL'))
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
  }
}

export async function spawnInstance (config: InstanceConfig): Promise<Instance> {
  const child: ChildProcess = fork(SCRIPT, [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, BENCH_INSTANCE: JSON.stringify(config) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const seen = new Map<number, number>()
  const arrivals = new Map<number, number>()
  const waiters = new Map<number, (at: number) => void>()
  const driven = drive(child, `instance ${config.mode}`, (msg) => {
    if (msg.event !== 'visible') return
    seen.set(msg.seq, msg.at)
    if (typeof msg.arrived === 'number') arrivals.set(msg.seq, msg.arrived)
    waiters.get(msg.seq)?.(msg.at)
  })
  const { url } = await driven.ready
  const { call } = driven
  return {
    url: url ?? '',
    call,
    visible: (seq, timeoutMs) => {
      const at = seen.get(seq)
      if (at !== undefined) return Promise.resolve(at)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => { waiters.delete(seq); reject(new Error(`change ${seq} not visible within ${timeoutMs} ms`)) }, timeoutMs)
        waiters.set(seq, (v) => { clearTimeout(timer); waiters.delete(seq); resolve(v) })
      })
    },
    arrival: (seq) => arrivals.get(seq),
    clockOffset: async () => {
      const t0 = now()
      const theirs = await call<number>('clock')
      const t1 = now()
      return { offset: theirs - (t0 + t1) / 2, rtt: t1 - t0 }
    },
    close: driven.close
  }
}

/** Spawns several instances at once; on any failure closes those that started. */
export async function spawnAll (configs: InstanceConfig[]): Promise<Instance[]> {
  const settled = await Promise.allSettled(configs.map(spawnInstance))
  const ok = settled.flatMap((s) => s.status === 'fulfilled' ? [s.value] : [])
  const bad = settled.find((s) => s.status === 'rejected')
  if (bad !== undefined) {
    await Promise.all(ok.map((i) => i.close()))
    throw (bad as PromiseRejectedResult).reason
  }
  return ok
}

/** A peer that accepts TCP connections and never answers. */
export async function hangingServer (): Promise<{ url: string, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      server.close()
      await once(server, 'close')
    }
  }
}
