/**
 * Reverse lookup (GET /tenants/:tenant/who, `policyCache.who`) and batch check (POST /check-batch,
 * `policyCache.checkBatch`): wildcards honoured, pages walked exactly once, a batch's answers equal
 * the single checks' at the same revision (property test against a naive reference).
 */
import fc from 'fast-check'
import Fastify from 'fastify'
import { test } from 'tap'
import { MemoryPolicyStore } from '../../examples/custom-store.js'
import type { Change } from '../../lib/model.js'
import policyCache from '../../lib/plugin.js'
import { buildApp, get, post } from '../helpers/app.js'

const TENANT: Change[] = [
  { op: 'create-group', group: 'readers' },
  { op: 'create-group', group: 'editors' },
  { op: 'create-group', group: 'admins' },
  { op: 'create-group', group: 'deep' },
  { op: 'create-group', group: 'other' },
  { op: 'add-permission', group: 'readers', permission: 'documents:read' },
  { op: 'add-permission', group: 'editors', permission: 'documents:*' },
  { op: 'add-permission', group: 'admins', permission: '*' },
  { op: 'add-permission', group: 'deep', permission: 'documents:drafts:*' },
  { op: 'add-permission', group: 'other', permission: 'documentsX:read' },
  { op: 'add-permission', group: 'other', permission: 'documents' },
  { op: 'assign-user', group: 'readers', user: 'alice' },
  { op: 'assign-user', group: 'readers', user: 'carol' },
  { op: 'assign-user', group: 'editors', user: 'alice' },
  { op: 'assign-user', group: 'editors', user: 'dave' },
  { op: 'assign-user', group: 'admins', user: 'root' },
  { op: 'assign-user', group: 'deep', user: 'erin' },
  { op: 'assign-user', group: 'other', user: 'mallory' }
]

test('who: exact grants, wildcards at every depth and `*`, each user once with the groups it holds through', async (t) => {
  const app = await buildApp(t)
  await app.policyCache.batch('t1', TENANT)
  const who = async (permission: string) => (await get(app, `/tenants/t1/who?permission=${encodeURIComponent(permission)}`)).body
  t.same(await who('documents:read'), {
    tenant: 't1',
    permission: 'documents:read',
    revision: 1,
    users: [{ user: 'alice', groups: ['editors', 'readers'], chains: [['editors'], ['readers']] }, { user: 'carol', groups: ['readers'], chains: [['readers']] }, { user: 'dave', groups: ['editors'], chains: [['editors']] }, { user: 'root', groups: ['admins'], chains: [['admins']] }],
    next: null
  })
  t.same((await who('documents:drafts:x')).users.map((h: { user: string }) => h.user), ['alice', 'dave', 'erin', 'root'], 'a deeper wildcard')
  t.same((await who('documents:write')).users.map((h: { user: string }) => h.user), ['alice', 'dave', 'root'])
  t.same((await who('documents')).users, [{ user: 'mallory', groups: ['other'], chains: [['other']] }, { user: 'root', groups: ['admins'], chains: [['admins']] }], '`documents:*` does not hold `documents`')
  t.same((await who('reports:read')).users, [{ user: 'root', groups: ['admins'], chains: [['admins']] }], 'only `*`')
  // A wildcard asked for: held through itself, a shorter wildcard or `*`, not through the grants under it.
  t.same((await who('documents:*')).users.map((h: { user: string }) => h.user), ['alice', 'dave', 'root'])
  t.same((await who('documents:drafts:*')).users.map((h: { user: string }) => h.user), ['alice', 'dave', 'erin', 'root'])
  t.same((await who('*')).users, [{ user: 'root', groups: ['admins'], chains: [['admins']] }])
  t.same((await who('nothing')).users, [{ user: 'root', groups: ['admins'], chains: [['admins']] }])
  t.same((await get(app, '/tenants/none/who?permission=a')).body, { tenant: 'none', permission: 'a', revision: 0, users: [], next: null })

  // Revoking a wildcard and deleting a group follow at once.
  await app.policyCache.batch('t1', [{ op: 'remove-permission', group: 'editors', permission: 'documents:*' }, { op: 'delete-group', group: 'admins' }])
  t.same(await who('documents:read'), {
    tenant: 't1', permission: 'documents:read', revision: 2, users: [{ user: 'alice', groups: ['readers'], chains: [['readers']] }, { user: 'carol', groups: ['readers'], chains: [['readers']] }], next: null
  })
  const decorated = await app.policyCache.who('t1', 'documents:drafts:x')
  t.same(decorated, { tenant: 't1', permission: 'documents:drafts:x', revision: 2, users: [{ user: 'erin', groups: ['deep'], chains: [['deep']] }], next: null })
})

test('who pages: each holder exactly once at every limit; a coded 400 for a bad permission, cursor, limit or parameter', async (t) => {
  const app = await buildApp(t)
  const changes: Change[] = [{ op: 'create-group', group: 'a' }, { op: 'create-group', group: 'b' }, { op: 'add-permission', group: 'a', permission: 'x:*' }, { op: 'add-permission', group: 'b', permission: 'x:y' }]
  const users = Array.from({ length: 120 }, (_, i) => `u${String(i).padStart(3, '0')}`)
  // Interleaved members: the even ones in a, multiples of 3 in b, so the merge has work to do.
  users.forEach((user, i) => {
    if (i % 2 === 0) changes.push({ op: 'assign-user', group: 'a', user })
    if (i % 3 === 0) changes.push({ op: 'assign-user', group: 'b', user })
  })
  await app.policyCache.batch('t1', changes)
  const expected = users.filter((_u, i) => i % 2 === 0 || i % 3 === 0).map((user) => {
    const i = users.indexOf(user)
    const groups = [...(i % 2 === 0 ? ['a'] : []), ...(i % 3 === 0 ? ['b'] : [])]
    return { user, groups, chains: groups.map((group) => [group]) }
  })
  for (const limit of [1, 9, 80, 1000]) {
    const seen: unknown[] = []
    let cursor: string | null = null
    do {
      const page: { users: unknown[], next: string | null } = await app.policyCache.who('t1', 'x:y', { limit, cursor: cursor ?? undefined })
      t.ok(page.users.length <= limit)
      seen.push(...page.users)
      cursor = page.next
    } while (cursor !== null)
    t.same(seen, expected, `limit ${limit}`)
  }
  const first = await get(app, '/tenants/t1/who?permission=x:y&limit=2')
  t.same(first.body.users.map((h: { user: string }) => h.user), ['u000', 'u002'])
  t.equal(first.headers['policy-revision'], '1')
  t.same((await get(app, `/tenants/t1/who?permission=x:y&limit=2&cursor=${first.body.next}`)).body.users.map((h: { user: string }) => h.user), ['u003', 'u004'])

  for (const query of ['', 'permission=', 'permission=a::b', 'permission=a:*:b', 'permission=**', 'permission=x:y&foo=1', 'permission=x:y&limit=0', 'permission=x:y&limit=1001',
    'permission=x:y&cursor=!!', 'permission=x:y&cursor=YSBi', 'permission=x:y&permission=x:z', `permission=${'a'.repeat(257)}`]) {
    const res = await get(app, `/tenants/t1/who?${query}`)
    t.equal(res.status, 400, query.slice(0, 40))
    t.match(res.body.code, /^FST_/)
  }
  await t.rejects(app.policyCache.who('t1', 'a::b'), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /permission/ })
  await t.rejects(app.policyCache.who('t1', 'x:y', { cursor: 'YSBi' }), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /cursor/ })
  await t.rejects(app.policyCache.who('t1', 'x:y', { limit: 0 }), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /limit/ })
})

test('who with long ids, minRevision, and behind routeHooks', async (t) => {
  const store = new MemoryPolicyStore()
  const app = Fastify({ maxParamLength: 20 })
  t.teardown(() => app.close())
  await app.register(policyCache, { db: store, syncIntervalMs: 0 })
  const tenant = 't' + 'x'.repeat(127)
  await app.policyCache.batch(tenant, [{ op: 'create-group', group: 'g' }, { op: 'add-permission', group: 'g', permission: 'doc:*' }, { op: 'assign-user', group: 'g', user: 'alice' }])
  t.same((await get(app, `/tenants/${tenant}/who?permission=doc:read`)).body, { tenant, permission: 'doc:read', revision: 1, users: [{ user: 'alice', groups: ['g'], chains: [['g']] }], next: null })
  t.match(await get(app, `/tenants/${tenant}/who?permission=doc:read&x=1`), { status: 400, body: { code: 'FST_POLICY_CACHE_INVALID_INPUT' } })
  t.match(await get(app, `/tenants/${tenant}/who`), { status: 400, body: { code: 'FST_POLICY_CACHE_INVALID_INPUT' } })
  await store.write(tenant, { op: 'assign-user', group: 'g', user: 'bob' }, 'elsewhere')
  t.equal((await get(app, `/tenants/${tenant}/who?permission=doc:read`)).body.users.length, 1, 'stale without a token')
  t.equal((await get(app, `/tenants/${tenant}/who?permission=doc:read&minRevision=2`)).body.users.length, 2)
  t.match(await get(app, `/tenants/${tenant}/who?permission=doc:read&minRevision=5`), { status: 412, body: { code: 'FST_POLICY_CACHE_REVISION_AHEAD' } })

  const guarded = await buildApp(t, { routeHooks: { preHandler: async (_request, reply) => { await reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: 'no' }) } } })
  t.equal((await get(guarded, '/tenants/t1/who?permission=a')).status, 403)
  t.equal((await get(guarded, `/tenants/${tenant}/who?permission=a`)).status, 403)
  t.equal((await post(guarded, '/check-batch', { tenant: 't1', checks: [] })).status, 403)
})

test('check-batch: answers aligned with the checks, from one revision; limits and malformed input coded', async (t) => {
  const store = new MemoryPolicyStore()
  const app = await buildApp(t, { db: store, maxBatchChecks: 3 })
  await app.policyCache.batch('t1', TENANT)
  const res = await post(app, '/check-batch', {
    tenant: 't1',
    checks: [{ user: 'alice', permission: 'documents:write' }, { user: 'carol', permission: 'documents:write' }, { user: 'erin', permission: 'documents:drafts:a' }]
  })
  t.same(res.body, { tenant: 't1', revision: 1, results: [true, false, true] })
  t.equal(res.headers['policy-revision'], '1')
  t.same((await post(app, '/check-batch', { tenant: 't1', checks: [] })).body, { tenant: 't1', revision: 1, results: [] }, 'no checks: the revision alone')

  const tooMany = await post(app, '/check-batch', { tenant: 't1', checks: Array.from({ length: 4 }, () => ({ user: 'alice', permission: 'a' })) })
  t.equal(tooMany.status, 413)
  t.same(tooMany.body, { statusCode: 413, code: 'FST_POLICY_CACHE_CHECK_BATCH_TOO_LARGE', error: 'Payload Too Large', message: 'A batch of 4 checks is over maxBatchChecks (3): split it' })
  await t.rejects(app.policyCache.checkBatch('t1', Array.from({ length: 4 }, () => ({ user: 'alice', permission: 'a' }))), { code: 'FST_POLICY_CACHE_CHECK_BATCH_TOO_LARGE', statusCode: 413 })

  for (const body of [
    { tenant: 't1' }, { checks: [] }, { tenant: 't1', checks: {} }, { tenant: 't1', checks: [{ user: 'alice' }] },
    { tenant: 't1', checks: [{ user: 'alice', permission: 'documents:*' }] }, { tenant: 't1', checks: [{ user: '-a', permission: 'a' }] },
    { tenant: 't1', checks: [{ user: 'alice', permission: 'a', extra: 1 }] }, { tenant: 't1', checks: [], extra: 1 }, { tenant: 't1', checks: [], minRevision: '1' },
    { tenant: 't1', checks: [], minRevision: -1 }, { tenant: 't1', checks: [], minRevision: 1.5 }, { tenant: 'a b', checks: [] }
  ]) {
    const bad = await post(app, '/check-batch', body)
    t.equal(bad.status, 400, JSON.stringify(body))
    t.match(bad.body.code, /^FST_/)
  }
  await t.rejects(app.policyCache.checkBatch('t1', [{ user: 'alice', permission: 'a' }, { user: 'alice', permission: 'a:*' }]), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /checks\[1\]/ })
  await t.rejects(app.policyCache.checkBatch('t1', [null as unknown as { user: string, permission: string }]), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /checks\[0\]/ })
  await t.rejects(app.policyCache.checkBatch('t1', 'x' as unknown as []), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /checks/ })

  await store.write('t1', { op: 'assign-user', group: 'readers', user: 'zoe' }, 'elsewhere')
  t.same((await post(app, '/check-batch', { tenant: 't1', checks: [{ user: 'zoe', permission: 'documents:read' }], minRevision: 2 })).body, { tenant: 't1', revision: 2, results: [true] })
  t.match(await post(app, '/check-batch', { tenant: 't1', checks: [], minRevision: 7 }), { status: 412, body: { code: 'FST_POLICY_CACHE_REVISION_AHEAD' } })
  const before = app.policyCache.stats()
  await app.policyCache.checkBatch('t1', [{ user: 'zoe', permission: 'documents:read' }, { user: 'zoe', permission: 'x' }])
  const after = app.policyCache.stats()
  t.same([after.checksAllowed - before.checksAllowed, after.checksDenied - before.checksDenied], [1, 1], 'counted like single checks')
})

test('check-batch\'s body limit fits maxBatchChecks of the largest checks', async (t) => {
  const app = await buildApp(t)
  const checks = Array.from({ length: 1000 }, () => ({ user: 'u'.repeat(128), permission: 'p'.repeat(256) }))
  const res = await app.inject({ method: 'POST', url: '/check-batch', payload: JSON.stringify({ tenant: 't'.repeat(128), checks }, null, 2), headers: { 'content-type': 'application/json' } })
  t.equal(res.statusCode, 200)
  t.equal(res.json().results.length, 1000)
})

/** A random tenant: groups with grants from a small alphabet (wildcards included) and members. */
const group = fc.constantFrom('g1', 'g2', 'g3', 'g4')
const user = fc.constantFrom('u1', 'u2', 'u3', 'u4', 'u5')
const grant = fc.constantFrom('*', 'a:*', 'a:b:*', 'a:b', 'a:b:c', 'b:*', 'b', 'c:d')
const concrete = fc.constantFrom('a', 'a:b', 'a:b:c', 'a:c', 'b', 'b:x', 'c:d', 'c:d:e', 'd')
const tenantChanges = fc.array(fc.oneof(
  fc.record({ op: fc.constant('add-permission' as const), group, permission: grant }),
  fc.record({ op: fc.constant('assign-user' as const), group, user }),
  fc.record({ op: fc.constantFrom('remove-permission' as const), group, permission: grant }),
  fc.record({ op: fc.constantFrom('unassign-user' as const), group, user })
), { minLength: 1, maxLength: 25 })

/** The naive reference: does any group of `user` hold a grant covering `permission`? */
function naiveCheck (changes: Change[], user: string, permission: string): boolean {
  const groups = new Map<string, { grants: Set<string>, users: Set<string> }>()
  for (const c of changes) {
    let g = groups.get(c.group)
    if (g === undefined) groups.set(c.group, g = { grants: new Set(), users: new Set() })
    if (c.op === 'add-permission') g.grants.add(c.permission)
    if (c.op === 'remove-permission') g.grants.delete(c.permission)
    if (c.op === 'assign-user') g.users.add(c.user)
    if (c.op === 'unassign-user') g.users.delete(c.user)
  }
  return [...groups.values()].some((g) => g.users.has(user) && [...g.grants].some((grant) =>
    grant === '*' || grant === permission || (grant.endsWith(':*') && permission.startsWith(grant.slice(0, -1)))))
}

test('property: a batch check equals the single checks and the naive reference; who agrees with both', async (t) => {
  const app = await buildApp(t)
  let n = 0
  await fc.assert(fc.asyncProperty(tenantChanges, fc.array(fc.tuple(user, concrete), { maxLength: 20 }), async (changes, pairs) => {
    const tenant = `p${n++}`
    const groups = [...new Set(changes.map((c) => c.group))].map((g): Change => ({ op: 'create-group', group: g }))
    await app.policyCache.batch(tenant, [...groups, ...changes])
    const all = [...groups, ...changes]
    const { revision, results } = await app.policyCache.checkBatch(tenant, pairs.map(([u, permission]) => ({ user: u, permission })))
    for (let i = 0; i < pairs.length; i++) {
      const [u, permission] = pairs[i]
      const single = await app.policyCache.decide(tenant, u, permission)
      if (single.revision !== revision || single.allowed !== results[i] || results[i] !== naiveCheck(all, u, permission)) return false
      const holders = (await app.policyCache.who(tenant, permission, { limit: 1000 })).users.map((h) => h.user)
      if (holders.includes(u) !== results[i]) return false
    }
    return true
  }), { numRuns: 60 })
  t.pass('60 random tenants')
})
