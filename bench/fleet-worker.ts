/**
 * One process of the fleet section (bench/fleet.ts): several instances of one system, started one
 * after the other — the writer alone in its process (its CPU time is the process's), the peers up to
 * ten per process. Run as compiled JavaScript (bench/fleet-env.ts), configured by FLEET_WORKER (JSON),
 * driven over IPC like bench/instance.ts: `{ id, cmd, args }` → `{ id, result }` or `{ id, error }`.
 *
 * Systems: the plugin on PostgreSQL with the `webhook`, `pg-notify`, `nats` or `redis` transport
 * (all instances of a process share one small pool), and BentoCache (memory L1 + Redis L2 + Redis bus).
 *
 * Visibility: `watch` arms every instance of the process; each checks its own engine (`checkSync`,
 * BentoCache `get`) on the next turn of the event loop after any socket of the process received
 * data (a webhook request, a NOTIFY, a NATS or Redis message, a database answer: the moments its
 * answer can change), and every 20 ms as a safety net; when all have seen the change (or
 * `timeoutMs` passed) the process reports `{ event: 'visible', seq, at: [per instance, NaN missed],
 * late }` — `late`: how many were first seen by the safety net, i.e. measured up to 20 ms late.
 */
import { Socket } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import policyCache, { type TransportOption } from '../lib/plugin.js'
import { now } from './stats.js'

export type FleetSystem = 'webhook' | 'pg-notify' | 'nats' | 'redis' | 'BentoCache'

export interface WorkerConfig {
  system: FleetSystem
  /** Instances in this process and the index of the first (serverIds `fleet-<index>`). */
  count: number
  first: number
  /** Address the instances listen on (webhook). */
  host: string
  pgUrl: string
  natsUrl: string
  redis: { host: string, port: number }
  tablePrefix: string
  secret: string
  /** webhook: the peers of the writer. */
  peers?: string[]
  /** PostgreSQL pool size of the process. */
  poolSize: number
  /** BentoCache: store name (bus channel and key prefix), unique per run. */
  bentoName: string
}

const config = JSON.parse(process.env.FLEET_WORKER ?? '{}') as WorkerConfig
/** The grant a write adds to group g0 (which user u0 belongs to), whose visibility is watched. */
const permissionOf = (seq: number): string => `bench:p${seq}`

interface Member {
  url: string
  /** Whether this instance's own check shows change `seq` now (or later: `then`). */
  sees (tenant: string, seq: number, then: (yes: boolean) => void): void
  load (tenant: string): Promise<unknown>
  write (tenant: string, seq: number): Promise<{ acked?: number, total?: number, revision?: number }>
  revision (tenant: string): number | undefined
  /** BentoCache: sets the tenant's policy (version 0) in L1 and L2. */
  seed?: (tenant: string, rules: string[]) => Promise<unknown>
  close (): Promise<void>
}

let pending: { tenant: string, seq: number, at: number[], left: number, late: number, timer: NodeJS.Timeout, fallback: NodeJS.Timeout } | undefined
let members: Member[] = []

function finish (): void {
  if (pending === undefined) return
  const { seq, at, late, timer, fallback } = pending
  pending = undefined
  clearTimeout(timer)
  clearInterval(fallback)
  process.send!({ event: 'visible', seq, at, late })
}

function probe (byFallback: boolean): void {
  const watching = pending
  if (watching === undefined) return
  members.forEach((member, i) => {
    if (!Number.isNaN(watching.at[i])) return
    member.sees(watching.tenant, watching.seq, (yes) => {
      if (!yes || pending !== watching || !Number.isNaN(watching.at[i])) return
      watching.at[i] = now()
      if (byFallback) watching.late++
      if (--watching.left === 0) finish()
    })
  })
}

// Any data on any socket of the process (a notice, a reply, a database answer) may make a change
// visible: probe on the next turn, once the handlers it starts have run.
let scheduled = false
const emit = Socket.prototype.emit
Socket.prototype.emit = function (this: Socket, event: string | symbol, ...args: unknown[]): boolean {
  if (event === 'data' && pending !== undefined && !scheduled) {
    scheduled = true
    setImmediate(() => { scheduled = false; probe(false) })
  }
  return emit.apply(this, [event, ...args] as Parameters<typeof emit>)
} as typeof emit

function transportOf (system: FleetSystem): TransportOption {
  switch (system) {
    case 'pg-notify': return { type: 'pg-notify', connection: config.pgUrl }
    case 'nats': return { type: 'nats', servers: config.natsUrl }
    case 'redis': return { type: 'redis', connection: `redis://${config.redis.host}:${config.redis.port}` }
    default: return 'webhook'
  }
}

async function plugin (db: Kysely<any>, index: number): Promise<Member> {
  const app: FastifyInstance = Fastify()
  const port = config.system === 'webhook' ? 0 : undefined
  await app.register(policyCache, {
    db,
    tablePrefix: config.tablePrefix,
    serverId: `fleet-${index}`,
    webhookSecret: config.secret,
    syncIntervalMs: 0,
    // A loaded two-core machine starting a hundred instances can take longer than the 2 s default.
    catchUpTimeoutMs: 10000,
    transport: transportOf(config.system),
    ...(config.system === 'webhook' ? { peers: config.peers ?? [] } : {})
  })
  let url = ''
  if (port !== undefined) {
    const address = await app.listen({ port, host: config.host })
    url = address
  } else {
    await app.ready()
  }
  return {
    url,
    sees: (tenant, seq, then) => then(app.policyCache.checkSync(tenant, 'u0', permissionOf(seq)) === true),
    load: (tenant) => app.policyCache.revision(tenant),
    write: async (tenant, seq) => {
      const out = await app.policyCache.addPermission(tenant, 'g0', permissionOf(seq))
      return { acked: out.peers.acked, total: out.peers.total, revision: out.revision }
    },
    revision: (tenant) => app.policyCache.cachedRevisions().find(([t]) => t === tenant)?.[1],
    close: () => app.close()
  }
}

/** A tenant's policy in BentoCache: its rules and a version (the sequence of the last write). */
interface Policy { version: number, rules: string[] }

async function bento (): Promise<Member> {
  const { BentoCache, bentostore } = await import('bentocache')
  const { memoryDriver } = await import('bentocache/drivers/memory')
  const { redisDriver, redisBusDriver } = await import('bentocache/drivers/redis')
  const name = config.bentoName
  const cache = new BentoCache({
    default: name,
    prefix: name,
    stores: {
      [name]: bentostore()
        .useL1Layer(memoryDriver({ maxSize: '20mb' }))
        .useL2Layer(redisDriver({ connection: config.redis }))
        .useBus(redisBusDriver({ connection: config.redis }))
    }
  })
  const local = new Map<string, Policy>()
  const versions = new Map<string, number>()
  let reading = false
  // The bus message invalidates L1 right after this event: the probe's `get` then reads L2.
  cache.on('bus:message:received', () => setImmediate(() => probe(false)))
  return {
    url: '',
    sees: (tenant, seq, then) => {
      if (reading) return
      reading = true
      cache.get<Policy>({ key: tenant }).then((policy) => {
        reading = false
        if (policy !== undefined && policy !== null) versions.set(tenant, policy.version)
        then(policy !== undefined && policy !== null && policy.version >= seq)
      }, () => { reading = false })
    },
    load: async (tenant) => {
      const policy = await cache.get<Policy>({ key: tenant })
      if (policy === undefined || policy === null) throw new Error(`bento: ${tenant} is not in the cache`)
      local.set(tenant, policy)
      return policy.rules.length
    },
    write: async (tenant, seq) => {
      const next = { version: seq, rules: [...local.get(tenant)!.rules, `p, g0, ${tenant}, ${permissionOf(seq)}`] }
      await cache.set({ key: tenant, value: next })
      local.set(tenant, next)
      return {}
    },
    revision: (tenant) => versions.get(tenant),
    seed: (tenant, rules) => cache.set({ key: tenant, value: { version: 0, rules } }),
    close: () => cache.disconnectAll()
  }
}

async function main (): Promise<void> {
  let db: Kysely<any> | undefined
  if (config.system !== 'BentoCache') {
    const pool = new pg.Pool({ connectionString: config.pgUrl, max: config.poolSize, connectionTimeoutMillis: 10000 })
    pool.on('error', () => {})
    db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) })
  }
  // One after the other: staggered, so that a process's instances do not all migrate-check, connect
  // and subscribe at once on two cores.
  for (let i = 0; i < config.count; i++) members.push(db === undefined ? await bento() : await plugin(db, config.first + i))
  const writer = members[0]
  const handlers: Record<string, (args: any) => Promise<unknown>> = {
    load: async ({ tenant }) => { for (const member of members) await member.load(tenant) },
    seed: async ({ tenant, rules }) => { await writer.seed?.(tenant, rules) },
    watch: async ({ tenant, seq, timeoutMs }) => {
      finish()
      pending = {
        tenant,
        seq,
        at: members.map(() => NaN),
        left: members.length,
        late: 0,
        timer: setTimeout(finish, timeoutMs),
        fallback: setInterval(() => probe(true), 20)
      }
      probe(false)
    },
    write: async ({ tenant, seq }) => {
      const cpu = process.cpuUsage()
      const start = now()
      const out = await writer.write(tenant, seq)
      const end = now()
      const used = process.cpuUsage(cpu)
      return { ...out, start, end, cpuMs: (used.user + used.system) / 1000 }
    },
    /** Writes back to back for `ms` on `tenants` (one sequence of writes per tenant, in parallel). */
    burst: async ({ tenants, ms, from }) => {
      const until = now() + ms
      let seq = from
      let count = 0
      const started = now()
      const cpu = process.cpuUsage()
      await Promise.all((tenants as string[]).map(async (tenant) => {
        while (now() < until) {
          await writer.write(tenant, seq++)
          count++
        }
      }))
      const used = process.cpuUsage(cpu)
      return { count, seconds: (now() - started) / 1000, next: seq, cpuMs: (used.user + used.system) / 1000 }
    },
    revisions: async ({ tenant }) => members.map((member) => member.revision(tenant) ?? null),
    cpu: async () => process.cpuUsage(),
    close: async () => {
      finish()
      for (const member of members.reverse()) await member.close()
      members = []
      await db?.destroy()
      setImmediate(() => process.exit(0))
    }
  }
  process.on('message', (message: { id: number, cmd: string, args?: unknown }) => {
    const handler = handlers[message.cmd]
    const result = handler === undefined ? Promise.reject(new Error(`unknown command ${message.cmd}`)) : handler(message.args ?? {})
    result.then(
      (value) => process.send!({ id: message.id, result: value }),
      (err: Error) => process.send!({ id: message.id, error: err?.stack ?? String(err) })
    )
  })
  process.on('disconnect', () => process.exit(0))
  process.send!({ event: 'ready', urls: members.map((member) => member.url) })
}

main().catch((err) => {
  process.stderr.write(`fleet worker (${config.system}): ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
})
