import type { FastifyReply, FastifyRequest } from 'fastify'
import { test } from 'tap'
import { buildApp, SECRET } from './helpers/app.js'

test('routeHooks protect the policy routes and /servers, not /health or the signed webhook', async (t) => {
  const seen: string[] = []
  const auth = async (request: FastifyRequest, reply: FastifyReply) => {
    seen.push(request.url)
    if (request.headers.authorization !== 'Bearer admin') await reply.code(401).send({ statusCode: 401, code: 'HOST_UNAUTHORIZED', error: 'Unauthorized', message: 'admin token required' })
  }
  const app = await buildApp(t, { routeHooks: { onRequest: auth }, webhookSecret: SECRET })

  const denied = await app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' } })
  t.equal(denied.statusCode, 401)
  t.equal(denied.json().code, 'HOST_UNAUTHORIZED')
  t.equal(await app.policyCache.revision('t1'), 0, 'nothing written')
  t.equal((await app.inject({ method: 'GET', url: '/check-access?tenant=t1&user=a&permission=b' })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: '/tenants/t1' })).statusCode, 401)

  const allowed = await app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' }, headers: { authorization: 'Bearer admin' } })
  t.equal(allowed.statusCode, 200)

  // /servers names tenants (each peer's lag) and peer addresses.
  const servers = await app.inject({ method: 'GET', url: '/servers' })
  t.equal(servers.statusCode, 401, '/servers is behind the hooks')
  t.equal(servers.json().code, 'HOST_UNAUTHORIZED')
  t.equal((await app.inject({ method: 'GET', url: '/servers', headers: { authorization: 'Bearer admin' } })).statusCode, 200)

  seen.length = 0
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  const webhook = await app.inject({ method: 'POST', url: '/webhook/refresh', payload: { type: 'policy.changed', origin: 'x', changes: [] } })
  t.equal(webhook.statusCode, 401, 'the webhook answers its own signature check')
  t.not(webhook.json().code, 'HOST_UNAUTHORIZED')
  t.same(seen, [], 'the host hook never ran for /health or the webhook')
})

test('the register prefix mounts every route; the webhook exists only with a secret', async (t) => {
  const Fastify = (await import('fastify')).default
  const policyCache = (await import('../lib/plugin.js')).default
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, { prefix: '/policy', syncIntervalMs: 0 })
  t.equal((await app.inject({ method: 'GET', url: '/policy/health' })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 404)
  t.equal((await app.inject({ method: 'POST', url: '/policy/create-group', payload: { tenant: 't', group: 'g' } })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/policy/webhook/refresh', payload: {} })).statusCode, 404, 'no secret, no webhook route')
  t.equal(await app.policyCache.check('t', 'u', 'p'), false)
})

test('routes: false registers the decorator only', async (t) => {
  const app = await buildApp(t, { routes: false })
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 404)
  t.match(await app.policyCache.createGroup('t', 'g'), { changed: true })
})

test('an error a host hook throws without a code keeps its status (the error schema does not require a code)', async (t) => {
  const app = await buildApp(t, {
    routeHooks: {
      onRequest: async () => { throw Object.assign(new Error('token required'), { statusCode: 401 }) }
    }
  })
  const denied = await app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' } })
  t.equal(denied.statusCode, 401, 'not a 500 from serializing the error')
  t.equal(denied.json().message, 'token required')
  t.equal(await app.policyCache.revision('t1'), 0, 'nothing written')
})
