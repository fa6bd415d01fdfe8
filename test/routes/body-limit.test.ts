/**
 * The policy routes' body limit (`policyBodyLimit`, default 4 KiB): a valid body is under 1 KiB, so
 * a large one — a deeply nested JSON document costs the event loop time to parse — is refused with a
 * coded 413 before it is parsed, and nothing is written.
 */
import { test } from 'tap'
import { DEFAULTS } from '../../lib/defaults.js'
import { buildApp, WRITE_BODY_FIELDS } from '../helpers/app.js'

/** A JSON document just under 1 MiB (Fastify's default limit): arrays nested half a million deep. */
const nested = '['.repeat(512 * 1024 - 1) + ']'.repeat(512 * 1024 - 1)

test('a nested 1 MiB body answers 413 on every policy route, nothing written', async (t) => {
  const app = await buildApp(t)
  for (const url of Object.keys(WRITE_BODY_FIELDS)) {
    const res = await app.inject({ method: 'POST', url, payload: nested, headers: { 'content-type': 'application/json' } })
    t.equal(res.statusCode, 413, url)
    t.match(res.json(), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' }, `${url}: coded`)
  }
  t.same(await app.policyCache.tenant('t1'), { tenant: 't1', revision: 0, groups: [] }, 'nothing written')
})

test('the largest valid body fits the default limit', async (t) => {
  t.equal(DEFAULTS.policyBodyLimit, 4096)
  const app = await buildApp(t)
  const id = (c: string) => c + 'x'.repeat(127)
  const permission = 'p'.repeat(256)
  await app.policyCache.createGroup(id('t'), id('g'))
  const body = JSON.stringify({ tenant: id('t'), group: id('g'), permission })
  t.ok(body.length < 1024, `${body.length} bytes`)
  const res = await app.inject({ method: 'POST', url: '/add-permission', payload: body, headers: { 'content-type': 'application/json' } })
  t.equal(res.statusCode, 200)
})

test('policyBodyLimit sets the limit: one byte over answers 413, at the limit the body is read', async (t) => {
  const app = await buildApp(t, { policyBodyLimit: 1024 })
  const body = (length: number) => {
    const start = JSON.stringify({ tenant: 't1', group: '' })
    return JSON.stringify({ tenant: 't1', group: 'g'.repeat(length - start.length) })
  }
  const at = await app.inject({ method: 'POST', url: '/create-group', payload: body(1024), headers: { 'content-type': 'application/json' } })
  t.equal(at.statusCode, 400, 'at the limit: read, then refused by the schema (the id is too long)')
  t.equal(at.json().code, 'FST_ERR_VALIDATION')
  const over = await app.inject({ method: 'POST', url: '/create-group', payload: body(1025), headers: { 'content-type': 'application/json' } })
  t.equal(over.statusCode, 413)
  t.equal(over.json().code, 'FST_ERR_CTP_BODY_TOO_LARGE')
})
