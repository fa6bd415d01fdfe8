import Fastify from 'fastify'
import { test } from 'tap'
import policyCache, { type PolicyCacheOptions } from '../lib/plugin.js'
import { resolveOptions } from '../lib/options.js'

const secret = 'a-strong-enough-secret-for-tests'

test('bad options fail registration with FST_POLICY_CACHE_INVALID_OPTION naming the option', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['webhookSecret', { webhookSecret: 'short' }],
    ['webhookSecret', { webhookSecret: 'whsec_!!!notbase64!!!' }],
    ['webhookSecret', { webhookSecret: 'whsec_' + Buffer.from('tooshort').toString('base64') }],
    ['webhookSecret', { webhookSecret: [secret, 'x'] }],
    ['webhookSecret', { peers: ['http://127.0.0.1:3001'] }],
    ['peers', { peers: ['not a url'], webhookSecret: secret }],
    ['peers', { peers: ['ftp://127.0.0.1:3001'], webhookSecret: secret }],
    ['peers', { peers: ['http://user:pw@127.0.0.1:3001'], webhookSecret: secret }],
    ['peers', { peers: 'http://127.0.0.1:3001', webhookSecret: secret }],
    ['serverId', { serverId: '../etc' }],
    ['publicUrl', { publicUrl: 'nope' }],
    ['ackTimeoutMs', { ackTimeoutMs: -1 }],
    ['ackTimeoutMs', { ackTimeoutMs: 1.5 }],
    ['syncIntervalMs', { syncIntervalMs: '1000' }],
    ['maxTenants', { maxTenants: 0 }],
    ['requestTimeoutMs', { requestTimeoutMs: 0 }],
    ['retry.retries', { retry: { retries: -1 } }],
    ['retry.maxRetryAfterMs', { retry: { maxRetryAfterMs: -1 } }],
    ['circuitBreaker', { circuitBreaker: null }],
    ['circuitBreaker.failureThreshold', { circuitBreaker: { failureThreshold: 0 } }],
    ['circuitBreaker.cooldownMs', { circuitBreaker: { cooldownMs: 1.5 } }],
    ['tablePrefix', { tablePrefix: 'drop table;' }],
    ['db', { db: { query: () => {} } }],
    ['routes', { routes: 'yes' }],
    ['routeHooks.onRequest', { routeHooks: { onRequest: 'auth' } }]
  ]
  for (const [name, options] of cases) {
    const app = Fastify()
    const err = await app.register(policyCache, options as PolicyCacheOptions).ready().then(() => null, (e: Error) => e)
    t.match(err, { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: new RegExp(`"${name.replace('.', '\\.')}"`) }, `${name}: ${JSON.stringify(options)}`)
    t.notMatch(err?.message ?? '', /short|notbase64|tooshort/, 'never echoes a secret')
    await app.close()
  }
})

test('options are copied, defaulted and frozen; the caller\'s object is untouched', async (t) => {
  const input = { webhookSecret: `  ${secret}  `, peers: ['http://127.0.0.1:3001/'] }
  const copy = structuredClone(input)
  const opts = resolveOptions(input)
  t.same(input, copy)
  t.ok(Object.isFrozen(opts))
  t.same(opts.peers, ['http://127.0.0.1:3001'])
  t.equal(opts.keys[0].toString(), secret, 'surrounding spaces trimmed')
  t.match(opts, { ackTimeoutMs: 200, syncIntervalMs: 30000, maxTenants: 10000, requestTimeoutMs: 2000, webhookBodyLimit: 65536, tablePrefix: 'policy_' })
  t.same(opts.circuitBreaker, { failureThreshold: 10, cooldownMs: 30000 })
  t.equal(opts.retry.maxRetryAfterMs, 60000)
  t.match(opts.serverId, /^srv-[0-9a-f]{8}$/)
  t.not(resolveOptions({}).serverId, opts.serverId, 'generated per instance')
})

test('the decorator is guarded: registering twice fails', async (t) => {
  const app = Fastify()
  app.register(policyCache)
  app.register(policyCache)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_DEC_ALREADY_PRESENT' })
  await app.close()
})
