/**
 * The role hierarchy through the routes and the decorator: POST /include-group and /exclude-group,
 * their refusals (404, the coded 409 naming the cycle, 400), the batch, the views saying why a user
 * holds a grant, the reverse lookup following inclusions, the audit feed, the route hooks.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { test } from 'tap'
import type { Change } from '../../lib/model.js'
import { buildApp, get, post } from '../helpers/app.js'

/** admins ⊃ editors ⊃ viewers, and auditors ⊃ viewers beside them. */
const LAYERED: Change[] = [
  ...['admins', 'editors', 'viewers', 'auditors'].map((group): Change => ({ op: 'create-group', group })),
  { op: 'add-permission', group: 'viewers', permission: 'documents:read' },
  { op: 'add-permission', group: 'editors', permission: 'documents:write' },
  { op: 'add-permission', group: 'admins', permission: 'users:*' },
  { op: 'add-permission', group: 'auditors', permission: 'audit:read' },
  { op: 'assign-user', group: 'admins', user: 'ada' },
  { op: 'assign-user', group: 'editors', user: 'eve' },
  { op: 'assign-user', group: 'viewers', user: 'vic' },
  { op: 'assign-user', group: 'auditors', user: 'aud' }
]

test('POST /include-group and /exclude-group: members hold the included grants transitively, and lose them', async (t) => {
  const app = await buildApp(t)
  await app.policyCache.batch('t1', LAYERED)
  const check = async (user: string, permission: string) => (await get(app, `/check-access?tenant=t1&user=${user}&permission=${permission}`)).body.allowed
  t.equal(await check('ada', 'documents:read'), false, 'flat before')

  const first = await post(app, '/include-group', { tenant: 't1', group: 'editors', includes: 'viewers' })
  t.same(first.body, { tenant: 't1', revision: 2, changed: true, peers: { acked: 0, total: 0 } })
  t.equal(first.headers['policy-revision'], '2')
  t.same((await post(app, '/include-group', { tenant: 't1', group: 'admins', includes: 'editors' })).body.revision, 3)
  t.equal(await check('ada', 'documents:read'), true, 'two levels down')
  t.equal(await check('ada', 'documents:write'), true)
  t.equal(await check('eve', 'documents:read'), true)
  t.equal(await check('eve', 'users:delete'), false, 'never upwards')
  t.equal(await check('vic', 'documents:write'), false)
  t.same((await post(app, '/include-group', { tenant: 't1', group: 'admins', includes: 'editors' })).body, { tenant: 't1', revision: 3, changed: false, peers: { acked: 0, total: 0 } })

  // A grant added at the bottom reaches the top at once; removed, it goes.
  await app.policyCache.addPermission('t1', 'viewers', 'reports:read')
  t.equal(await check('ada', 'reports:read'), true)
  await app.policyCache.removePermission('t1', 'viewers', 'reports:read')
  t.equal(await check('ada', 'reports:read'), false)

  t.same((await post(app, '/exclude-group', { tenant: 't1', group: 'editors', includes: 'viewers' })).body.changed, true)
  t.equal(await check('ada', 'documents:read'), false, 'excluded below: gone above too')
  t.equal(await check('ada', 'documents:write'), true, 'what admins still include stays')
  t.same((await post(app, '/exclude-group', { tenant: 't1', group: 'editors', includes: 'viewers' })).body.changed, false)
})

test('refusals: 404 without either group, 409 naming the cycle, 400 for bad input; nothing written', async (t) => {
  const app = await buildApp(t)
  await app.policyCache.batch('t1', [...LAYERED, { op: 'include-group', group: 'admins', includes: 'editors' }, { op: 'include-group', group: 'editors', includes: 'viewers' }])
  const missing = await post(app, '/include-group', { tenant: 't1', group: 'admins', includes: 'ghosts' })
  t.equal(missing.status, 404)
  t.equal(missing.body.code, 'FST_POLICY_CACHE_GROUP_NOT_FOUND')
  t.match(missing.body.message, /"ghosts"/)
  t.equal((await post(app, '/include-group', { tenant: 't1', group: 'ghosts', includes: 'admins' })).status, 404)

  const cycle = await post(app, '/include-group', { tenant: 't1', group: 'viewers', includes: 'admins' })
  t.equal(cycle.status, 409)
  t.same(cycle.body, {
    statusCode: 409,
    code: 'FST_POLICY_CACHE_INCLUSION_CYCLE',
    error: 'Conflict',
    message: 'Group "viewers" cannot include "admins" in tenant "t1": it would close the cycle viewers → admins → editors → viewers; nothing was written'
  })
  const self = await post(app, '/include-group', { tenant: 't1', group: 'viewers', includes: 'viewers' })
  t.equal(self.body.code, 'FST_POLICY_CACHE_INCLUSION_CYCLE')
  t.match(self.body.message, /viewers → viewers/)
  await t.rejects(app.policyCache.includeGroup('t1', 'viewers', 'editors'), { code: 'FST_POLICY_CACHE_INCLUSION_CYCLE', statusCode: 409, path: ['viewers', 'editors', 'viewers'] })

  for (const body of [{ tenant: 't1', group: 'admins' }, { tenant: 't1', group: 'admins', includes: 'bad id' }, { tenant: 't1', group: 'admins', includes: 'viewers', user: 'x' }]) {
    const res = await post(app, '/include-group', body)
    t.equal(res.status, 400, JSON.stringify(body))
  }
  await t.rejects(app.policyCache.includeGroup('t1', 'admins', 'bad id'), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /Invalid includes/ })
  await t.rejects(app.policyCache.batch('t1', [{ op: 'include-group', group: 'admins' } as unknown as Change]), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  t.equal(await app.policyCache.revision('t1'), 1, 'nothing written')
  t.same((await app.policyCache.changes('t1', { after: 1 })).entries, [])
})

test('the batch takes includes; a cycle in it names its change', async (t) => {
  const app = await buildApp(t)
  const ok = await post(app, '/batch', {
    tenant: 't1',
    changes: [
      ...LAYERED.map(({ op, ...fields }) => ({ operation: op, ...fields })),
      { operation: 'include-group', group: 'admins', includes: 'editors' },
      { operation: 'include-group', group: 'editors', includes: 'viewers' },
      { operation: 'exclude-group', group: 'editors', includes: 'auditors' }
    ]
  })
  t.equal(ok.status, 200)
  t.same(ok.body.effects.slice(-3), [true, true, false])
  t.equal(await app.policyCache.check('t1', 'ada', 'documents:read'), true)
  const cycle = await post(app, '/batch', {
    tenant: 't1',
    changes: [{ operation: 'include-group', group: 'viewers', includes: 'auditors' }, { operation: 'include-group', group: 'auditors', includes: 'admins' }]
  })
  t.equal(cycle.status, 409)
  t.match(cycle.body.message, /^changes\[1\]: Group "auditors" cannot include "admins" .* auditors → admins → editors → viewers → auditors/)
  const wrongField = await post(app, '/batch', { tenant: 't1', changes: [{ operation: 'assign-user', group: 'admins', includes: 'viewers' }] })
  t.equal(wrongField.status, 400, 'includes belongs to the inclusions only')
  t.equal(await app.policyCache.revision('t1'), 1)
})

test('views say why: the tenant lists inclusions, the user each grant with its chain, who follows inclusions', async (t) => {
  const app = await buildApp(t)
  await app.policyCache.batch('t1', [
    ...LAYERED,
    { op: 'include-group', group: 'admins', includes: 'editors' },
    { op: 'include-group', group: 'editors', includes: 'viewers' },
    { op: 'include-group', group: 'admins', includes: 'auditors' },
    { op: 'include-group', group: 'auditors', includes: 'viewers' }
  ])
  const tenant = (await get(app, '/tenants/t1')).body
  t.same(tenant.groups.map((g: { name: string, includes: string[] }) => [g.name, g.includes]), [['admins', ['auditors', 'editors']], ['auditors', ['viewers']], ['editors', ['viewers']], ['viewers', []]])

  t.same((await get(app, '/tenants/t1/users/ada')).body, {
    tenant: 't1',
    user: 'ada',
    revision: 1,
    groups: ['admins'],
    permissions: ['audit:read', 'documents:read', 'documents:write', 'users:*'],
    grants: [
      { permission: 'audit:read', chain: ['admins', 'auditors'] },
      // Two chains of the same length (through auditors and through editors): the first in name order.
      { permission: 'documents:read', chain: ['admins', 'auditors', 'viewers'] },
      { permission: 'documents:write', chain: ['admins', 'editors'] },
      { permission: 'users:*', chain: ['admins'] }
    ]
  })
  // A grant held directly and through an inclusion: the direct one, the shortest.
  await app.policyCache.assignUser('t1', 'viewers', 'ada')
  t.same((await app.policyCache.user('t1', 'ada')).grants.find((g) => g.permission === 'documents:read'), { permission: 'documents:read', chain: ['viewers'] })
  await app.policyCache.unassignUser('t1', 'viewers', 'ada')

  const who = (await get(app, '/tenants/t1/who?permission=documents:read')).body
  t.same(who.users, [
    { user: 'ada', groups: ['admins'], chains: [['admins', 'auditors', 'viewers']] },
    { user: 'aud', groups: ['auditors'], chains: [['auditors', 'viewers']] },
    { user: 'eve', groups: ['editors'], chains: [['editors', 'viewers']] },
    { user: 'vic', groups: ['viewers'], chains: [['viewers']] }
  ])
  t.same((await get(app, '/tenants/t1/who?permission=documents:write')).body.users.map((h: { user: string }) => h.user), ['ada', 'eve'])
  t.same((await get(app, '/tenants/t1/who?permission=documents:write&limit=1')).body.next !== null, true, 'paged as before')

  // Deleting a group in the middle removes its inclusions both ways: the chain through it is gone.
  await app.policyCache.deleteGroup('t1', 'editors')
  t.same((await get(app, '/tenants/t1/who?permission=documents:write')).body.users, [])
  t.same((await app.policyCache.tenant('t1')).groups.find((g) => g.name === 'admins')?.includes, ['auditors'])
})

test('the audit feed names the included group; the route hooks guard the new routes', async (t) => {
  const seen: string[] = []
  const app = await buildApp(t, {
    routeHooks: {
      onRequest: async (request: FastifyRequest, reply: FastifyReply) => {
        seen.push(request.url)
        if (request.headers.authorization !== 'Bearer admin') await reply.code(401).send({ statusCode: 401, code: 'HOST_UNAUTHORIZED', error: 'Unauthorized', message: 'admin token required' })
      }
    }
  })
  await app.policyCache.batch('t1', [{ op: 'create-group', group: 'a' }, { op: 'create-group', group: 'b' }])
  for (const url of ['/include-group', '/exclude-group']) {
    const denied = await app.inject({ method: 'POST', url, payload: { tenant: 't1', group: 'a', includes: 'b' } })
    t.equal(denied.statusCode, 401, url)
  }
  t.equal(await app.policyCache.revision('t1'), 1, 'nothing written')
  const allowed = await app.inject({ method: 'POST', url: '/include-group', payload: { tenant: 't1', group: 'a', includes: 'b' }, headers: { authorization: 'Bearer admin' } })
  t.equal(allowed.statusCode, 200)
  await app.policyCache.excludeGroup('t1', 'a', 'b', { actor: 'ops' })
  const feed = await app.inject({ method: 'GET', url: '/tenants/t1/changes?after=1', headers: { authorization: 'Bearer admin' } })
  t.same(feed.json().entries.map(({ committedAt: _at, origin: _origin, ...entry }: Record<string, unknown>) => entry), [
    { revision: 2, operation: 'include-group', group: 'a', includes: 'b', actor: null },
    { revision: 3, operation: 'exclude-group', group: 'a', includes: 'b', actor: 'ops' }
  ])
  t.same(seen.filter((url) => url.includes('clude')), ['/include-group', '/exclude-group', '/include-group'])
})
