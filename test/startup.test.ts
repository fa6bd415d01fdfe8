/**
 * Startup fails fast and says why: a database that refuses or hangs fails registration with one
 * FST_POLICY_CACHE_STORE_UNAVAILABLE carrying the cause (never avvio's plugin timeout), an
 * unwritable SQLite file names the option and the path; `preload` and `warm` fill the cache, and
 * `checkSync` on a cold tenant starts its load.
 */
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { test, type Test } from 'tap'
import policyCache from '../lib/plugin.js'
import { tempDir } from './helpers/app.js'
import { InstrumentedStore } from './helpers/instrumented-store.js'

/** A local port nothing listens on: bound, then released. */
async function closedPort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/** A TCP server that accepts connections and never answers (a hung database). */
async function hangingServer (): Promise<{ port: number, close: () => void }> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  }).listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as { port: number }).port,
    close () {
      for (const socket of sockets) socket.destroy()
      server.close()
    }
  }
}

/**
 * A PostgreSQL Kysely on `port` with the pool's defaults (no connect timeout). At teardown, after
 * the app (teardowns run last-registered first): the server behind `port` is closed, so that a
 * connection still waiting on it ends, then the pool is destroyed.
 */
function postgresOn (t: Test, port: number, server?: { close: () => void }): Kysely<any> {
  const pool = new pg.Pool({ connectionString: `postgres://postgres@127.0.0.1:${port}/test` })
  pool.on('error', () => {})
  const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) })
  t.teardown(async () => {
    server?.close()
    await db.destroy()
  })
  return db
}

test('an unreachable PostgreSQL fails registration with one coded error carrying ECONNREFUSED', async (t) => {
  const port = await closedPort()
  const db = postgresOn(t, port)
  const app = Fastify()
  t.teardown(() => app.close())
  const err = await app.register(policyCache, { db, syncIntervalMs: 0 }).ready().then(() => null, (e: Error) => e)
  t.match(err, { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE', message: new RegExp(`startup failed: .*ECONNREFUSED 127\\.0\\.0\\.1:${port}`) })
})

test('a PostgreSQL that accepts and never answers fails registration after startupTimeoutMs, not avvio\'s timeout', async (t) => {
  const hanging = await hangingServer()
  const db = postgresOn(t, hanging.port, hanging)
  const app = Fastify()
  t.teardown(() => app.close())
  const err = await app.register(policyCache, { db, syncIntervalMs: 0, startupTimeoutMs: 300 }).ready().then(() => null, (e: Error) => e)
  t.match(err, { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE', message: /within 300 ms \(startupTimeoutMs\)/ })
})

test('the default startup bound stays under a short Fastify pluginTimeout; an explicit one above it is refused', async (t) => {
  const hanging = await hangingServer()
  const db = postgresOn(t, hanging.port, hanging)
  const app = Fastify({ pluginTimeout: 800 })
  t.teardown(() => app.close())
  const err = await app.register(policyCache, { db, syncIntervalMs: 0 }).ready().then(() => null, (e: Error) => e)
  t.match(err, { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE', message: /within 400 ms/ }, 'half of pluginTimeout')

  const strict = Fastify({ pluginTimeout: 800 })
  t.teardown(() => strict.close())
  await t.rejects(async () => { await strict.register(policyCache, { syncIntervalMs: 0, startupTimeoutMs: 800 }).ready() },
    { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /"startupTimeoutMs": must be below Fastify's pluginTimeout \(800 ms\)/ })
})

test('an unwritable sqliteFile names the option and the path', async (t) => {
  // A path under a regular file can be created by nobody, root included.
  const file = join(tempDir(t), 'not-a-directory')
  writeFileSync(file, '')
  const sqliteFile = join(file, 'policy.db')
  const app = Fastify()
  t.teardown(() => app.close())
  const err = await app.register(policyCache, { sqliteFile, syncIntervalMs: 0 }).ready().then(() => null, (e: Error) => e)
  t.match(err, { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: `Invalid option "sqliteFile": cannot open ${JSON.stringify(sqliteFile)}` })
  t.ok(err?.cause, 'the filesystem error is attached')
})

/** A store with one tenant written, and an app on it whose warnings the test can await. */
async function appWithTenant (t: Test, options: { preload?: string[] } = {}) {
  const store = new InstrumentedStore()
  await store.write('t1', { op: 'create-group', group: 'readers' }, 'seed')
  await store.write('t1', { op: 'add-permission', group: 'readers', permission: 'doc:read' }, 'seed')
  await store.write('t1', { op: 'assign-user', group: 'readers', user: 'alice' }, 'seed')
  /** The plugin's log lines at info and above. */
  const lines: Array<{ level: number, msg: string, tenant?: string, failures?: number }> = []
  let onLine = (): void => {}
  const stream = new Writable({
    write (chunk, _encoding, done) {
      const line = JSON.parse(String(chunk))
      if (line.plugin === 'policy-cache') {
        lines.push(line)
        onLine()
      }
      done()
    }
  })
  const app = Fastify({ logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  await app.register(policyCache, { db: store, syncIntervalMs: 0, ...options })
  await app.ready()
  const nextLine = () => new Promise<void>((resolve) => { onLine = resolve })
  return { app, store, lines, nextLine }
}

test('preload loads tenants at startup: checkSync answers from the first call', async (t) => {
  const { app, store } = await appWithTenant(t, { preload: ['t1'] })
  t.equal(app.policyCache.checkSync('t1', 'alice', 'doc:read'), true)
  t.equal(store.calls.snapshot, 1)
})

test('warm loads tenants on demand; a malformed id is refused before anything loads', async (t) => {
  const { app, store } = await appWithTenant(t)
  await t.rejects(app.policyCache.warm(['t1', '../etc']), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  t.equal(store.calls.snapshot, 0)
  await app.policyCache.warm(['t1', 't2'])
  t.equal(app.policyCache.checkSync('t1', 'alice', 'doc:read'), true)
  t.equal(app.policyCache.checkSync('t2', 'alice', 'doc:read'), false, 'a tenant never written is loaded too')
})

test('checkSync on a cold tenant starts one background load; a failed one is logged, and the next call retries', async (t) => {
  const { app, store, lines, nextLine } = await appWithTenant(t)

  // The store fails: checkSync neither throws nor answers; the failure is logged once per outage.
  store.failing = new Error('connection refused')
  const logged = nextLine()
  t.equal(app.policyCache.checkSync('t1', 'alice', 'doc:read'), undefined)
  await logged
  t.match(lines, [{ level: 40, msg: /loading a tenant in the background \(checkSync\) failed/, tenant: 't1' }])
  t.equal(app.policyCache.checkSync('t2', 'alice', 'doc:read'), undefined)
  t.equal(app.policyCache.checkSync('t3', 'alice', 'doc:read'), undefined)
  // Those loads fail at once (the store throws): one turn of the event loop settles them.
  await new Promise(setImmediate)
  t.equal(lines.length, 1, 'one warning for the outage, not one per tenant')

  // The store is back: the next call starts the load, calls meanwhile share it.
  store.failing = undefined
  const release = store.hold('snapshot')
  const before = store.calls.snapshot
  t.equal(app.policyCache.checkSync('t1', 'alice', 'doc:read'), undefined)
  t.equal(app.policyCache.checkSync('t1', 'bob', 'doc:read'), undefined)
  await new Promise(setImmediate)
  t.equal(store.calls.snapshot - before, 1, 'one load started by checkSync, shared')
  const recovered = nextLine()
  release()
  await app.policyCache.revision('t1') // joins that load
  t.equal(store.calls.snapshot - before, 1, 'and no other')
  await recovered
  t.match(lines[1], { level: 30, msg: /background loads \(checkSync\) succeed again/, failures: 3 })
  t.equal(app.policyCache.checkSync('t1', 'alice', 'doc:read'), true, 'answers once loaded')
  t.equal(app.policyCache.checkSync('not an id', 'alice', 'doc:read'), undefined, 'an id that cannot be a tenant loads nothing')
  t.equal(store.calls.snapshot - before, 1)
})
