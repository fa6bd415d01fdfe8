/**
 * The guard's hooks on their own (lib/guard.ts), with an engine that records what it is asked: no
 * Fastify instance, no plugin. test/guard.test.ts runs them in a host app.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerHookHandler, RouteOptions } from 'fastify'
import { test } from 'tap'
import { createGuard, guardRoutes, refuseUnguarded, type GuardEngine, type Identity } from '../lib/guard.js'

/** An engine answering from `loaded` synchronously and from `loadable` after a load; it records what it loads. */
function fakeEngine (loaded: Record<string, Record<string, string[]>>, loadable: Record<string, Record<string, string[]>> = {}) {
  const asked: string[] = []
  const engine: GuardEngine = {
    checkSync: (tenant, user, permission) => loaded[tenant] === undefined ? undefined : (loaded[tenant][user] ?? []).includes(permission),
    check: async (tenant, user, permission) => {
      asked.push(`${tenant}/${user}`)
      if (loadable[tenant] === undefined) throw Object.assign(new Error('store down'), { statusCode: 503 })
      return (loadable[tenant][user] ?? []).includes(permission)
    }
  }
  return { engine, asked }
}

/** Runs a preHandler to its `done` and returns the error code it was given ('ok' for none). */
function outcome (hook: preHandlerHookHandler, request: unknown = {}): Promise<string> {
  return new Promise((resolve) => {
    hook.call({} as FastifyInstance, request as FastifyRequest, {} as FastifyReply, (err?: Error) => {
      resolve(err === undefined ? 'ok' : String((err as { code?: string }).code ?? err.message))
    })
  })
}

test('createGuard: what identify returns decides 401, 403 or through', async (t) => {
  const { engine, asked } = fakeEngine({ t1: { alice: ['doc:read'] } }, { t2: { carol: ['doc:read'] } })
  const cases: Array<[string, unknown, string]> = [
    ['allowed', { tenant: 't1', user: 'alice' }, 'ok'],
    ['not allowed', { tenant: 't1', user: 'bob' }, 'FST_POLICY_CACHE_FORBIDDEN'],
    ['undefined', undefined, 'FST_POLICY_CACHE_UNIDENTIFIED'],
    ['null', null, 'FST_POLICY_CACHE_UNIDENTIFIED'],
    ['a string', 'alice', 'FST_POLICY_CACHE_UNIDENTIFIED'],
    ['no tenant', { user: 'alice' }, 'FST_POLICY_CACHE_UNIDENTIFIED'],
    ['a numeric user', { tenant: 't1', user: 7 }, 'FST_POLICY_CACHE_UNIDENTIFIED'],
    ['a numeric tenant', { tenant: 1, user: 'alice' }, 'FST_POLICY_CACHE_UNIDENTIFIED'],
    ['unloaded, loads and allows', { tenant: 't2', user: 'carol' }, 'ok'],
    ['unloaded, loads and refuses', { tenant: 't2', user: 'dave' }, 'FST_POLICY_CACHE_FORBIDDEN'],
    ['unloaded, cannot load', { tenant: 't3', user: 'carol' }, 'store down'],
    ['a malformed tenant', { tenant: '../t', user: 'carol' }, 'FST_POLICY_CACHE_FORBIDDEN'],
    ['a malformed user of an unloaded tenant', { tenant: 't2', user: 'car ol' }, 'FST_POLICY_CACHE_FORBIDDEN']
  ]
  for (const [name, identity, expected] of cases) {
    t.equal(await outcome(createGuard(engine, () => identity as Identity, 'doc:read')), expected, `${name}, sync identify`)
    t.equal(await outcome(createGuard(engine, async () => identity as Identity, 'doc:read')), expected, `${name}, async identify`)
  }
  t.same(asked.filter((who) => who.includes('../') || who.includes(' ')), [], 'a malformed id never reaches the engine')
})

test('createGuard: an identify that throws or rejects hands its error on as it is', async (t) => {
  const { engine } = fakeEngine({})
  const err = Object.assign(new Error('bad token'), { code: 'HOST_BAD_TOKEN' })
  t.equal(await outcome(createGuard(engine, () => { throw err }, 'doc:read')), 'HOST_BAD_TOKEN', 'thrown')
  t.equal(await outcome(createGuard(engine, async () => { throw err }, 'doc:read')), 'HOST_BAD_TOKEN', 'rejected')
  t.equal(await outcome(createGuard(engine, () => ({ then: 'not a function' }) as unknown as Identity, 'doc:read')), 'FST_POLICY_CACHE_UNIDENTIFIED', 'a `then` that is not a function is no promise')
})

test('createGuard refuses at once what can never be checked, naming the option', async (t) => {
  const { engine } = fakeEngine({})
  t.throws(() => createGuard(engine, undefined, 'doc:read'), { message: 'Invalid option "identify": is required to guard routes (permission "doc:read")' })
  for (const permission of ['doc:*', '', 7]) {
    t.throws(() => createGuard(engine, () => undefined, permission as string), {
      code: 'FST_POLICY_CACHE_INVALID_OPTION',
      message: `Invalid option "permission": ${JSON.stringify(permission)} is not a concrete permission (segment(:segment)*, no "*")`
    })
  }
  t.throws(() => createGuard(engine, () => undefined, 'doc:*', 'config.policy of GET /x'), { message: /^Invalid option "config\.policy of GET \/x": / })
})

test('guardRoutes appends the guard after the route\'s own preHandlers and marks the route', async (t) => {
  const { engine } = fakeEngine({ t1: { alice: ['doc:read'] } })
  const onRoute = guardRoutes(engine, () => ({ tenant: 't1', user: 'alice' }))
  const own: preHandlerHookHandler = (_request, _reply, done) => done()
  const other: preHandlerHookHandler = (_request, _reply, done) => done()
  type HookRoute = Parameters<typeof onRoute>[0]
  const route = (extra: Partial<RouteOptions>) => ({ method: 'GET', url: '/x', path: '/x', routePath: '/x', prefix: '', handler: async () => ({}), ...extra }) as HookRoute

  const open = route({ config: { other: 1 } as RouteOptions['config'] })
  onRoute.call({} as FastifyInstance, open)
  t.equal(open.preHandler, undefined, 'a route without config.policy is left alone')
  t.same(open.config, { other: 1 })

  for (const [name, preHandler, before] of [
    ['none', undefined, []],
    ['one', own, [own]],
    ['several', [own, other], [own, other]]
  ] as const) {
    const guarded = route({ preHandler: preHandler as RouteOptions['preHandler'], config: { policy: 'doc:read', other: 1 } as RouteOptions['config'] })
    onRoute.call({} as FastifyInstance, guarded)
    const hooks = guarded.preHandler as preHandlerHookHandler[]
    t.same(hooks.slice(0, -1), before, `${name}: the route's own first`)
    t.equal(hooks.length, before.length + 1, `${name}: then the guard`)
    t.equal(await outcome(hooks[hooks.length - 1]), 'ok', `${name}: the last is the guard`)
    t.match(guarded.config, { policy: 'doc:read', other: 1 }, `${name}: the config kept`)
    t.equal(await outcome(refuseUnguarded(), { routeOptions: { config: guarded.config, method: 'GET', url: '/x' } }), 'ok', `${name}: marked as guarded`)
  }

  const unguarded = { routeOptions: { config: { policy: 'doc:read' }, method: 'GET', url: '/x' } }
  t.equal(await outcome(refuseUnguarded(), unguarded), 'FST_POLICY_CACHE_UNGUARDED_ROUTE')
  t.equal(await outcome(refuseUnguarded(), { routeOptions: { config: {}, method: 'GET', url: '/x' } }), 'ok', 'no policy declared')
  t.equal(await outcome(refuseUnguarded(), { routeOptions: { method: 'GET', url: '/x' } }), 'ok', 'no route config (a 404)')

  const noIdentify = guardRoutes(engine, undefined)
  t.throws(() => noIdentify.call({} as FastifyInstance, route({ method: ['GET', 'HEAD'], config: { policy: 'doc:read' } as RouteOptions['config'] })), {
    code: 'FST_POLICY_CACHE_INVALID_OPTION',
    message: 'Invalid option "identify": is required: route GET,HEAD /x is guarded by config.policy "doc:read"'
  })
})
