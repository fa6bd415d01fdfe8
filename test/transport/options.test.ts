/**
 * The `transport` option: 'webhook' by default; `{ type: 'pg-notify', … }` resolved with its
 * defaults, and refused — with FST_POLICY_CACHE_INVALID_OPTION naming the option — on a store that
 * is not PostgreSQL (registration fails before anything opens), without a secret, with peers or
 * membership, or with a bad setting.
 */
import Fastify from 'fastify'
import { Kysely, MysqlDialect, PostgresDialect } from 'kysely'
import { test } from 'tap'
import { DEFAULTS } from '../../lib/defaults.js'
import { resolveOptions, type PolicyCacheOptions } from '../../lib/options.js'
import policyCache from '../../lib/plugin.js'
import { createSqliteDb } from '../../lib/store/index.js'
import { SECRET } from '../helpers/app.js'

// Dialects whose pools are never used: resolving options connects nothing.
const postgres = new Kysely<any>({ dialect: new PostgresDialect({ pool: {} as never }) })
const mysql = new Kysely<any>({ dialect: new MysqlDialect({ pool: {} as never }) })
const pgNotify = { type: 'pg-notify', connection: 'postgres://127.0.0.1:5432/test' } as const

test('webhook is the default; pg-notify resolves with its defaults and a channel from the table prefix', async (t) => {
  t.same(resolveOptions({}).transport, { type: 'webhook' })
  t.equal(DEFAULTS.transport, 'webhook')
  t.same(resolveOptions({ transport: 'webhook' }).transport, { type: 'webhook' })
  t.same(resolveOptions({ transport: { type: 'webhook' } }).transport, { type: 'webhook' })
  const resolved = resolveOptions({ db: postgres, webhookSecret: SECRET, tablePrefix: 'app_', transport: pgNotify }).transport
  t.same(resolved, {
    type: 'pg-notify',
    connection: pgNotify.connection,
    channel: 'app_notify',
    probeIntervalMs: 5000,
    probeTimeoutMs: 2000,
    reconnect: { minDelayMs: 100, maxDelayMs: 5000 },
    maxPayloadBytes: 7900
  })
  t.ok(Object.isFrozen(resolved))
  const custom = resolveOptions({
    db: postgres,
    webhookSecret: SECRET,
    transport: { ...pgNotify, connection: { host: '127.0.0.1' }, channel: 'Custom_Channel', reconnect: { minDelayMs: 7000 }, maxPayloadBytes: 512 }
  }).transport
  t.match(custom, { connection: { host: '127.0.0.1' }, channel: 'Custom_Channel', reconnect: { minDelayMs: 7000, maxDelayMs: 7000 }, maxPayloadBytes: 512 })
})

test('each refusal names the option', async (t) => {
  const base = { db: postgres, webhookSecret: SECRET }
  const cases: Array<[PolicyCacheOptions, string, string]> = [
    [{ transport: 'nats' as never }, 'transport', 'must be "webhook" or an object'],
    [{ transport: { type: 'kafka' } as never }, 'transport.type', 'must be "webhook", "pg-notify", "nats" or "redis"'],
    [{ transport: { type: 'webhook', channel: 'x' } as never }, 'transport.channel', 'is not an option of "transport"'],
    [{ ...base, transport: { type: 'pg-notify' } as never }, 'transport.connection', 'is required'],
    [{ ...base, transport: { ...pgNotify, connection: ' ' } }, 'transport.connection', 'must not be empty'],
    [{ ...base, transport: { ...pgNotify, channel: 'no-dashes' } }, 'transport.channel', 'must match'],
    [{ ...base, transport: { ...pgNotify, channel: 'c'.repeat(64) } }, 'transport.channel', 'must match'],
    [{ ...base, transport: { ...pgNotify, maxPayloadBytes: 8000 } }, 'transport.maxPayloadBytes', 'must be an integer from 512 to 7900'],
    [{ ...base, transport: { ...pgNotify, probeIntervalMs: 0 } }, 'transport.probeIntervalMs', 'must be an integer from 10'],
    [{ ...base, transport: { ...pgNotify, reconnect: { minDelayMs: 100, maxDelayMs: 50 } } }, 'transport.reconnect.maxDelayMs', 'must be an integer from 100'],
    [{ ...base, transport: { ...pgNotify, reconnect: { delay: 1 } as never } }, 'transport.reconnect.delay', 'is not an option'],
    [{ ...base, transport: { ...pgNotify, probe: 1 } as never }, 'transport.probe', 'is not an option'],
    [{ webhookSecret: SECRET, transport: pgNotify }, 'transport', 'pg-notify needs a PostgreSQL store: pass db'],
    [{ db: mysql, webhookSecret: SECRET, transport: pgNotify }, 'transport', 'pg-notify needs a PostgreSQL store'],
    [{ db: postgres, transport: pgNotify }, 'webhookSecret', 'is required by the pg-notify transport'],
    [{ ...base, peers: ['http://127.0.0.1:3001'], transport: pgNotify }, 'peers', 'are for the webhook transport'],
    [{ ...base, publicUrl: 'http://127.0.0.1:3000', membership: true, transport: pgNotify }, 'membership', 'is for the webhook transport']
  ]
  for (const [options, name, message] of cases) {
    t.throws(() => resolveOptions(options), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: new RegExp(`^Invalid option "${name.replace(/\./g, '\\.')}": ${message.replace(/[()]/g, '\\$&')}`) }, `${name}: ${message}`)
  }
})

test('a custom store is accepted for pg-notify only when it says it notifies', async (t) => {
  const store = {
    migrate: async () => {},
    databaseId: async () => 'db1',
    write: async () => ({ revision: 1, changed: true, digest: '0'.repeat(32) }),
    snapshot: async () => ({ revision: 0, groups: [], digest: '0'.repeat(32) }),
    changesSince: async () => [],
    changes: async () => ({ revision: 0, oldestRevision: null, entries: [] }),
    revisions: async () => new Map(),
    tenants: async () => [],
    importTenant: async () => ({ revision: 1, changed: true, digest: '0'.repeat(32), changes: [] }),
    deleteTenant: async () => ({ revision: 1, changed: true, digest: '0'.repeat(32), changes: [] }),
    ping: async () => {},
    close: async () => {}
  }
  t.throws(() => resolveOptions({ db: store, webhookSecret: SECRET, transport: pgNotify }), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /"transport".*notifies is true/ })
  t.equal(resolveOptions({ db: { ...store, notifies: true }, webhookSecret: SECRET, transport: pgNotify }).transport.type, 'pg-notify')
})

test('registration on a SQLite store fails with the coded error, before anything opens', async (t) => {
  const db = createSqliteDb(':memory:')
  t.teardown(() => db.destroy())
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => { await app.register(policyCache, { db, webhookSecret: SECRET, transport: pgNotify }).ready() }, {
    code: 'FST_POLICY_CACHE_INVALID_OPTION',
    message: /^Invalid option "transport": pg-notify needs a PostgreSQL store/
  })
  t.same(await db.introspection.getTables(), [], 'no table was created')
})

const nats = { type: 'nats', servers: 'nats://127.0.0.1:4222' } as const

test('nats resolves with its defaults on any store, a subject from the table prefix, membership allowed', async (t) => {
  const resolved = resolveOptions({ webhookSecret: SECRET, tablePrefix: 'app_', transport: nats }).transport
  t.same(resolved, {
    type: 'nats',
    servers: ['nats://127.0.0.1:4222'],
    subject: 'app_notify',
    probeIntervalMs: 5000,
    probeTimeoutMs: 2000,
    maxPayloadBytes: 65536,
    connection: {}
  })
  t.ok(Object.isFrozen(resolved))
  const custom = resolveOptions({
    db: mysql,
    webhookSecret: SECRET,
    publicUrl: 'http://127.0.0.1:3000',
    membership: true,
    transport: { ...nats, servers: ['nats://a:4222', 'nats://b:4222'], subject: 'org.policy-cache.notify', maxPayloadBytes: 512, connection: { user: 'u', pass: 'p' } }
  }).transport
  t.match(custom, { servers: ['nats://a:4222', 'nats://b:4222'], subject: 'org.policy-cache.notify', maxPayloadBytes: 512, connection: { user: 'u', pass: 'p' } })
})

test('each nats refusal names the option', async (t) => {
  const cases: Array<[PolicyCacheOptions, string, string]> = [
    [{ webhookSecret: SECRET, transport: { type: 'nats' } as never }, 'transport.servers', 'is required'],
    [{ webhookSecret: SECRET, transport: { ...nats, servers: [] } }, 'transport.servers', 'is required'],
    [{ webhookSecret: SECRET, transport: { ...nats, servers: [' '] } }, 'transport.servers', 'is required'],
    [{ webhookSecret: SECRET, transport: { ...nats, subject: 'policy.*' } }, 'transport.subject', 'must match'],
    [{ webhookSecret: SECRET, transport: { ...nats, subject: 'a..b' } }, 'transport.subject', 'must match'],
    [{ webhookSecret: SECRET, transport: { ...nats, maxPayloadBytes: 100 } }, 'transport.maxPayloadBytes', 'must be an integer from 512'],
    [{ webhookSecret: SECRET, transport: { ...nats, probeTimeoutMs: 1 } }, 'transport.probeTimeoutMs', 'must be an integer from 10'],
    [{ webhookSecret: SECRET, transport: { ...nats, connection: 'x' } as never }, 'transport.connection', 'must be an object'],
    [{ webhookSecret: SECRET, transport: { ...nats, channel: 'x' } as never }, 'transport.channel', 'is not an option'],
    [{ transport: nats }, 'webhookSecret', 'is required by the nats transport'],
    [{ webhookSecret: SECRET, peers: ['http://127.0.0.1:3001'], transport: nats }, 'peers', 'are for the webhook transport']
  ]
  for (const [options, name, message] of cases) {
    t.throws(() => resolveOptions(options), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: new RegExp(`^Invalid option "${name.replace(/\./g, '\\.')}": ${message}`) }, `${name}: ${message}`)
  }
})

test('a nats server that does not answer fails registration, naming it', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => {
    await app.register(policyCache, { sqliteFile: ':memory:', webhookSecret: SECRET, syncIntervalMs: 0, transport: { ...nats, servers: 'nats://127.0.0.1:1' } }).ready()
  }, { message: /the nats transport could not connect to nats:\/\/127\.0\.0\.1:1/ })
})

const redis = { type: 'redis', connection: 'redis://127.0.0.1:6379' } as const

test('redis resolves with its defaults on any store and a channel from the table prefix', async (t) => {
  const resolved = resolveOptions({ webhookSecret: SECRET, tablePrefix: 'app_', transport: redis }).transport
  t.same(resolved, {
    type: 'redis',
    connection: 'redis://127.0.0.1:6379',
    channel: 'app_notify',
    probeIntervalMs: 5000,
    probeTimeoutMs: 2000,
    maxPayloadBytes: 65536
  })
  t.ok(Object.isFrozen(resolved))
  t.match(resolveOptions({ db: postgres, webhookSecret: SECRET, transport: { ...redis, connection: { host: '127.0.0.1' }, channel: 'org.notify' } }).transport,
    { connection: { host: '127.0.0.1' }, channel: 'org.notify' })
})

test('each redis refusal names the option', async (t) => {
  const cases: Array<[PolicyCacheOptions, string, string]> = [
    [{ webhookSecret: SECRET, transport: { type: 'redis' } as never }, 'transport.connection', 'is required'],
    [{ webhookSecret: SECRET, transport: { ...redis, connection: '' } }, 'transport.connection', 'must not be empty'],
    [{ webhookSecret: SECRET, transport: { ...redis, channel: 'a*' } }, 'transport.channel', 'must match'],
    [{ webhookSecret: SECRET, transport: { ...redis, maxPayloadBytes: 10 } }, 'transport.maxPayloadBytes', 'must be an integer from 512'],
    [{ webhookSecret: SECRET, transport: { ...redis, subject: 'x' } as never }, 'transport.subject', 'is not an option'],
    [{ transport: redis }, 'webhookSecret', 'is required by the redis transport'],
    [{ webhookSecret: SECRET, peers: ['http://127.0.0.1:3001'], transport: redis }, 'peers', 'are for the webhook transport'],
    [{ webhookSecret: SECRET, publicUrl: 'http://127.0.0.1:3000', membership: true, transport: redis }, 'membership', 'is for the webhook and nats transports']
  ]
  for (const [options, name, message] of cases) {
    t.throws(() => resolveOptions(options), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: new RegExp(`^Invalid option "${name.replace(/\./g, '\\.')}": ${message}`) }, `${name}: ${message}`)
  }
})

test('a redis server that does not answer fails registration, naming the channel', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => {
    await app.register(policyCache, {
      sqliteFile: ':memory:',
      webhookSecret: SECRET,
      syncIntervalMs: 0,
      startupTimeoutMs: 5000,
      transport: { ...redis, connection: { host: '127.0.0.1', port: 1, retryStrategy: () => null }, channel: 'nowhere' }
    }).ready()
  }, { message: /the redis transport could not subscribe to "nowhere"/ })
})
