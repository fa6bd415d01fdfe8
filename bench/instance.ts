/**
 * One benchmark instance, run as its own process by bench/cluster.ts (`fork` with tsx). Its
 * configuration comes in BENCH_INSTANCE (JSON); the parent drives it over IPC: `{ id, cmd, args }`
 * → `{ id, result }` or `{ id, error }`, and it reports `{ event: 'visible', seq, at }` when a watched
 * change first shows in its own check. Timestamps are `performance.timeOrigin + performance.now()`
 * (milliseconds), comparable across the processes of one host.
 *
 * Modes: `ours` (the plugin on a shared SQLite file), `bento` (BentoCache: memory L1 + Redis L2 +
 * Redis bus), `casbin` (node-casbin, a policy file per tenant + @casbin/redis-watcher), `bare` (a bare
 * Fastify POST route, for the loopback round-trip floor) and `http` (the plugin's check route and a
 * bare route answering the same JSON).
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { Agent, request } from 'undici'
import policyCache, { createSqliteDb } from '../lib/plugin.js'
import { now } from './stats.js'

export interface InstanceConfig {
  mode: 'ours' | 'bento' | 'casbin' | 'bare' | 'http'
  port?: number
  peers?: string[]
  secret?: string
  serverId?: string
  sqliteFile?: string
  ackTimeoutMs?: number
  /** bento: store name (→ bus channel) and key prefix, unique per run. */
  bentoName?: string
  /** casbin: per tenant, its policy file and watcher channel. */
  casbin?: Record<string, { file: string, channel: string }>
}

type Handler = (args: any) => Promise<unknown>

const config = JSON.parse(process.env.BENCH_INSTANCE ?? '{}') as InstanceConfig
/** The rule a write adds (to group g0, which user u0 belongs to) and whose visibility is watched. */
const permissionOf = (seq: number): string => `bench:p${seq}`

let pending: { tenant: string, seq: number } | undefined
let fallback: NodeJS.Timeout | undefined

/** Reports the watched change's first visibility; `visible` is this instance's own check. */
function found (seq: number, arrived?: number): void {
  if (pending?.seq !== seq) return
  pending = undefined
  clearInterval(fallback)
  process.send!({ event: 'visible', seq, at: now(), arrived })
}

/**
 * Starts watching: `probe` is called on every notification this instance receives (the earliest
 * moment its answer can change) and, as a safety net, every 20 ms.
 */
function watch (tenant: string, seq: number, probe: () => void): void {
  pending = { tenant, seq }
  clearInterval(fallback)
  fallback = setInterval(probe, 20)
  probe()
}

async function ours (): Promise<{ url: string, handlers: Record<string, Handler>, close: () => Promise<void> }> {
  const db = createSqliteDb(config.sqliteFile!)
  const app = Fastify()
  let arrived: number | undefined
  const probe = (): void => {
    if (pending !== undefined && app.policyCache.checkSync(pending.tenant, 'u0', permissionOf(pending.seq)) === true) found(pending.seq, arrived)
  }
  // For the breakdown: when the last webhook request reached this instance.
  app.addHook('onRequest', async (request) => { if (request.url.startsWith('/webhook/')) arrived = now() })
  // Runs after the webhook handler has caught up, before the reply is written: the change is visible now.
  app.addHook('onSend', async (_request, _reply, payload) => { probe(); return payload })
  await app.register(policyCache, {
    db,
    serverId: config.serverId,
    peers: config.peers ?? [],
    webhookSecret: config.secret,
    publicUrl: `http://127.0.0.1:${config.port}`,
    syncIntervalMs: 0,
    ...(config.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: config.ackTimeoutMs })
  })
  const url = await app.listen({ port: config.port ?? 0, host: '127.0.0.1' })
  return {
    url,
    handlers: {
      load: async ({ tenant }) => app.policyCache.revision(tenant),
      write: async ({ tenant, seq }) => {
        const start = now()
        const out = await app.policyCache.addPermission(tenant, 'g0', permissionOf(seq))
        return { start, end: now(), acked: out.peers.acked, total: out.peers.total }
      },
      watch: async ({ tenant, seq }) => watch(tenant, seq, probe),
      peers: async () => app.policyCache.peers()
    },
    close: async () => { await app.close(); await db.destroy() }
  }
}

async function bento (): Promise<{ handlers: Record<string, Handler>, close: () => Promise<void> }> {
  const { BentoCache, bentostore } = await import('bentocache')
  const { memoryDriver } = await import('bentocache/drivers/memory')
  const { redisDriver, redisBusDriver } = await import('bentocache/drivers/redis')
  const connection = { host: '127.0.0.1', port: 6379 }
  const name = config.bentoName!
  const cache = new BentoCache({
    default: name,
    prefix: name,
    stores: {
      [name]: bentostore()
        .useL1Layer(memoryDriver({ maxSize: '200mb' }))
        .useL2Layer(redisDriver({ connection }))
        .useBus(redisBusDriver({ connection }))
    }
  })
  /** A tenant's policy as one cached value: its rules and a version (the sequence of the last write). */
  interface Policy { version: number, rules: string[] }
  const local = new Map<string, Policy>()
  let probing = false
  const probe = (): void => {
    if (pending === undefined || probing) return
    const { tenant, seq } = pending
    probing = true
    cache.get<Policy>({ key: tenant }).then((policy) => {
      probing = false
      if (policy !== undefined && policy !== null && policy.version >= seq) found(seq)
    }, () => { probing = false })
  }
  // The bus message invalidates L1 right after this event: probe on the next turn.
  cache.on('bus:message:received', () => setImmediate(probe))
  return {
    handlers: {
      seed: async ({ tenant, rules }) => cache.set({ key: tenant, value: { version: 0, rules } }),
      load: async ({ tenant }) => {
        const policy = await cache.get<Policy>({ key: tenant })
        if (policy === undefined || policy === null) throw new Error(`bento: ${tenant} is not in the cache`)
        local.set(tenant, policy)
        return policy.rules.length
      },
      write: async ({ tenant, seq }) => {
        const start = now()
        const current = local.get(tenant)!
        const next = { version: seq, rules: [...current.rules, `p, g0, ${tenant}, ${permissionOf(seq)}`] }
        await cache.set({ key: tenant, value: next })
        local.set(tenant, next)
        return { start, end: now() }
      },
      watch: async ({ tenant, seq }) => watch(tenant, seq, probe),
      clear: async () => cache.clear()
    },
    close: async () => { await cache.disconnectAll() }
  }
}

async function casbin (): Promise<{ handlers: Record<string, Handler>, close: () => Promise<void> }> {
  const { newEnforcer, newModelFromString, FileAdapter } = await import('casbin')
  const { RedisWatcher } = await import('@casbin/redis-watcher')
  const { CASBIN_MODEL } = await import('./fixtures.js')
  const tenants = new Map<string, { enforcer: Awaited<ReturnType<typeof newEnforcer>>, watcher: { close: () => Promise<void> } }>()
  const probe = (): void => {
    if (pending === undefined) return
    const enforcer = tenants.get(pending.tenant)?.enforcer
    if (enforcer?.enforceSync('u0', pending.tenant, permissionOf(pending.seq)) === true) found(pending.seq)
  }
  for (const [tenant, { file, channel }] of Object.entries(config.casbin ?? {})) {
    const enforcer = await newEnforcer(newModelFromString(CASBIN_MODEL), new FileAdapter(file))
    const watcher = await RedisWatcher.newWatcher({ host: '127.0.0.1', port: 6379, channel })
    await enforcer.setWatcher(watcher)
    // The stock reaction (reload the policy from the adapter), then this instance's check.
    watcher.setUpdateCallback(() => { enforcer.loadPolicy().then(probe, () => {}) })
    // A write saves the file first and notifies after (savePolicy), so peers never reload a stale file.
    enforcer.enableAutoNotifyWatcher(false)
    tenants.set(tenant, { enforcer, watcher })
  }
  return {
    handlers: {
      load: async ({ tenant }) => (await tenants.get(tenant)!.enforcer.getPolicy()).length,
      write: async ({ tenant, seq }) => {
        const start = now()
        const { enforcer } = tenants.get(tenant)!
        await enforcer.addPolicy('g0', tenant, permissionOf(seq))
        await enforcer.savePolicy()
        return { start, end: now() }
      },
      watch: async ({ tenant, seq }) => watch(tenant, seq, probe)
    },
    close: async () => { for (const { watcher } of tenants.values()) await watcher.close() }
  }
}

async function bare (): Promise<{ url: string, handlers: Record<string, Handler>, close: () => Promise<void> }> {
  const app = Fastify()
  app.post('/ping', async () => ({ ok: true }))
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const dispatcher = new Agent({ keepAliveTimeout: 60000 })
  return {
    url,
    handlers: {
      // Round trips of a small JSON POST to `url` over one kept-alive connection.
      rtt: async ({ url: target, n }) => {
        const out: number[] = []
        for (let i = 0; i < n; i++) {
          const start = now()
          const res = await request(`${target}/ping`, { method: 'POST', dispatcher, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ seq: i }) })
          await res.body.json()
          out.push(now() - start)
          await new Promise((resolve) => setTimeout(resolve, 2))
        }
        return out
      }
    },
    close: async () => { await dispatcher.close(); await app.close() }
  }
}

async function http (): Promise<{ url: string, handlers: Record<string, Handler>, close: () => Promise<void> }> {
  const app: FastifyInstance = Fastify()
  await app.register(policyCache, { syncIntervalMs: 0 })
  await app.policyCache.createGroup('acme', 'editors')
  await app.policyCache.addPermission('acme', 'editors', 'documents:*')
  await app.policyCache.assignUser('acme', 'editors', 'alice')
  const ourUrl = await app.listen({ port: 0, host: '127.0.0.1' })
  const bareApp = Fastify()
  // The same JSON as the plugin's answer, with no validation, lookup or serializer schema.
  bareApp.get('/check-access', async (_request, reply) => {
    reply.header('policy-revision', '3')
    return { allowed: true, revision: 3 }
  })
  const bareUrl = await bareApp.listen({ port: 0, host: '127.0.0.1' })
  return {
    url: ourUrl,
    handlers: { urls: async () => ({ ours: ourUrl, bare: bareUrl }) },
    close: async () => { await app.close(); await bareApp.close() }
  }
}

async function main (): Promise<void> {
  const setup = { ours, bento, casbin, bare, http }[config.mode]
  if (setup === undefined) throw new Error(`unknown mode ${config.mode}`)
  const instance: { url?: string, handlers: Record<string, Handler>, close: () => Promise<void> } = await setup()
  const handlers: Record<string, Handler> = {
    ...instance.handlers,
    clock: async () => now(),
    close: async () => {
      clearInterval(fallback)
      await instance.close()
      setImmediate(() => process.exit(0))
    }
  }
  process.on('message', (message: { id: number, cmd: string, args?: unknown }) => {
    const handler = handlers[message.cmd]
    const run = handler === undefined ? Promise.reject(new Error(`unknown command ${message.cmd}`)) : handler(message.args ?? {})
    run.then(
      (result) => process.send!({ id: message.id, result }),
      (err: Error) => process.send!({ id: message.id, error: err?.stack ?? String(err) })
    )
  })
  process.on('disconnect', () => process.exit(0))
  process.send!({ event: 'ready', url: instance.url })
}

main().catch((err) => {
  process.stderr.write(`bench instance (${config.mode}): ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
})
