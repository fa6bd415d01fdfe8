/**
 * The route guard: `config: { policy }` on host routes (via the plugin's onRoute hook, in the host's
 * scope and its child plugins), `app.policyCache.require(permission)`, the `identify` option.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { test, type Test } from 'tap'
import policyCache, { type IdentifyFunction, type PolicyCacheOptions } from '../lib/plugin.js'
import { InstrumentedStore } from './helpers/instrumented-store.js'

/** Identity from headers: `x-tenant` and `x-user`; none when `x-user` is absent. */
const fromHeaders: IdentifyFunction = (request) => {
  const user = request.headers['x-user']
  if (typeof user !== 'string') return undefined
  return { tenant: String(request.headers['x-tenant'] ?? 't1'), user }
}

async function hostApp (t: Test, options: PolicyCacheOptions = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, { syncIntervalMs: 0, identify: fromHeaders, ...options })
  await app.policyCache.createGroup('t1', 'readers')
  await app.policyCache.addPermission('t1', 'readers', 'documents:read')
  await app.policyCache.assignUser('t1', 'readers', 'alice')
  return app
}

const as = (user: string | undefined, tenant = 't1') => user === undefined ? {} : { 'x-user': user, 'x-tenant': tenant }

test('config.policy guards host routes, including routes in child plugins and HEAD', async (t) => {
  const app = await hostApp(t)
  app.get('/documents', { config: { policy: 'documents:read' } }, async () => ({ documents: [] }))
  app.get('/open', async () => ({ open: true }))
  await app.register(async (child) => {
    child.post('/documents', { config: { policy: 'documents:write' } }, async () => ({ created: true }))
    await child.register(async (grandchild) => {
      grandchild.get('/documents/:id', { config: { policy: 'documents:read' } }, async () => ({ document: 1 }))
    }, { prefix: '/nested' })
  }, { prefix: '/v1' })
  await app.ready()

  const cases: Array<[string, string, string | undefined, number, string?]> = [
    ['GET', '/documents', 'alice', 200],
    ['HEAD', '/documents', 'alice', 200],
    ['GET', '/documents', 'bob', 403, 'FST_POLICY_CACHE_FORBIDDEN'],
    ['HEAD', '/documents', 'bob', 403],
    ['GET', '/documents', undefined, 401, 'FST_POLICY_CACHE_UNIDENTIFIED'],
    ['GET', '/open', undefined, 200],
    ['POST', '/v1/documents', 'alice', 403, 'FST_POLICY_CACHE_FORBIDDEN'],
    ['POST', '/v1/documents', undefined, 401, 'FST_POLICY_CACHE_UNIDENTIFIED'],
    ['GET', '/v1/nested/documents/1', 'alice', 200],
    ['GET', '/v1/nested/documents/1', 'bob', 403, 'FST_POLICY_CACHE_FORBIDDEN']
  ]
  for (const [method, url, user, status, code] of cases) {
    const res = await app.inject({ method: method as 'GET', url, headers: as(user) })
    t.equal(res.statusCode, status, `${method} ${url} as ${user ?? 'nobody'}`)
    if (code !== undefined) t.match(res.json(), { statusCode: status, code }, `${method} ${url} code`)
  }

  // Tenants are isolated: alice of t1 is nobody in t2.
  t.equal((await app.inject({ url: '/documents', headers: as('alice', 't2') })).statusCode, 403)
  // A malformed id from the client holds nothing (never a 400 or 500 from the guard).
  t.equal((await app.inject({ url: '/documents', headers: as('alice', '../etc') })).statusCode, 403)
  t.equal((await app.inject({ url: '/documents', headers: as('al ice') })).statusCode, 403)

  // A grant given later is honoured at once.
  await app.policyCache.addPermission('t1', 'readers', 'documents:*')
  t.equal((await app.inject({ method: 'POST', url: '/v1/documents', headers: as('alice') })).statusCode, 200)
})

test('require(permission) is a preHandler; identify may be async and may use the route\'s own auth', async (t) => {
  const identify: IdentifyFunction = async (request) => {
    await new Promise((resolve) => setImmediate(resolve))
    return (request as FastifyRequest & { account?: { tenant: string, user: string } }).account
  }
  const app = await hostApp(t, { identify })
  const authenticate = async (request: FastifyRequest, reply: FastifyReply) => {
    const user = request.headers['x-user']
    if (typeof user === 'string') Object.assign(request, { account: { tenant: 't1', user } })
    else await reply.code(401).send({ statusCode: 401, code: 'HOST_LOGIN', error: 'Unauthorized', message: 'log in' })
  }
  app.get('/reports', { preHandler: [authenticate, app.policyCache.require('documents:read')] }, async () => ({ ok: true }))
  app.get('/config-after-auth', { preHandler: authenticate, config: { policy: 'documents:read' } }, async () => ({ ok: true }))
  app.get('/no-auth', { preHandler: app.policyCache.require('documents:read') }, async () => ({ ok: true }))

  t.equal((await app.inject({ url: '/reports', headers: as('alice') })).statusCode, 200)
  t.match((await app.inject({ url: '/reports', headers: as('bob') })).json(), { statusCode: 403, code: 'FST_POLICY_CACHE_FORBIDDEN' })
  t.match((await app.inject({ url: '/reports' })).json(), { code: 'HOST_LOGIN' }, 'the host\'s own auth answers first')
  t.equal((await app.inject({ url: '/config-after-auth', headers: as('alice') })).statusCode, 200, 'config.policy runs after the route\'s preHandlers')
  t.match((await app.inject({ url: '/config-after-auth' })).json(), { code: 'HOST_LOGIN' })
  t.match((await app.inject({ url: '/no-auth', headers: as('alice') })).json(), { statusCode: 401, code: 'FST_POLICY_CACHE_UNIDENTIFIED' })
})

test('a loaded tenant is decided synchronously, an unloaded one loads once; store down → 503', async (t) => {
  const store = new InstrumentedStore()
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, { db: store, syncIntervalMs: 0, identify: fromHeaders, catchUpTimeoutMs: 500 })
  app.get('/documents', { config: { policy: 'documents:read' } }, async () => ({ ok: true }))
  await app.ready()
  await app.policyCache.createGroup('t1', 'readers')
  await app.policyCache.addPermission('t1', 'readers', 'documents:read')
  await app.policyCache.assignUser('t1', 'readers', 'alice')

  // Not loaded: the first request loads the tenant once, the next ones take the synchronous path.
  t.equal(app.policyCache.checkSync('t1', 'alice', 'documents:read'), undefined, 'not loaded yet')
  t.equal((await app.inject({ url: '/documents', headers: as('alice') })).statusCode, 200)
  t.equal((await app.inject({ url: '/documents', headers: as('bob') })).statusCode, 403)
  t.equal((await app.inject({ url: '/documents', headers: as('alice') })).statusCode, 200)
  t.equal(store.calls.snapshot, 1, 'loaded once')

  // The hook itself: with a synchronous identify and a loaded tenant, `done` is called before it returns.
  const guard = app.policyCache.require('documents:read')
  for (const [user, expected] of [['alice', undefined], ['bob', 'FST_POLICY_CACHE_FORBIDDEN']] as const) {
    let outcome: string | undefined | null = null
    const request = { headers: { 'x-user': user } } as unknown as FastifyRequest
    guard.call(app, request, {} as FastifyReply, (err?: Error) => { outcome = (err as { code?: string } | undefined)?.code })
    t.equal(outcome, expected, `${user}: decided synchronously`)
  }

  // A tenant that cannot be loaded: the store's 503, not a 403.
  store.failing = new Error('connection refused')
  const down = await app.inject({ url: '/documents', headers: as('alice', 't9') })
  t.equal(down.statusCode, 503)
  t.equal(down.json().code, 'FST_POLICY_CACHE_STORE_UNAVAILABLE')
  t.equal((await app.inject({ url: '/documents', headers: as('alice') })).statusCode, 200, 'a loaded tenant still answers from memory')
})

test('misconfiguration fails at startup with FST_POLICY_CACHE_INVALID_OPTION naming the option', async (t) => {
  // A guarded route without identify.
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, { syncIntervalMs: 0 })
  t.throws(() => app.get('/x', { config: { policy: 'documents:read' } }, async () => ({})),
    { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /"identify": is required: route GET \/x is guarded/ })
  t.throws(() => app.policyCache.require('documents:read'), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /"identify"/ })

  // In a child plugin the error fails ready().
  const nested = Fastify()
  t.teardown(() => nested.close())
  await nested.register(policyCache, { syncIntervalMs: 0 })
  nested.register(async (child) => { child.get('/y', { config: { policy: 'documents:read' } }, async () => ({})) })
  await t.rejects(async () => { await nested.ready() }, { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /GET \/y/ })

  // A permission that is not concrete.
  const wild = await hostApp(t)
  t.throws(() => wild.get('/z', { config: { policy: 'documents:*' } }, async () => ({})),
    { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /config\.policy of GET \/z/ })
  t.throws(() => wild.policyCache.require(''), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /"permission"/ })

  // identify must be a function.
  const bad = Fastify()
  t.teardown(() => bad.close())
  await t.rejects(async () => { await bad.register(policyCache, { identify: 'header' as unknown as IdentifyFunction }).ready() },
    { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /"identify"/ })
})

test('fails closed: a route declaring config.policy that the guard did not see is refused, never served', async (t) => {
  const served: string[] = []
  const handler = async (request: FastifyRequest) => {
    served.push(request.url)
    return { served: true }
  }
  const app = Fastify()
  t.teardown(() => app.close())
  // Declared before the plugin is registered, and right after an un-awaited register (the plugin
  // has not loaded yet): its onRoute hook sees neither.
  app.get('/before', { config: { policy: 'documents:read' } }, handler)
  app.register(policyCache, { syncIntervalMs: 0, identify: fromHeaders })
  app.get('/no-await', { config: { policy: 'documents:read' } }, handler)
  app.get('/open-before', handler)
  await app.after()
  app.get('/after', { config: { policy: 'documents:read' } }, handler)
  await app.ready()
  await app.policyCache.createGroup('t1', 'readers')
  await app.policyCache.addPermission('t1', 'readers', 'documents:read')
  await app.policyCache.assignUser('t1', 'readers', 'alice')

  for (const url of ['/before', '/no-await']) {
    for (const method of ['GET', 'HEAD'] as const) {
      const res = await app.inject({ method, url, headers: as('alice') })
      t.equal(res.statusCode, 500, `${method} ${url}`)
      if (method === 'GET') {
        t.match(res.json(), { code: 'FST_POLICY_CACHE_UNGUARDED_ROUTE', message: new RegExp(`Route GET ${url} declares config\\.policy`) })
      }
    }
  }
  t.same(served, [], 'no unguarded handler ran')

  t.equal((await app.inject({ url: '/open-before' })).statusCode, 200, 'a route without config.policy is not concerned')
  t.equal((await app.inject({ url: '/after', headers: as('alice') })).statusCode, 200, 'a route declared after is guarded')
  t.equal((await app.inject({ url: '/after', headers: as('bob') })).statusCode, 403)
  t.equal((await app.inject({ url: '/missing' })).statusCode, 404, 'a 404 is still a 404')
})
