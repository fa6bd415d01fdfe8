import Fastify from 'fastify'
import { test } from 'tap'
import policyCache, { DEFAULTS, type PolicyCacheOptions } from '../lib/plugin.js'
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
    ['routeHooks.onRequest', { routeHooks: { onRequest: 'auth' } }],
    ['retry', { retry: 5 }],
    ['retry', { retry: [] }],
    ['circuitBreaker', { circuitBreaker: 3 }],
    ['routeHooks', { routeHooks: () => {} }],
    ['metrics', { metrics: 'on' }],
    ['publicUrl', { publicUrl: 3000 }],
    // null is a value, not an absent option: never replaced by the default.
    ['db', { db: null }],
    ['sqliteFile', { sqliteFile: null }],
    ['tablePrefix', { tablePrefix: null }],
    ['serverId', { serverId: null }],
    ['peers', { peers: null }],
    ['metrics.path', { metrics: { path: null } }],
    ['startupTimeoutMs', { startupTimeoutMs: 0 }],
    ['preload', { preload: 't1' }],
    ['preload', { preload: ['t1', '../etc'] }],
    ['routes.policy', { routes: { policy: 'yes' } }],
    ['routes.policy.prefix', { routes: { policy: { prefix: 'admin' } } }],
    ['routes.policy.prefix', { routes: { policy: { prefix: '/admin/' } } }],
    ['routes.ops.health', { routes: { ops: { health: 'healthz' } } }],
    ['routes.ops.servers', { routes: { ops: { servers: true } } }],
    ['routes.webhook', { routes: { webhook: 'yes' }, webhookSecret: secret }],
    ['routes.webhook', { routes: { webhook: true } }],
    ['watch', { watch: 100 }],
    ['watch', { watch: null }],
    ['watch.maxWatchers', { watch: { maxWatchers: 0 } }],
    ['watch.maxWatchers', { watch: { maxWatchers: 100001 } }],
    ['watch.maxBuffered', { watch: { maxBuffered: 0 } }],
    ['watch.maxBuffered', { watch: { maxBuffered: 1.5 } }],
    ['watch.heartbeatMs', { watch: { heartbeatMs: 9 } }],
    ['watch.heartbeatMs', { watch: { heartbeatMs: 3600001 } }]
  ]
  for (const [name, options] of cases) {
    const app = Fastify()
    const err = await app.register(policyCache, options as PolicyCacheOptions).ready().then(() => null, (e: Error) => e)
    t.match(err, { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: new RegExp(`"${name.replace('.', '\\.')}"`) }, `${name}: ${JSON.stringify(options)}`)
    t.notMatch(err?.message ?? '', /short|notbase64|tooshort/, 'never echoes a secret')
    await app.close()
  }
})

test('an unknown option fails registration naming it and the option it most likely means', async (t) => {
  const cases: Array<[object, string, string | undefined]> = [
    [{ webhookSecrets: secret }, 'webhookSecrets', 'webhookSecret'],
    [{ sqlitefile: '/tmp/policy.db' }, 'sqlitefile', 'sqliteFile'],
    [{ peer: ['http://127.0.0.1:3001'] }, 'peer', 'peers'],
    [{ retry: { retires: 3 } }, 'retry.retires', 'retry.retries'],
    [{ circuitBreaker: { cooldown: 10 } }, 'circuitBreaker.cooldown', 'circuitBreaker.cooldownMs'],
    [{ routes: { polcy: false } }, 'routes.polcy', 'routes.policy'],
    [{ routes: { ops: { healthz: '/h' } } }, 'routes.ops.healthz', 'routes.ops.health'],
    [{ metrics: { pth: '/m' } }, 'metrics.pth', 'metrics.path'],
    [{ watch: { maxWatcher: 5 } }, 'watch.maxWatcher', 'watch.maxWatchers'],
    [{ routeHooks: { onrequest: async () => {} } }, 'routeHooks.onrequest', 'routeHooks.onRequest'],
    [{ frobnicate: true }, 'frobnicate', undefined],
    // The longer the key, the more typos are forgiven: a third of its length, at least two.
    [{ webhookBodyLimitBytes: 65536 }, 'webhookBodyLimitBytes', 'webhookBodyLimit'],
    [{ dbxyz: {} }, 'dbxyz', undefined]
  ]
  for (const [options, name, meant] of cases) {
    const app = Fastify()
    const err = await app.register(policyCache, options as PolicyCacheOptions).ready().then(() => null, (e: Error) => e)
    t.match(err, { code: 'FST_POLICY_CACHE_INVALID_OPTION' }, name)
    t.equal(err?.message, meant === undefined
      ? `Invalid option "${name}": is not an option`
      : `Invalid option "${name}": is not an option; did you mean "${meant}"?`)
    await app.close()
  }
})

test('Fastify\'s register options are accepted next to the plugin\'s', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, { syncIntervalMs: 0, prefix: '/pc', logLevel: 'warn', logSerializers: {} })
  t.equal((await app.inject({ url: '/pc/health' })).statusCode, 200)
})

test('every option accepts undefined, meaning its default', async (t) => {
  const keys: Array<keyof PolicyCacheOptions> = [
    'db', 'sqliteFile', 'tablePrefix', 'changelogRetention', 'peers', 'webhookSecret', 'serverId', 'publicUrl',
    'ackTimeoutMs', 'requestTimeoutMs', 'retry', 'circuitBreaker', 'syncIntervalMs', 'maxTenants', 'catchUpTimeoutMs',
    'writeTimeoutMs', 'startupTimeoutMs', 'preload', 'webhookBodyLimit', 'policyBodyLimit', 'maxBatchChanges', 'maxBatchChecks', 'maxImportFacts', 'watch', 'routes', 'routeHooks', 'identify', 'metrics',
    'membership', 'peerRefreshMs'
  ]
  const undefinedEverywhere: PolicyCacheOptions = Object.fromEntries(keys.map((key) => [key, undefined]))
  const nested: PolicyCacheOptions = {
    retry: { retries: undefined, minDelayMs: undefined, maxDelayMs: undefined, maxRetryAfterMs: undefined },
    circuitBreaker: { failureThreshold: undefined, cooldownMs: undefined },
    routes: { policy: { prefix: undefined }, ops: { prefix: undefined, health: undefined, servers: undefined }, webhook: undefined },
    routeHooks: { onRequest: undefined, preHandler: undefined },
    metrics: { registry: undefined, path: undefined, prefix: undefined },
    watch: { maxWatchers: undefined, maxBuffered: undefined, heartbeatMs: undefined }
  }
  const { serverId: _a, ...expected } = resolveOptions({ metrics: true })
  const { serverId: _b, ...fromUndefined } = resolveOptions({ ...undefinedEverywhere, metrics: true })
  const { serverId: _c, ...fromNested } = resolveOptions(nested)
  t.same(fromUndefined, expected)
  t.same(fromNested, expected)
  t.equal(Object.keys(undefinedEverywhere).length, keys.length)

  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, { ...undefinedEverywhere, syncIntervalMs: 0 })
  t.equal((await app.inject({ url: '/health' })).statusCode, 200)
})

test('options are copied, defaulted and frozen; the caller\'s object is untouched', async (t) => {
  const input = { webhookSecret: `  ${secret}  `, peers: ['http://127.0.0.1:3001/'] }
  const copy = structuredClone(input)
  const opts = resolveOptions(input)
  t.same(input, copy)
  t.ok(Object.isFrozen(opts))
  t.same(opts.peers, ['http://127.0.0.1:3001'])
  t.equal(opts.keys[0].toString(), secret, 'surrounding spaces trimmed')
  t.match(opts, { ackTimeoutMs: 200, syncIntervalMs: 30000, maxTenants: 10000, requestTimeoutMs: 2000, webhookBodyLimit: 65536, policyBodyLimit: 4096, maxBatchChanges: 1000, tablePrefix: 'policy_' })
  t.same(opts.circuitBreaker, { failureThreshold: 10, cooldownMs: 30000 })
  t.equal(opts.retry.maxRetryAfterMs, 60000)
  // The defaults are DEFAULTS' values, exported for hosts.
  t.match(opts, {
    sqliteFile: DEFAULTS.sqliteFile,
    changelogRetention: DEFAULTS.changelogRetention,
    ackTimeoutMs: DEFAULTS.ackTimeoutMs,
    catchUpTimeoutMs: DEFAULTS.catchUpTimeoutMs,
    writeTimeoutMs: 10000,
    startupTimeoutMs: DEFAULTS.startupTimeoutMs,
    preload: []
  })
  t.same(opts.retry, DEFAULTS.retry)
  t.same(opts.watch, { maxWatchers: 100, maxBuffered: 100, heartbeatMs: 15000 })
  t.same(resolveOptions({ watch: { maxWatchers: 100000, maxBuffered: 1, heartbeatMs: 10 } }).watch, { maxWatchers: 100000, maxBuffered: 1, heartbeatMs: 10 }, 'the bounds themselves')
  t.same(opts.routes, { policy: DEFAULTS.routes.policy, ops: DEFAULTS.routes.ops, webhook: true }, 'a secret mounts the receiver')
  t.same(resolveOptions({ routes: false, webhookSecret: secret }).routes, { policy: undefined, ops: undefined, webhook: true }, 'even with routes: false')
  t.same(resolveOptions({ routes: false }).routes, { policy: undefined, ops: undefined, webhook: false }, 'not without a secret')
  t.ok(Object.isFrozen(DEFAULTS) && Object.isFrozen(DEFAULTS.retry) && Object.isFrozen(DEFAULTS.routes.ops))
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

test('an out-of-bounds webhook body limit fails registration, naming the option', async (t) => {
  for (const webhookBodyLimit of [32 * 1024 - 1, 16 * 1024 * 1024 + 1]) {
    const app = Fastify()
    const err = await app.register(policyCache, { webhookBodyLimit }).ready().then(() => null, (e: Error) => e)
    t.match(err, { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /"webhookBodyLimit"/ }, String(webhookBodyLimit))
    await app.close()
  }
})
