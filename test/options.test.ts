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
    ['routes.webhook', { routes: { webhook: true } }]
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
    'startupTimeoutMs', 'preload', 'webhookBodyLimit', 'routes', 'routeHooks', 'identify', 'metrics'
  ]
  const undefinedEverywhere: PolicyCacheOptions = Object.fromEntries(keys.map((key) => [key, undefined]))
  const nested: PolicyCacheOptions = {
    retry: { retries: undefined, minDelayMs: undefined, maxDelayMs: undefined, maxRetryAfterMs: undefined },
    circuitBreaker: { failureThreshold: undefined, cooldownMs: undefined },
    routes: { policy: { prefix: undefined }, ops: { prefix: undefined, health: undefined, servers: undefined }, webhook: undefined },
    routeHooks: { onRequest: undefined, preHandler: undefined },
    metrics: { registry: undefined, path: undefined, prefix: undefined }
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
  t.match(opts, { ackTimeoutMs: 200, syncIntervalMs: 30000, maxTenants: 10000, requestTimeoutMs: 2000, webhookBodyLimit: 65536, tablePrefix: 'policy_' })
  t.same(opts.circuitBreaker, { failureThreshold: 10, cooldownMs: 30000 })
  t.equal(opts.retry.maxRetryAfterMs, 60000)
  // The defaults are DEFAULTS' values, exported for hosts.
  t.match(opts, {
    sqliteFile: DEFAULTS.sqliteFile,
    changelogRetention: DEFAULTS.changelogRetention,
    ackTimeoutMs: DEFAULTS.ackTimeoutMs,
    catchUpTimeoutMs: DEFAULTS.catchUpTimeoutMs,
    startupTimeoutMs: DEFAULTS.startupTimeoutMs,
    preload: []
  })
  t.same(opts.retry, DEFAULTS.retry)
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

test('every numeric option: its minimum and maximum are accepted, one below and one above are refused', async (t) => {
  const MAX = Number.MAX_SAFE_INTEGER
  // [option, its bounds, how it is passed]
  const bounds: Array<[string, number, number, (value: number) => PolicyCacheOptions]> = [
    ['changelogRetention', 1, MAX, (value) => ({ changelogRetention: value })],
    ['ackTimeoutMs', 0, 60000, (value) => ({ ackTimeoutMs: value })],
    ['requestTimeoutMs', 1, 60000, (value) => ({ requestTimeoutMs: value })],
    ['retry.retries', 0, 100, (value) => ({ retry: { retries: value } })],
    ['retry.minDelayMs', 1, MAX, (value) => ({ retry: { minDelayMs: value, maxDelayMs: MAX } })],
    ['retry.maxDelayMs', 250, MAX, (value) => ({ retry: { minDelayMs: 250, maxDelayMs: value } })],
    ['retry.maxRetryAfterMs', 0, 3600000, (value) => ({ retry: { maxRetryAfterMs: value } })],
    ['circuitBreaker.failureThreshold', 1, 1000, (value) => ({ circuitBreaker: { failureThreshold: value } })],
    ['circuitBreaker.cooldownMs', 1, 3600000, (value) => ({ circuitBreaker: { cooldownMs: value } })],
    ['syncIntervalMs', 0, 86400000, (value) => ({ syncIntervalMs: value })],
    ['maxTenants', 1, MAX, (value) => ({ maxTenants: value })],
    ['catchUpTimeoutMs', 1, 60000, (value) => ({ catchUpTimeoutMs: value })],
    ['webhookBodyLimit', 32 * 1024, 16 * 1024 * 1024, (value) => ({ webhookBodyLimit: value })]
  ]
  const read = (options: ReturnType<typeof resolveOptions>, name: string): unknown =>
    name.split('.').reduce<any>((value, key) => value[key], options)
  const code = 'FST_POLICY_CACHE_INVALID_OPTION'
  for (const [name, min, max, given] of bounds) {
    const message = new RegExp(`"${name.replace('.', '\\.')}"`)
    t.equal(read(resolveOptions(given(min)), name), min, `${name}: ${min} accepted`)
    t.equal(read(resolveOptions(given(max)), name), max, `${name}: ${max} accepted`)
    t.throws(() => resolveOptions(given(min - 1)), { code, message }, `${name}: ${min - 1} refused`)
    t.throws(() => resolveOptions(given(max + 1)), { code, message }, `${name}: ${max + 1} refused`)
  }
})

test('an out-of-bounds webhook body limit fails registration, naming the option', async (t) => {
  for (const webhookBodyLimit of [32 * 1024 - 1, 16 * 1024 * 1024 + 1]) {
    const app = Fastify()
    const err = await app.register(policyCache, { webhookBodyLimit }).ready().then(() => null, (e: Error) => e)
    t.match(err, { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /"webhookBodyLimit"/ }, String(webhookBodyLimit))
    await app.close()
  }
})

test('each refusal says what the option must be', async (t) => {
  const hook = async () => {}
  const registry = { registerMetric: () => {}, metrics: async () => '', getSingleMetric: () => undefined, removeSingleMetric: () => {} }
  const cases: Array<[unknown, string, string]> = [
    [null, 'options', 'must be an object'],
    [[], 'options', 'must be an object'],
    [{ retry: 5 }, 'retry', 'must be an object'],
    [{ retry: null }, 'retry', 'must be an object'],
    [{ retry: { frobnicate: 1 } }, 'retry.frobnicate', 'is not an option of "retry" (retries, minDelayMs, maxDelayMs, maxRetryAfterMs)'],
    [{ ackTimeoutMs: 60001 }, 'ackTimeoutMs', 'must be an integer from 0 to 60000'],
    [{ retry: { minDelayMs: 100, maxDelayMs: 99 } }, 'retry.maxDelayMs', 'must be an integer from 100 to 9007199254740991'],
    [{ routeHooks: { preHandler: [hook, 'auth'] } }, 'routeHooks.preHandler', 'must be a function or an array of functions'],
    [{ metrics: 'on' }, 'metrics', 'must be a boolean or { registry, path, prefix }'],
    [{ metrics: null }, 'metrics', 'must be a boolean or { registry, path, prefix }'],
    [{ metrics: { registry: { ...registry, metrics: undefined } } }, 'metrics.registry', 'must be a prom-client Registry'],
    [{ metrics: { registry: null } }, 'metrics.registry', 'must be a prom-client Registry'],
    [{ metrics: { path: 'metrics' } }, 'metrics.path', 'must be a URL path starting with "/"'],
    [{ metrics: { prefix: 'policy-cache' } }, 'metrics.prefix', 'must be a Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)'],
    [{ metrics: { prefix: 7 } }, 'metrics.prefix', 'must be a Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)'],
    [{ routes: 'yes' }, 'routes', 'must be a boolean or { policy, ops, webhook }'],
    [{ routes: null }, 'routes', 'must be a boolean or { policy, ops, webhook }'],
    [{ routes: { policy: 'yes' } }, 'routes.policy', 'must be a boolean or { prefix }'],
    [{ routes: { ops: null } }, 'routes.ops', 'must be a boolean or { prefix, health, servers }'],
    [{ routes: { ops: { prefix: '/ops/' } } }, 'routes.ops.prefix', 'must be a path prefix like "/admin" (no trailing slash)'],
    [{ routes: { policy: { prefix: 7 } } }, 'routes.policy.prefix', 'must be a path prefix like "/admin" (no trailing slash)'],
    [{ routes: { ops: { servers: 'servers' } } }, 'routes.ops.servers', 'must be a URL path starting with "/", or false'],
    [{ routes: { ops: { health: true } } }, 'routes.ops.health', 'must be a URL path starting with "/", or false'],
    [{ routes: { webhook: 1 }, webhookSecret: secret }, 'routes.webhook', 'must be a boolean'],
    [{ routes: { webhook: true } }, 'routes.webhook', 'needs webhookSecret: the receiver accepts only signed notices'],
    [{ preload: 't1' }, 'preload', 'must be an array of tenant ids'],
    [{ preload: ['t1', '../etc'] }, 'preload', '"../etc" is not a tenant id (^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$)'],
    [{ db: { query: () => {} } }, 'db', 'must be a Kysely instance or a PolicyStore'],
    [{ db: null }, 'db', 'must be a Kysely instance or a PolicyStore'],
    [{ sqliteFile: '' }, 'sqliteFile', 'must be a non-empty path'],
    [{ sqliteFile: 7 }, 'sqliteFile', 'must be a non-empty path'],
    [{ tablePrefix: 'drop table;' }, 'tablePrefix', 'must match ^[A-Za-z_][A-Za-z0-9_]{0,40}$'],
    [{ tablePrefix: 7 }, 'tablePrefix', 'must match ^[A-Za-z_][A-Za-z0-9_]{0,40}$'],
    [{ serverId: 'a b' }, 'serverId', 'must match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$'],
    [{ publicUrl: 3000 }, 'publicUrl', 'must be a URL string'],
    [{ webhookSecret: 7 }, 'webhookSecret', 'must be a string or an array of strings'],
    [{ webhookSecret: [secret, 7] }, 'webhookSecret', 'must be a string or an array of strings'],
    [{ peers: ['http://127.0.0.1:3001'] }, 'webhookSecret', 'is required when peers are configured'],
    [{ peers: async () => [] }, 'webhookSecret', 'is required when peers are configured'],
    [{ identify: 'x-user' }, 'identify', 'must be a function (request) => { tenant, user } | undefined']
  ]
  for (const [options, name, message] of cases) {
    t.throws(() => resolveOptions(options as PolicyCacheOptions), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: `Invalid option "${name}": ${message}` }, JSON.stringify(options))
  }
})

test('route paths and prefixes, the metrics prefix: what is accepted and what is not', async (t) => {
  const ops = (value: Record<string, unknown>) => resolveOptions({ routes: { ops: value } }).routes.ops
  for (const prefix of ['', '/a', '/a.b_c~d-e/f']) {
    t.equal(ops({ prefix })?.prefix, prefix, `prefix ${JSON.stringify(prefix)}`)
    t.equal(resolveOptions({ routes: { policy: { prefix } } }).routes.policy?.prefix, prefix, `policy prefix ${JSON.stringify(prefix)}`)
  }
  for (const prefix of ['/', 'a', '/a/', '//a', '/a b', '/a?b', 'x/a']) {
    t.throws(() => ops({ prefix }), { message: /^Invalid option "routes\.ops\.prefix"/ }, `prefix ${JSON.stringify(prefix)}`)
  }
  for (const path of ['/', '/h', '/a.b_c~d-e/f/']) t.equal(ops({ health: path })?.health, path, `path ${JSON.stringify(path)}`)
  for (const path of ['', 'h', 'x/h', '/a b', '/h?x', '/h#x']) {
    t.throws(() => ops({ health: path }), { message: /^Invalid option "routes\.ops\.health"/ }, `path ${JSON.stringify(path)}`)
  }
  t.same(ops({ health: false }), { prefix: '', health: undefined, servers: '/servers' }, 'one ops route dropped')
  t.equal(ops({ health: false, servers: false }), undefined, 'both dropped: no ops routes at all')
  t.same(resolveOptions({ routes: { policy: false, ops: true } }).routes, { policy: undefined, ops: DEFAULTS.routes.ops, webhook: false })

  for (const prefix of ['a', '_', ':', 'aZ09_:', 'app:policy_']) t.equal(resolveOptions({ metrics: { prefix } }).metrics?.prefix, prefix, prefix)
  for (const prefix of ['', '1a', 'a-b', 'a b', 'é']) {
    t.throws(() => resolveOptions({ metrics: { prefix } }), { message: /^Invalid option "metrics\.prefix"/ }, JSON.stringify(prefix))
  }
  for (const path of ['/', '/m', '/a.b_c~d-e/f']) t.equal(resolveOptions({ metrics: { path } }).metrics?.path, path, path)
  for (const path of ['', 'm', 'x/m', '/m?x']) {
    t.throws(() => resolveOptions({ metrics: { path } }), { message: /^Invalid option "metrics\.path"/ }, JSON.stringify(path))
  }
  t.same(resolveOptions({ metrics: true }).metrics, { registry: undefined, path: '/metrics', prefix: 'policy_cache_' })
  t.equal(resolveOptions({ metrics: false }).metrics, undefined)
  t.equal(resolveOptions({}).metrics, undefined)
})
