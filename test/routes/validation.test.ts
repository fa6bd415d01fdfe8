import { test } from 'tap'
import { buildApp, get } from '../helpers/app.js'

const long = 'a'.repeat(200)

/** Requests that must be refused with a 4xx and a code, writing nothing. */
const badWrites: Array<[string, string, unknown]> = [
  ['missing field', '/create-group', { tenant: 't1' }],
  ['extra field', '/create-group', { tenant: 't1', group: 'g', admin: true }],
  ['number instead of string', '/create-group', { tenant: 123, group: 'g' }],
  ['null', '/create-group', { tenant: null, group: 'g' }],
  ['array body', '/create-group', [{ tenant: 't1', group: 'g' }]],
  ['path traversal id', '/create-group', { tenant: '../x', group: 'g' }],
  ['slash in id', '/create-group', { tenant: 't1', group: 'a/b' }],
  ['NUL in id', '/create-group', { tenant: 't1\u0000', group: 'g' }],
  ['200-char id', '/create-group', { tenant: long, group: 'g' }],
  ['empty id', '/create-group', { tenant: '', group: 'g' }],
  ['leading dot id', '/create-group', { tenant: '.hidden', group: 'g' }],
  ['unicode id', '/create-group', { tenant: 'tënant', group: 'g' }],
  ['empty permission segment', '/add-permission', { tenant: 't1', group: 'g', permission: 'a::b' }],
  ['wildcard not last', '/add-permission', { tenant: 't1', group: 'g', permission: '*:read' }],
  ['partial wildcard', '/add-permission', { tenant: 't1', group: 'g', permission: 'doc*' }],
  ['permission too long', '/add-permission', { tenant: 't1', group: 'g', permission: 'a'.repeat(257) }],
  ['space in user', '/assign-user', { tenant: 't1', group: 'g', user: 'al ice' }],
  ['__proto__ payload', '/create-group', JSON.parse('{"tenant":"t1","group":"g","__proto__":{"admin":true}}')],
  ['refresh with extra field', '/refresh-tenant', { tenant: 't1', x: 1 }]
]

test('bad write bodies → 4xx with a code, nothing written', async (t) => {
  const app = await buildApp(t)
  await app.policyCache.createGroup('t1', 'g')
  for (const [name, url, body] of badWrites) {
    const res = await app.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
    t.ok(res.statusCode >= 400 && res.statusCode < 500, `${name}: ${res.statusCode}`)
    t.match(res.json(), { statusCode: res.statusCode, code: /^FST_/ }, `${name}: coded error`)
  }
  await app.policyCache.refresh('t1')
  t.same(await app.policyCache.tenant('t1'), { tenant: 't1', revision: 1, groups: [{ name: 'g', permissions: [], users: [], includes: [] }] }, 'nothing written')
})

test('malformed JSON, wrong content type and oversized bodies are refused', async (t) => {
  const app = await buildApp(t)
  const malformed = await app.inject({ method: 'POST', url: '/create-group', payload: '{"tenant":"t1",', headers: { 'content-type': 'application/json' } })
  t.equal(malformed.statusCode, 400)
  t.equal(malformed.json().code, 'FST_ERR_CTP_INVALID_JSON_BODY')
  const form = await app.inject({ method: 'POST', url: '/create-group', payload: 'tenant=t1&group=g', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(form.statusCode, 415)
  const huge = await app.inject({ method: 'POST', url: '/create-group', payload: JSON.stringify({ tenant: 't1', group: 'g', pad: 'x'.repeat(2 * 1024 * 1024) }), headers: { 'content-type': 'application/json' } })
  t.equal(huge.statusCode, 413)
  const proto = await app.inject({ method: 'POST', url: '/create-group', payload: '{"tenant":"t1","group":"g","constructor":{"prototype":{"x":1}}}', headers: { 'content-type': 'application/json' } })
  t.equal(proto.statusCode, 400)
  t.equal(await app.policyCache.revision('t1'), 0)
})

test('bad checks → 400 with a code', async (t) => {
  const app = await buildApp(t)
  for (const query of [
    'tenant=t1&user=alice',
    'tenant=t1&user=alice&permission=documents:*',
    'tenant=t1&user=alice&permission=*',
    'tenant=../x&user=alice&permission=a',
    `tenant=t1&user=${long}&permission=a`,
    'tenant=t1&user=alice&permission=a&minRevision=-1',
    'tenant=t1&user=alice&permission=a&minRevision=1.5',
    'tenant=t1&user=alice&permission=a&minRevision=abc',
    'tenant=t1&user=alice&permission=a&extra=1',
    'tenant=t1%00&user=alice&permission=a'
  ]) {
    const res = await get(app, `/check-access?${query}`)
    t.equal(res.status, 400, query)
    t.match(res.body, { code: /^FST_/ }, query)
  }
  t.equal((await get(app, '/tenants/..%2Fx')).status, 400)
  t.equal((await get(app, '/tenants/t1/users/a%20b')).status, 400)
})
