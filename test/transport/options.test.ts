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
    [{ transport: { type: 'redis' } as never }, 'transport.type', 'must be "webhook" or "pg-notify"'],
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
