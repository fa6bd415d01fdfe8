/**
 * The `membership` and `peerRefreshMs` options, `/health`'s membership state, and the peer set's own
 * refresh schedule.
 */
import Fastify from 'fastify'
import { test } from 'tap'
import { MemoryPolicyStore } from '../../examples/custom-store.js'
import policyCache, { DEFAULTS, type PolicyCacheOptions, type PolicyStore } from '../../lib/plugin.js'
import { resolveOptions } from '../../lib/options.js'
import { createSqliteDb, KyselyPolicyStore } from '../../lib/store/index.js'
import type { MembershipStore } from '../../lib/store/types.js'
import { SECRET } from '../helpers/app.js'
import { until } from './suite.js'

const base = { publicUrl: 'http://127.0.0.1:3000', webhookSecret: SECRET }

test('membership: defaults, and bad values fail naming the option', async (t) => {
  t.strictSame(resolveOptions({ ...base, membership: true }).membership, DEFAULTS.membership)
  t.strictSame(DEFAULTS.membership, { heartbeatMs: 5000, ttlMs: 15000, pollMs: 1000 })
  t.equal(resolveOptions({ ...base }).membership, undefined, 'off by default')
  t.equal(resolveOptions({ ...base, membership: false }).membership, undefined)
  t.strictSame(resolveOptions({ ...base, membership: { heartbeatMs: 10000 } }).membership, { heartbeatMs: 10000, ttlMs: 30000, pollMs: 1000 },
    'the default ttl follows a longer heartbeat')

  const cases: Array<[string, PolicyCacheOptions]> = [
    ['membership', { ...base, membership: 'yes' as unknown as boolean }],
    ['membership.heartbeat', { ...base, membership: { heartbeat: 1 } as unknown as { heartbeatMs: number } }],
    ['membership.heartbeatMs', { ...base, membership: { heartbeatMs: 0 } }],
    ['membership.ttlMs', { ...base, membership: { heartbeatMs: 1000, ttlMs: 1999 } }],
    ['membership.pollMs', { ...base, membership: { pollMs: 1.5 } }],
    ['membership', { webhookSecret: SECRET, membership: true }],
    ['membership', { publicUrl: base.publicUrl, membership: true }],
    ['membership', { ...base, db: new MemoryPolicyStore(), membership: true }],
    ['peerRefreshMs', { peerRefreshMs: -1 }]
  ]
  for (const [name, options] of cases) {
    t.throws(() => resolveOptions(options), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: new RegExp(`"${name.replace('.', '\\.')}"`) }, `${name}: ${JSON.stringify(options)}`)
  }
  t.throws(() => resolveOptions({ ...base, db: new MemoryPolicyStore(), membership: true }), { message: /no membership/ }, 'a custom store without membership says so')
})

test('/health reports membership off, ok, and degraded while its heartbeat fails (keeping the last set)', async (t) => {
  const off = Fastify()
  t.teardown(() => off.close())
  await off.register(policyCache, { syncIntervalMs: 0 })
  t.match((await off.inject({ url: '/health' })).json(), { status: 'ok', membership: 'off' })

  const db = createSqliteDb(':memory:')
  const inner = new KyselyPolicyStore({ db, ownsDb: true })
  let failing = false
  const guard = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    if (failing) throw new Error('database unreachable')
    return await fn(...args)
  }
  const membership: MembershipStore = {
    join: guard((self, ttl) => inner.membership.join(self, ttl)),
    heartbeat: guard((self, ttl, purge) => inner.membership.heartbeat(self, ttl, purge)),
    expire: guard(() => inner.membership.expire()),
    version: guard(() => inner.membership.version()),
    members: guard(() => inner.membership.members()),
    leave: guard((self) => inner.membership.leave(self)),
    remove: guard((self) => inner.membership.remove(self))
  }
  const store: PolicyStore = {
    migrate: () => inner.migrate(),
    databaseId: () => inner.databaseId(),
    write: (...args) => inner.write(...args),
    snapshot: (tenant) => inner.snapshot(tenant),
    changesSince: (tenant, revision) => inner.changesSince(tenant, revision),
    changes: (tenant, after, limit) => inner.changes(tenant, after, limit),
    revisions: (tenants) => inner.revisions(tenants),
    tenants: (after, limit) => inner.tenants(after, limit),
    importTenant: (...args) => inner.importTenant(...args),
    deleteTenant: (...args) => inner.deleteTenant(...args),
    ping: () => inner.ping(),
    close: () => inner.close(),
    membership
  }
  t.teardown(() => inner.close())
  await inner.migrate()
  // A peer registered before: it stays in the set while the database is unreachable.
  await inner.membership.join({ serverId: 'other', url: 'http://127.0.0.1:1', incarnation: 'x' }, 3600000)

  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, { ...base, db: store, syncIntervalMs: 0, membership: { heartbeatMs: 20, ttlMs: 3600000, pollMs: 20 } })
  await app.ready()
  t.match((await app.inject({ url: '/health' })).json(), { status: 'ok', membership: 'ok', peers: { total: 1 } })

  failing = true
  await until('health says degraded', async () => (await app.inject({ url: '/health' })).json().membership === 'degraded')
  t.strictSame(app.policyCache.peers().map((peer) => peer.url), ['http://127.0.0.1:1'], 'the last known set is kept')
  failing = false
  await until('health says ok again', async () => (await app.inject({ url: '/health' })).json().membership === 'ok')
})

test('a function-valued peers is resolved again on its own schedule, with the sync off', async (t) => {
  let calls = 0
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, {
    webhookSecret: SECRET,
    syncIntervalMs: 0,
    peerRefreshMs: 20,
    peers: async () => {
      calls++
      return calls === 1 ? ['http://127.0.0.1:1'] : ['http://127.0.0.1:1', 'http://127.0.0.1:2']
    }
  })
  await app.ready()
  await until('the second answer is applied', () => app.policyCache.peers().length === 2)
  t.ok(calls >= 2)

  const failing = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { warnings.push(JSON.parse(line).msg) } } } })
  const warnings: string[] = []
  t.teardown(() => failing.close())
  let failingCalls = 0
  await failing.register(policyCache, {
    webhookSecret: SECRET,
    syncIntervalMs: 0,
    peerRefreshMs: 10,
    peers: async () => {
      if (++failingCalls > 1) throw new Error('dns down')
      return ['http://127.0.0.1:1']
    }
  })
  await failing.ready()
  await until('several failed refreshes', () => failingCalls >= 4)
  t.strictSame(failing.policyCache.peers().map((peer) => peer.url), ['http://127.0.0.1:1'], 'a failed refresh keeps the last list')
  t.strictSame(warnings.filter((msg) => /resolving peers failed/.test(msg)).length, 1, 'warned once')

  const once = Fastify()
  t.teardown(() => once.close())
  let onceCalls = 0
  await once.register(policyCache, { webhookSecret: SECRET, syncIntervalMs: 0, peerRefreshMs: 0, peers: async () => { onceCalls++; return [] } })
  await once.ready()
  t.equal(onceCalls, 1, 'peerRefreshMs: 0 resolves once, at startup')
})
