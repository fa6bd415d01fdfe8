/**
 * resolveOptions on its own (lib/options.ts): the bounds, the messages and the path rules, without
 * registering the plugin. test/options.test.ts covers registration.
 */
import { test } from 'tap'
import { DEFAULTS } from '../lib/defaults.js'
import { resolveOptions, type PolicyCacheOptions } from '../lib/options.js'

const secret = 'a-strong-enough-secret-for-tests'

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

test('every numeric option: its minimum and maximum are accepted, one below and one above are refused', async (t) => {
  const MAX = Number.MAX_SAFE_INTEGER
  const member = { publicUrl: 'http://127.0.0.1:3001', webhookSecret: secret }
  // [option, its bounds, how it is passed]
  const bounds: Array<[string, number, number, (value: number) => PolicyCacheOptions]> = [
    ['changelogRetention.changes', 1, MAX, (value) => ({ changelogRetention: { changes: value } })],
    ['changelogRetention.days', 0, 36500, (value) => ({ changelogRetention: { changes: 1, days: value } })],
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
    ['writeTimeoutMs', 1, 600000, (value) => ({ writeTimeoutMs: value })],
    ['webhookBodyLimit', 32 * 1024, 16 * 1024 * 1024, (value) => ({ webhookBodyLimit: value })],
    ['policyBodyLimit', 1024, 16 * 1024 * 1024, (value) => ({ policyBodyLimit: value })],
    ['maxBatchChanges', 1, 100000, (value) => ({ maxBatchChanges: value })],
    ['maxBatchChecks', 1, 100000, (value) => ({ maxBatchChecks: value })],
    ['maxImportFacts', 1, 1000000, (value) => ({ maxImportFacts: value })],
    ['peerRefreshMs', 0, 86400000, (value) => ({ peerRefreshMs: value })],
    ['startupTimeoutMs', 1, 600000, (value) => ({ startupTimeoutMs: value })],
    ['membership.heartbeatMs', 10, 3600000, (value) => ({ ...member, membership: { heartbeatMs: value } })],
    ['membership.ttlMs', 10000, 86400000, (value) => ({ ...member, membership: { ttlMs: value } })],
    ['membership.pollMs', 10, 3600000, (value) => ({ ...member, membership: { pollMs: value } })]
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

test('what each check accepts: the shapes a refusal must not catch', async (t) => {
  const hook = async () => {}
  t.same(resolveOptions({ routeHooks: { onRequest: hook, preHandler: [hook, hook] } }).routeHooks, { onRequest: [hook], preHandler: [hook, hook] }, 'a hook, and an array of hooks')
  const registry = { registerMetric: () => {}, metrics: async () => '', getSingleMetric: () => undefined, removeSingleMetric: () => {}, contentType: 'text/plain' }
  t.equal(resolveOptions({ metrics: { registry } }).metrics?.registry, registry, 'a registry with the four methods')
  for (const missing of ['registerMetric', 'metrics', 'getSingleMetric', 'removeSingleMetric']) {
    t.throws(() => resolveOptions({ metrics: { registry: { ...registry, [missing]: undefined } } } as unknown as PolicyCacheOptions),
      { message: /^Invalid option "metrics\.registry"/ }, `a registry without ${missing}`)
  }
  const kysely = { selectFrom () {} }
  t.equal(resolveOptions({ db: kysely as unknown as PolicyCacheOptions['db'] }).db, kysely, 'anything with selectFrom is taken for a Kysely')
  t.throws(() => resolveOptions({ db: { selectFrom: 'users' } as unknown as PolicyCacheOptions['db'] }), { message: /^Invalid option "db"/ })
  t.same(resolveOptions({ routes: { ops: { health: '/h' } } }).routes.ops, { prefix: '', health: '/h', servers: '/servers' }, 'only health renamed')
  t.same(resolveOptions({ routes: { ops: { servers: '/s' } } }).routes.ops, { prefix: '', health: '/health', servers: '/s' }, 'only servers renamed')
  t.same(resolveOptions({ routes: { ops: { servers: false } } }).routes.ops, { prefix: '', health: '/health', servers: undefined }, 'servers dropped, health kept')
})

test('a string check is not fooled by an array whose text would pass', async (t) => {
  // String(['/m']) is '/m': a check that only tests the text would take the array.
  t.throws(() => resolveOptions({ metrics: { path: ['/m'] } } as unknown as PolicyCacheOptions), { message: /^Invalid option "metrics\.path"/ })
  t.throws(() => resolveOptions({ metrics: { prefix: ['app_'] } } as unknown as PolicyCacheOptions), { message: /^Invalid option "metrics\.prefix"/ })
  t.throws(() => resolveOptions({ tablePrefix: ['policy_'] } as unknown as PolicyCacheOptions), { message: /^Invalid option "tablePrefix"/ })
})

test('membership needs a webhook secret, and with one it resolves', async (t) => {
  const publicUrl = 'http://127.0.0.1:3001'
  t.throws(() => resolveOptions({ membership: true, publicUrl }), { message: 'Invalid option "membership": needs webhookSecret: members send each other signed notices' })
  t.same(resolveOptions({ membership: true, publicUrl, webhookSecret: secret }).membership, DEFAULTS.membership)
  t.throws(() => resolveOptions({ membership: true, webhookSecret: secret }), { message: /^Invalid option "membership": needs publicUrl/ })
})

test('changelogRetention: a count, or a count and an age', async (t) => {
  const code = 'FST_POLICY_CACHE_INVALID_OPTION'
  t.same(resolveOptions({}).changelogRetention, { changes: 10000, days: 0 }, 'the default keeps the newest 10000, none by age')
  t.same(resolveOptions({ changelogRetention: 50 }).changelogRetention, { changes: 50, days: 0 }, 'a number is a count only')
  t.same(resolveOptions({ changelogRetention: { changes: 50 } }).changelogRetention, { changes: 50, days: 0 }, 'days defaults to 0')
  t.same(resolveOptions({ changelogRetention: { changes: 50, days: 90 } }).changelogRetention, { changes: 50, days: 90 })
  for (const value of [0, -1, 1.5, Number.MAX_SAFE_INTEGER + 1]) {
    t.throws(() => resolveOptions({ changelogRetention: value }), { code, message: 'Invalid option "changelogRetention": must be a positive integer' }, JSON.stringify(value))
  }
  for (const value of ['10', null, [10], true]) {
    t.throws(() => resolveOptions({ changelogRetention: value as never }), { code, message: 'Invalid option "changelogRetention": must be a positive integer or { changes, days }' }, JSON.stringify(value))
  }
  t.throws(() => resolveOptions({ changelogRetention: { days: 3 } as never }), { code, message: 'Invalid option "changelogRetention.changes": must be a positive integer' }, 'changes is required')
  for (const days of [1.5, '1', -1, 36501]) {
    t.throws(() => resolveOptions({ changelogRetention: { changes: 5, days: days as never } }), { code, message: 'Invalid option "changelogRetention.days": must be an integer from 0 to 36500' }, JSON.stringify(days))
  }
  t.throws(() => resolveOptions({ changelogRetention: { changes: 5, hours: 1 } as never }), { code, message: 'Invalid option "changelogRetention": takes changes and days only, not "hours"' })
})

test('board, membership and transport: each refusal names its option and says what it must be', async (t) => {
  const code = 'FST_POLICY_CACHE_INVALID_OPTION'
  const nats = { type: 'nats', servers: 'nats://127.0.0.1:4222' }
  const redis = { type: 'redis', connection: 'redis://127.0.0.1:6379' }
  const pgNotify = { type: 'pg-notify', connection: 'postgres://127.0.0.1/test' }
  const cases: Array<[unknown, string, string]> = [
    [{ board: 'yes' }, 'board', 'must be a boolean or { path, maxStreams }'],
    [{ board: null }, 'board', 'must be a boolean or { path, maxStreams }'],
    [{ board: { frob: 1 } }, 'board.frob', 'is not an option of "board" (path, maxStreams)'],
    [{ board: { path: '' } }, 'board.path', 'must be a path like "/policy-board", not empty'],
    [{ board: { path: 'board' } }, 'board.path', 'must be a path prefix like "/admin" (no trailing slash)'],
    [{ membership: 'yes' }, 'membership', 'must be a boolean or { heartbeatMs, ttlMs, pollMs }'],
    [{ membership: null }, 'membership', 'must be a boolean or { heartbeatMs, ttlMs, pollMs }'],
    [{ transport: null }, 'transport', 'must be "webhook" or an object { type: "webhook" | "pg-notify" | "nats" | "redis", … }'],
    [{ transport: ['webhook'] }, 'transport', 'must be "webhook" or an object { type: "webhook" | "pg-notify" | "nats" | "redis", … }'],
    [{ transport: { type: 'pg-notify' } }, 'transport.connection', 'is required: a PostgreSQL connection string or a pg client configuration object, for the listening connection'],
    [{ transport: { type: 'pg-notify', connection: ['postgres://127.0.0.1/test'] } }, 'transport.connection', 'is required: a PostgreSQL connection string or a pg client configuration object, for the listening connection'],
    [{ transport: { type: 'pg-notify', connection: ' ' } }, 'transport.connection', 'must not be empty'],
    [{ transport: { type: 'pg-notify', connection: null } }, 'transport.connection', 'is required: a PostgreSQL connection string or a pg client configuration object, for the listening connection'],
    // An array whose text is a valid channel name: the type is checked before the pattern.
    [{ transport: { ...pgNotify, channel: ['app_policy'] } }, 'transport.channel', 'must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$'],
    [{ transport: { ...pgNotify, channel: 'bad-channel' } }, 'transport.channel', 'must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$'],
    [{ transport: { ...pgNotify, channel: 7 } }, 'transport.channel', 'must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$'],
    [{ transport: { ...pgNotify, reconnect: { minDelayMs: 0 } } }, 'transport.reconnect.minDelayMs', 'must be an integer from 1 to 600000'],
    [{ transport: { type: 'nats' } }, 'transport.servers', 'is required: a NATS server URL (nats://host:port) or a non-empty list of them'],
    [{ transport: { type: 'nats', servers: [] } }, 'transport.servers', 'is required: a NATS server URL (nats://host:port) or a non-empty list of them'],
    [{ transport: { type: 'nats', servers: ['nats://127.0.0.1:4222', ' '] } }, 'transport.servers', 'is required: a NATS server URL (nats://host:port) or a non-empty list of them'],
    [{ transport: { ...nats, subject: 'policy.*' } }, 'transport.subject', 'must match ^(?=.{1,200}$)[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$ (no wildcards)'],
    [{ transport: { ...nats, subject: 7 } }, 'transport.subject', 'must match ^(?=.{1,200}$)[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$ (no wildcards)'],
    [{ transport: { ...nats, connection: [] } }, 'transport.connection', 'must be an object of nats.js connection options'],
    [{ transport: { ...nats, connection: null } }, 'transport.connection', 'must be an object of nats.js connection options'],
    [{ transport: { type: 'redis' } }, 'transport.connection', 'is required: a Redis URL (redis://host:port) or an ioredis options object'],
    [{ transport: { type: 'redis', connection: ['redis://127.0.0.1:6379'] } }, 'transport.connection', 'is required: a Redis URL (redis://host:port) or an ioredis options object'],
    [{ transport: { type: 'redis', connection: ' ' } }, 'transport.connection', 'must not be empty'],
    [{ transport: { type: 'redis', connection: null } }, 'transport.connection', 'is required: a Redis URL (redis://host:port) or an ioredis options object'],
    [{ transport: { ...redis, channel: 'policy changes' } }, 'transport.channel', 'must match ^(?=.{1,200}$)[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$'],
    [{ transport: { ...redis, channel: 7 } }, 'transport.channel', 'must match ^(?=.{1,200}$)[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$']
  ]
  for (const [options, name, message] of cases) {
    t.throws(() => resolveOptions({ webhookSecret: secret, ...options as PolicyCacheOptions }), { code, message: `Invalid option "${name}": ${message}` }, JSON.stringify(options))
  }
})

test('board, watch and transport: every bound, and what a valid setting resolves to', async (t) => {
  const MAX_BYTES = 8 * 1024 * 1024
  // A PostgreSQL store as pg-notify sees one: a PolicyStore whose notifies is true.
  const methods = ['migrate', 'databaseId', 'write', 'snapshot', 'changesSince', 'changes', 'revisions', 'tenants', 'importTenant', 'deleteTenant']
  const store = Object.fromEntries(methods.map((method) => [method, () => {}]))
  t.throws(() => resolveOptions({ db: { ...store, tenants: undefined } as never }), { message: `Invalid option "db": must be a Kysely instance or a PolicyStore (methods ${methods.join(', ')})` }, 'a store missing one method is refused, naming them all')
  const pgNotify = (more: object): PolicyCacheOptions => ({ webhookSecret: secret, db: { ...store, notifies: true } as never, transport: { type: 'pg-notify', connection: 'postgres://127.0.0.1/test', ...more } })
  const nats = (more: object): PolicyCacheOptions => ({ webhookSecret: secret, transport: { type: 'nats', servers: 'nats://127.0.0.1:4222', ...more } })
  const redis = (more: object): PolicyCacheOptions => ({ webhookSecret: secret, transport: { type: 'redis', connection: 'redis://127.0.0.1:6379', ...more } })
  const bounds: Array<[string, number, number, (value: number) => PolicyCacheOptions]> = [
    ['board.maxStreams', 1, 1000, (value) => ({ board: { maxStreams: value } })],
    ['watch.maxWatchers', 1, 100000, (value) => ({ watch: { maxWatchers: value } })],
    ['watch.maxBuffered', 1, 100000, (value) => ({ watch: { maxBuffered: value } })],
    ['watch.heartbeatMs', 10, 3600000, (value) => ({ watch: { heartbeatMs: value } })],
    ['transport.reconnect.minDelayMs', 1, 600000, (value) => pgNotify({ reconnect: { minDelayMs: value, maxDelayMs: 3600000 } })],
    ['transport.reconnect.maxDelayMs', 500, 3600000, (value) => pgNotify({ reconnect: { minDelayMs: 500, maxDelayMs: value } })],
    ['transport.probeIntervalMs', 10, 3600000, (value) => pgNotify({ probeIntervalMs: value })],
    ['transport.probeTimeoutMs', 10, 600000, (value) => pgNotify({ probeTimeoutMs: value })],
    ['transport.maxPayloadBytes', 512, 7900, (value) => pgNotify({ maxPayloadBytes: value })],
    ['transport.probeIntervalMs', 10, 3600000, (value) => nats({ probeIntervalMs: value })],
    ['transport.probeTimeoutMs', 10, 600000, (value) => nats({ probeTimeoutMs: value })],
    ['transport.maxPayloadBytes', 512, MAX_BYTES, (value) => nats({ maxPayloadBytes: value })],
    ['transport.probeIntervalMs', 10, 3600000, (value) => redis({ probeIntervalMs: value })],
    ['transport.probeTimeoutMs', 10, 600000, (value) => redis({ probeTimeoutMs: value })],
    ['transport.maxPayloadBytes', 512, MAX_BYTES, (value) => redis({ maxPayloadBytes: value })]
  ]
  const read = (options: ReturnType<typeof resolveOptions>, name: string): unknown =>
    name.split('.').reduce<any>((value, key) => value[key], options)
  for (const [name, min, max, given] of bounds) {
    const message = `Invalid option "${name}": must be an integer from ${min} to ${max}`
    t.equal(read(resolveOptions(given(min)), name), min, `${name}: ${min} accepted`)
    t.equal(read(resolveOptions(given(max)), name), max, `${name}: ${max} accepted`)
    t.throws(() => resolveOptions(given(min - 1)), { message }, `${name}: ${min - 1} refused`)
    t.throws(() => resolveOptions(given(max + 1)), { message }, `${name}: ${max + 1} refused`)
  }

  t.equal(resolveOptions({}).board, undefined, 'no board by default')
  t.equal(resolveOptions({ board: false }).board, undefined, 'board: false is no board')
  t.same(resolveOptions({ board: true }).board, { path: DEFAULTS.board.path, maxStreams: DEFAULTS.board.maxStreams, intervalMs: DEFAULTS.board.intervalMs }, 'board: true takes the defaults')
  t.same(resolveOptions({ board: { path: '/ops/board', maxStreams: 3 } }).board, { path: '/ops/board', maxStreams: 3, intervalMs: DEFAULTS.board.intervalMs })
  t.same(resolveOptions({ preload: ['t1', 't2', 't1'] }).preload, ['t1', 't2'], 'preload without repeats, in order')
  t.same(resolveOptions(nats({ servers: ['nats://a:4222', 'nats://b:4222'], subject: 'app.policy', connection: { name: 'x' } })).transport,
    { type: 'nats', servers: ['nats://a:4222', 'nats://b:4222'], subject: 'app.policy', probeIntervalMs: DEFAULTS.nats.probeIntervalMs, probeTimeoutMs: DEFAULTS.nats.probeTimeoutMs, maxPayloadBytes: DEFAULTS.nats.maxPayloadBytes, connection: { name: 'x' } })
  t.same(resolveOptions(redis({ connection: { host: '127.0.0.1' }, channel: 'app.policy' })).transport,
    { type: 'redis', connection: { host: '127.0.0.1' }, channel: 'app.policy', probeIntervalMs: DEFAULTS.redis.probeIntervalMs, probeTimeoutMs: DEFAULTS.redis.probeTimeoutMs, maxPayloadBytes: DEFAULTS.redis.maxPayloadBytes })
  t.same(resolveOptions(pgNotify({ channel: 'app_policy' })).transport,
    { type: 'pg-notify', connection: 'postgres://127.0.0.1/test', channel: 'app_policy', probeIntervalMs: DEFAULTS.pgNotify.probeIntervalMs, probeTimeoutMs: DEFAULTS.pgNotify.probeTimeoutMs, reconnect: DEFAULTS.pgNotify.reconnect, maxPayloadBytes: DEFAULTS.pgNotify.maxPayloadBytes })
})
