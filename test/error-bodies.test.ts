/**
 * A database failure answers a coded 503 whose body says what failed in the plugin's own words: the
 * driver's message (it names the database's host and port) is logged, with the error's cause, never
 * sent to the client.
 */
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import { test } from 'tap'
import policyCache from '../lib/plugin.js'
import { InstrumentedStore } from './helpers/instrumented-store.js'

const DRIVER_MESSAGE = 'connect ECONNREFUSED 10.20.30.40:5432'

test('a 503 body carries no driver message; the log does', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _encoding, done) { lines.push(String(chunk)); done() } })
  const store = new InstrumentedStore()
  const app = Fastify({ logger: { level: 'error', stream } })
  t.teardown(() => app.close())
  await app.register(policyCache, { db: store, syncIntervalMs: 0 })
  await app.policyCache.createGroup('cached', 'g')
  await app.policyCache.warm(['cached'])

  store.failing = Object.assign(new Error(DRIVER_MESSAGE), { code: 'ECONNREFUSED' })
  const requests: Array<[string, string, object?]> = [
    ['POST', '/create-group', { tenant: 't1', group: 'g' }],
    ['GET', '/check-access?tenant=t2&user=alice&permission=doc:read'],
    ['GET', '/tenants/t3'],
    ['GET', '/tenants/t3/users/alice'],
    ['GET', '/tenants/t3/changes'],
    ['POST', '/refresh-tenant', { tenant: 'cached' }]
  ]
  for (const [method, url, payload] of requests) {
    const res = await app.inject({ method: method as 'GET', url, payload })
    t.equal(res.statusCode, 503, `${method} ${url}`)
    const body = res.json()
    t.equal(body.code, 'FST_POLICY_CACHE_STORE_UNAVAILABLE')
    t.match(body.message, /^The policy database failed or did not answer: /)
    t.notMatch(res.body, /10\.20\.30\.40|5432|ECONNREFUSED/, `${url}: nothing of the driver's error in the body`)
  }
  const health = await app.inject('/health')
  t.equal(health.statusCode, 503)
  t.notMatch(health.body, /10\.20\.30\.40|ECONNREFUSED/)

  const logged = lines.join('')
  t.match(logged, DRIVER_MESSAGE, 'the driver\'s message is logged')

  const direct = await app.policyCache.createGroup('t1', 'g').then(() => null, (err: unknown) => err)
  t.match(direct, { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE', cause: { message: DRIVER_MESSAGE } }, 'the decorator\'s error carries it as its cause')
})
