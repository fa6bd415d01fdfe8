/**
 * Property-based fuzzing of every route's inputs (bodies, query strings, path params, headers):
 * arbitrary unicode (NUL, lone surrogates, invalid UTF-8), huge sizes, wrong types, nested objects,
 * `__proto__` / `constructor` keys, arrays. Every answer is 2xx or 4xx, never 5xx, and a rejected
 * request leaves the store exactly as it was. Bounded runs: the file takes seconds.
 */
import fc from 'fast-check'
import Fastify, { type FastifyInstance, type InjectOptions } from 'fastify'
import { test, type Test } from 'tap'
import { newMessageId, parseSecret, sign } from '../lib/broadcast/signature.js'
import policyCache, { createSqliteDb, KyselyPolicyStore } from '../lib/plugin.js'
import { SECRET, WRITE_BODY_FIELDS } from './helpers/app.js'
import { openStream } from './helpers/sse.js'

const RUNS = 120
const TENANTS = ['t1', 't2']

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code))
const controlChar = fc.integer({ min: 0, max: 0x1f }).map((code) => String.fromCharCode(code))
/** Strings a client might send: valid ids and permissions, near misses, arbitrary unicode, huge ones. */
const text = fc.oneof(
  fc.constantFrom('t1', 't2', 'g', 'editors', 'alice', 'documents:read', 'documents:*', '*', '', ' ', 'a'.repeat(128), 'a'.repeat(129),
    'x:'.repeat(200) + 'y', '../etc', 'a\u0000b', '\u202e', '__proto__', 'constructor', 'toString'),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.oneof(loneSurrogate, controlChar, fc.constantFrom('a', ':', '*', '.', '@', '-', '%', '&', '=', '/', '?', '#')), maxLength: 40 }),
  fc.string({ unit: 'binary-ascii', minLength: 200, maxLength: 5000 })
)
/** Any JSON-ish value: wrong types, nesting, arrays. */
const value = fc.oneof(
  { depthSize: 'small' },
  text,
  fc.integer(), fc.double(), fc.boolean(), fc.constant(null),
  fc.array(text, { maxLength: 3 }),
  fc.dictionary(text, text, { maxKeys: 3 }),
  fc.jsonValue({ maxDepth: 3 })
)
const key = fc.oneof(fc.constantFrom('tenant', 'group', 'permission', 'user', 'includes', 'minRevision', 'ifRevision', '__proto__', 'constructor', 'prototype'), text)

/** Valid values per field, so that many generated requests pass validation and reach the engine. */
const id = fc.oneof(fc.constantFrom('t1', 't2', 'g', 'alice'), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,20}$/), fc.constant('a'.repeat(128)))
const grant = fc.oneof(fc.constantFrom('documents:read', 'documents:*', '*'), fc.stringMatching(/^[a-z0-9._-]{1,8}(:[a-z0-9._-]{1,8}){0,3}(:\*)?$/))
/** Groups that exist in t1 (g, h, k: g includes h), so that inclusions are accepted, refused as cycles, or 404. */
const includes = fc.oneof({ weight: 3, arbitrary: fc.constantFrom('g', 'h', 'k') }, { weight: 1, arbitrary: id })
const VALID: Record<string, fc.Arbitrary<unknown>> = { tenant: id, group: fc.oneof(id, fc.constantFrom('g', 'h', 'k')), user: id, permission: grant, includes }
/** `null` five times out of six. */
const rarely = <T>(arbitrary: fc.Arbitrary<T>): fc.Arbitrary<T | null> =>
  fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary })
/** A route's own fields, mostly valid, sometimes anything; sometimes a field missing or an extra key. */
function shaped (fields: readonly string[]): fc.Arbitrary<string> {
  return fc.tuple(
    fc.tuple(...fields.map((field) => fc.oneof({ weight: 4, arbitrary: VALID[field] }, { weight: 1, arbitrary: value }))),
    rarely(fc.nat({ max: fields.length - 1 })),
    rarely(fc.tuple(key, value))
  ).map(([values, drop, extra]) => {
    const entries: Array<[string, unknown]> = fields.map((field, i) => [field, values[i]])
    if (drop !== null) entries.splice(drop, 1)
    if (extra !== null) entries.push(extra)
    // Built as text so `__proto__` / `constructor` really are keys of the JSON sent.
    return '{' + entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',') + '}'
  })
}
/** A raw JSON body: the route's shape, or anything at all. */
const anyBody = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  fc.constantFrom('{"__proto__":{"isAdmin":true},"tenant":"t1","group":"g"}', '{"constructor":{"prototype":{"x":1}},"tenant":"t1","group":"g"}',
    '{"tenant":"t1","group":"g"', 'null', '', '[]', '{"tenant":"t1","group":"g","group":"h"}', '\u0000', '{"tenant":"\\ud800","group":"g"}'),
  fc.string({ unit: 'binary', maxLength: 200 })
)
const jsonBody = (url: string): fc.Arbitrary<string> => fc.oneof({ weight: 3, arbitrary: shaped(WRITE_BODY_FIELDS[url]) }, { weight: 1, arbitrary: anyBody })
/** A path segment: encoded text, raw bytes as percent escapes (often invalid UTF-8), or unencoded. */
const segment = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('t1', 'alice', 'bob') },
  text.map((s) => { try { return encodeURIComponent(s) } catch { return 'x' } }),
  fc.uint8Array({ minLength: 1, maxLength: 12 }).map((bytes) => [...bytes].map((b) => '%' + b.toString(16).padStart(2, '0')).join('')),
  fc.constantFrom('t1', '%', '%zz', '..', '.', '%00', '%2F', 'a%2Fb', '%ED%A0%80')
)
/** A query string: the check's own fields (mostly valid), fields from `text`, repeated keys, raw escapes. */
const concrete = fc.oneof(fc.constantFrom('documents:read', 'documents:write'), fc.stringMatching(/^[a-z0-9._-]{1,8}(:[a-z0-9._-]{1,8}){0,3}$/))
const query = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.tuple(fc.oneof(id, text), fc.oneof(id, text), fc.oneof({ weight: 3, arbitrary: concrete }, { weight: 1, arbitrary: text }), rarely(fc.oneof(fc.nat().map(String), text))).map(([tenant, user, permission, minRevision]) => {
      const params = new URLSearchParams({ tenant, user, permission, ...(minRevision === null ? {} : { minRevision }) })
      try { return params.toString() } catch { return 'tenant=%ED%A0%80' }
    })
  },
  fc.array(fc.tuple(key, fc.oneof(text, fc.integer().map(String))), { maxLength: 6 })
    .map((pairs) => pairs.map(([k, v]) => { try { return `${encodeURIComponent(k)}=${encodeURIComponent(v)}` } catch { return 'x=%ED%A0%80' } }).join('&')),
  fc.tuple(segment, segment, segment).map(([t, u, p]) => `tenant=${t}&user=${u}&permission=${p}`),
  fc.constantFrom('tenant=t1&tenant=t2&user=alice&permission=documents:read', 'tenant=t1&user=alice&permission=documents:read&minRevision=1.5',
    'tenant=t1&user=alice&permission=documents:read&minRevision=99999999999999999999', 'tenant[]=t1', '%', '&&&', 'tenant=t1&user=alice&permission=a&minRevision=')
)

interface Harness {
  app: FastifyInstance
  /** Answers seen, by class: both must occur, or the generators miss the engine. */
  seen: { ok: number, rejected: number }
  store: KyselyPolicyStore
  /** The store's state of every tenant a request could touch (read from the database, not the cache). */
  fingerprint: (tenants: string[]) => Promise<string>
}

async function harness (t: Test): Promise<Harness> {
  const store = new KyselyPolicyStore({ db: createSqliteDb(':memory:'), ownsDb: true })
  const app = Fastify()
  await app.register(policyCache, {
    db: store,
    syncIntervalMs: 0,
    webhookSecret: SECRET,
    identify: (request) => {
      const tenant = request.headers['x-tenant']
      const user = request.headers['x-user']
      return typeof tenant === 'string' && typeof user === 'string' ? { tenant, user } : undefined
    }
  })
  app.get('/guarded/:id', { config: { policy: 'documents:read' } }, async () => ({ ok: true }))
  await app.ready()
  t.teardown(async () => {
    await app.close()
    await store.close()
  })
  await app.policyCache.createGroup('t1', 'g')
  await app.policyCache.addPermission('t1', 'g', 'documents:*')
  await app.policyCache.assignUser('t1', 'g', 'alice')
  await app.policyCache.batch('t1', [{ op: 'create-group', group: 'h' }, { op: 'create-group', group: 'k' }, { op: 'include-group', group: 'g', includes: 'h' }])
  const fingerprint = async (tenants: string[]): Promise<string> =>
    JSON.stringify(await Promise.all([...new Set(tenants)].map((tenant) => store.snapshot(tenant))))
  return { app, store, fingerprint, seen: { ok: 0, rejected: 0 } }
}

/** The tenants a body could name (any string value of its `tenant` key, when it parses). */
function tenantsIn (body: string): string[] {
  try {
    const parsed = JSON.parse(body) as { tenant?: unknown } | null
    return typeof parsed?.tenant === 'string' ? [parsed.tenant] : []
  } catch {
    return []
  }
}

async function expectNo5xx (h: Harness, request: InjectOptions, touched: string[]): Promise<boolean> {
  const tenants = [...TENANTS, ...touched]
  const before = await h.fingerprint(tenants)
  const res = await h.app.inject(request)
  if (res.statusCode >= 500) throw new Error(`${res.statusCode} for ${JSON.stringify(request).slice(0, 500)}: ${res.body.slice(0, 300)}`)
  if (res.statusCode < 200 || (res.statusCode >= 300 && res.statusCode < 400)) throw new Error(`unexpected ${res.statusCode}`)
  if (res.statusCode < 400) h.seen.ok++
  else h.seen.rejected++
  if (res.statusCode >= 400) {
    const after = await h.fingerprint(tenants)
    if (after !== before) throw new Error(`a rejected request (${res.statusCode}) wrote: ${JSON.stringify(request).slice(0, 300)}`)
    const body = res.json() as { statusCode?: unknown, code?: unknown, message?: unknown }
    // Fastify's own not-found reply (an empty path segment matches no route) has no code.
    const notFound = res.statusCode === 404 && /^Route .* not found$/.test(String(body.message))
    if (body.statusCode !== res.statusCode || (typeof body.code !== 'string' && !notFound)) throw new Error(`not Fastify's error shape: ${res.body.slice(0, 200)}`)
  }
  return true
}

const WRITES = Object.keys(WRITE_BODY_FIELDS)

/** Both outcomes well represented (expected: 10–30 % accepted), or the generators miss the engine. */
function mixed (h: Harness): boolean {
  const total = h.seen.ok + h.seen.rejected
  return h.seen.ok >= total * 0.04 && h.seen.rejected >= total * 0.2
}

test('fuzz: write and refresh bodies', async (t) => {
  const h = await harness(t)
  const request = fc.constantFrom(...WRITES).chain((url) => fc.tuple(fc.constant(url), jsonBody(url)))
  await fc.assert(fc.asyncProperty(request, fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain'),
    async ([url, body], type) => expectNo5xx(h, { method: 'POST', url, payload: body, headers: { 'content-type': type } }, tenantsIn(body))
  ), { numRuns: RUNS * 4 })
  // Huge bodies: Fastify's 413 before anything is parsed.
  await expectNo5xx(h, { method: 'POST', url: '/create-group', payload: JSON.stringify({ tenant: 't1', group: 'a'.repeat(2 * 1024 * 1024) }), headers: { 'content-type': 'application/json' } }, [])
  t.ok(mixed(h), `2xx/4xx: ${h.seen.ok}/${h.seen.rejected}; rejected ones wrote nothing`)
})

/** A batch's change: mostly valid (groups that may or may not exist, so some fail with a 404), sometimes anything. */
const batchChange = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.oneof(
      fc.record({ operation: fc.constantFrom('create-group', 'delete-group'), group: fc.constantFrom('g', 'h', 'x') }),
      fc.record({ operation: fc.constantFrom('add-permission', 'remove-permission'), group: fc.constantFrom('g', 'h', 'x'), permission: grant }),
      fc.record({ operation: fc.constantFrom('assign-user', 'unassign-user'), group: fc.constantFrom('g', 'h', 'x'), user: id }),
      fc.record({ operation: fc.constantFrom('include-group', 'include-group', 'exclude-group'), group: fc.constantFrom('g', 'h', 'x'), includes: fc.constantFrom('g', 'h', 'x') }))
  },
  { weight: 1, arbitrary: fc.oneof(value, fc.record({ operation: fc.oneof(fc.constantFrom('create-group', 'assign-user', 'include-group'), value), group: fc.oneof(id, value), permission: value, user: fc.oneof(id, value), includes: fc.oneof(id, value) }, { requiredKeys: [] })) }
)
/** Mostly well-formed batches, often creating their groups first (so most are accepted), sometimes conditional. */
const changeList = fc.tuple(fc.boolean(), fc.array(fc.oneof({ weight: 12, arbitrary: batchChange.filter((c) => typeof c === 'object' && c !== null && 'operation' in c && typeof c.operation === 'string') }, { weight: 1, arbitrary: batchChange }), { minLength: 0, maxLength: 8 }))
  .map(([create, list]) => create ? [{ operation: 'create-group', group: 'h' }, { operation: 'create-group', group: 'x' }, ...list] : list)
const batchBody = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      tenant: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...TENANTS) }, { weight: 1, arbitrary: value }),
      changes: fc.oneof({ weight: 12, arbitrary: changeList }, { weight: 1, arbitrary: value }),
      ifRevision: rarely(fc.oneof(fc.nat({ max: 6 }), value))
    }).map(({ ifRevision, ...b }) => JSON.stringify(ifRevision === null ? b : { ...b, ifRevision }))
  },
  { weight: 1, arbitrary: anyBody }
)

test('fuzz: batch bodies — a rejected batch writes nothing, an accepted one takes at most one revision', async (t) => {
  const h = await harness(t)
  await fc.assert(fc.asyncProperty(batchBody, async (body) => {
    const tenants = tenantsIn(body)
    const before = await h.store.revisions([...TENANTS, ...tenants])
    await expectNo5xx(h, { method: 'POST', url: '/batch', payload: body, headers: { 'content-type': 'application/json' } }, tenants)
    const after = await h.store.revisions([...TENANTS, ...tenants])
    for (const [tenant, { revision }] of after) {
      const moved = revision - (before.get(tenant)?.revision ?? 0)
      if (moved !== 0 && moved !== 1) throw new Error(`a batch moved ${tenant} by ${moved} revisions: ${body.slice(0, 300)}`)
    }
    return true
  }), { numRuns: RUNS * 3 })
  t.ok(mixed(h), `2xx/4xx: ${h.seen.ok}/${h.seen.rejected}; rejected ones wrote nothing`)
})

test('fuzz: check-access query strings', async (t) => {
  const h = await harness(t)
  await fc.assert(fc.asyncProperty(query, async (q) => expectNo5xx(h, { method: 'GET', url: `/check-access?${q}` }, [])), { numRuns: RUNS * 2 })
  t.ok(mixed(h), `2xx/4xx: ${h.seen.ok}/${h.seen.rejected}`)
})

test('fuzz: path params of the views and the guarded host route\'s identity headers', async (t) => {
  const h = await harness(t)
  await fc.assert(fc.asyncProperty(segment, segment, async (tenant, user) => {
    await expectNo5xx(h, { method: 'GET', url: `/tenants/${tenant}` }, [])
    await expectNo5xx(h, { method: 'GET', url: `/tenants/${tenant}/users/${user}` }, [])
    return true
  }), { numRuns: RUNS })
  const header = text.filter((s) => /^[\t\x20-\x7e\x80-\xff]*$/.test(s))
  await fc.assert(fc.asyncProperty(fc.option(header), fc.option(header), segment, async (tenant, user, id) => {
    const headers: Record<string, string> = {}
    if (tenant !== null) headers['x-tenant'] = tenant
    if (user !== null) headers['x-user'] = user
    return expectNo5xx(h, { method: 'GET', url: `/guarded/${id}`, headers }, [])
  }), { numRuns: RUNS })
  t.ok(mixed(h), `2xx/4xx: ${h.seen.ok}/${h.seen.rejected}`)
})

test('fuzz: the webhook, unsigned and signed', async (t) => {
  const h = await harness(t)
  const keys = [parseSecret(SECRET, 'webhookSecret')]
  // A carried change: none (an older sender), one that fits its operation, or arbitrary fields.
  const carried = fc.oneof(
    { weight: 3, arbitrary: fc.constant({}) },
    {
      weight: 3,
      arbitrary: fc.oneof(
        fc.record({ operation: fc.constantFrom('create-group', 'delete-group'), group: id }),
        fc.record({ operation: fc.constantFrom('add-permission', 'remove-permission'), group: id, permission: fc.constantFrom('doc:read', 'doc:*', '*') }),
        fc.record({ operation: fc.constantFrom('assign-user', 'unassign-user'), group: id, user: id }),
        fc.record({ operation: fc.constantFrom('include-group', 'exclude-group'), group: id, includes: id }))
    },
    { weight: 1, arbitrary: fc.record({ group: fc.oneof(id, value), permission: value, user: fc.oneof(id, value), includes: fc.oneof(id, value) }, { requiredKeys: [] }) },
    // A carried batch: valid changes, or anything.
    { weight: 2, arbitrary: fc.record({ batch: fc.oneof({ weight: 4, arbitrary: fc.array(batchChange, { maxLength: 4 }) }, { weight: 1, arbitrary: value }) }) })
  const notice = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        type: fc.oneof({ weight: 6, arbitrary: fc.constant('policy.changed') }, { weight: 1, arbitrary: value }),
        origin: fc.oneof({ weight: 6, arbitrary: id }, { weight: 1, arbitrary: value }),
        changes: fc.oneof(
          { weight: 6, arbitrary: fc.array(fc.record({ tenant: fc.oneof({ weight: 6, arbitrary: id }, { weight: 1, arbitrary: value }), revision: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 1e6 }) }, { weight: 1, arbitrary: value }), operation: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('assign-user', 'create-group') }, { weight: 1, arbitrary: value }) }, { requiredKeys: ['tenant', 'revision'] }).chain((entry) => carried.map((data) => ({ ...entry, ...data }))), { minLength: 1, maxLength: 4 }) },
          { weight: 1, arbitrary: value })
      }).map((n) => JSON.stringify(n))
    },
    { weight: 1, arbitrary: anyBody })
  await fc.assert(fc.asyncProperty(notice, fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }), async (body, signed) => {
    const id = newMessageId()
    const timestamp = Math.floor(Date.now() / 1000)
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (signed) {
      Object.assign(headers, { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': sign(keys, id, timestamp, body) })
    }
    return expectNo5xx(h, { method: 'POST', url: '/webhook/refresh', payload: body, headers }, [])
  }), { numRuns: RUNS * 2 })
  t.ok(mixed(h), `2xx/4xx: ${h.seen.ok}/${h.seen.rejected}; nothing written`)
})

/** A listing's query: mostly valid limit, cursor and minRevision (and permission for who), sometimes anything. */
const pageQuery = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      permission: fc.oneof({ weight: 4, arbitrary: grant }, { weight: 1, arbitrary: text }),
      limit: rarely(fc.oneof(fc.integer({ min: 1, max: 1000 }).map(String), fc.constantFrom('0', '1001', '1.5', '-1', '', '01'), text)),
      cursor: rarely(fc.oneof(fc.constantFrom('g', 'alice', 'documents:read', 'h').map((k) => Buffer.from(k).toString('base64url')), fc.constantFrom('!!', 'YWxpY2U=', 'YSBi', ''), text)),
      minRevision: rarely(fc.oneof(fc.nat({ max: 5 }).map(String), text))
    }).map(({ permission, ...page }) => {
      const params = new URLSearchParams({ permission })
      for (const [k, v] of Object.entries(page)) if (v !== null) params.set(k, v)
      try { return params.toString() } catch { return 'permission=%ED%A0%80' }
    })
  },
  fc.array(fc.tuple(fc.oneof(fc.constantFrom('limit', 'cursor', 'minRevision', 'permission'), key), fc.oneof(text, fc.integer().map(String))), { maxLength: 5 })
    .map((pairs) => pairs.map(([k, v]) => { try { return `${encodeURIComponent(k)}=${encodeURIComponent(v)}` } catch { return 'x=%ED%A0%80' } }).join('&'))
)

test('fuzz: the listings and the reverse lookup — paths and query strings', async (t) => {
  const h = await harness(t)
  const long = 't' + 'x'.repeat(127)
  await h.app.policyCache.createGroup(long, 'g')
  const tenant = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('t1', long) }, { weight: 1, arbitrary: segment })
  const group = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('g', 'h') }, { weight: 1, arbitrary: segment })
  const path = fc.tuple(tenant, group, fc.constantFrom('groups', 'users', 'permissions', 'who')).map(([t, g, kind]) =>
    kind === 'groups' ? `/tenants/${t}/groups` : kind === 'who' ? `/tenants/${t}/who` : `/tenants/${t}/groups/${g}/${kind}`)
  await fc.assert(fc.asyncProperty(path, pageQuery, async (url, q) => expectNo5xx(h, { method: 'GET', url: `${url}?${q}` }, [])), { numRuns: RUNS * 3 })
  t.ok(mixed(h), `2xx/4xx: ${h.seen.ok}/${h.seen.rejected}; nothing written`)
})

/** A batch check's body: mostly well-formed checks, sometimes anything. */
const checkBatchBody = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      tenant: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...TENANTS) }, { weight: 1, arbitrary: value }),
      checks: fc.oneof(
        { weight: 8, arbitrary: fc.array(fc.oneof({ weight: 8, arbitrary: fc.record({ user: id, permission: concrete }) }, { weight: 1, arbitrary: fc.record({ user: fc.oneof(id, value), permission: fc.oneof(grant, value) }, { requiredKeys: [] }) }, { weight: 1, arbitrary: value }), { maxLength: 6 }) },
        { weight: 1, arbitrary: value }),
      minRevision: rarely(fc.oneof(fc.nat({ max: 6 }), value))
    }).map(({ minRevision, ...b }) => JSON.stringify(minRevision === null ? b : { ...b, minRevision }))
  },
  { weight: 1, arbitrary: anyBody }
)

test('fuzz: check-batch bodies', async (t) => {
  const h = await harness(t)
  await fc.assert(fc.asyncProperty(checkBatchBody, async (body) =>
    expectNo5xx(h, { method: 'POST', url: '/check-batch', payload: body, headers: { 'content-type': 'application/json' } }, tenantsIn(body))
  ), { numRuns: RUNS * 2 })
  t.ok(mixed(h), `2xx/4xx: ${h.seen.ok}/${h.seen.rejected}; nothing written`)
})

/** The audit feed's query: mostly `after` and `limit` in or near range, sometimes anything, unknown keys, repeats. */
const feedQuery = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.tuple(rarely(fc.oneof(fc.nat({ max: 12 }).map(String), text)), fc.oneof(fc.constant(null), fc.integer({ min: -1, max: 1001 }).map(String), text))
      .map(([after, limit]) => {
        const params = new URLSearchParams({ ...(after === null ? {} : { after }), ...(limit === null ? {} : { limit }) })
        try { return params.toString() } catch { return 'after=%ED%A0%80' }
      })
  },
  fc.array(fc.tuple(fc.oneof(fc.constantFrom('after', 'limit', 'since', '__proto__'), key), fc.oneof(text, fc.integer().map(String))), { maxLength: 4 })
    .map((pairs) => pairs.map(([k, v]) => { try { return `${encodeURIComponent(k)}=${encodeURIComponent(v)}` } catch { return 'x=%ED%A0%80' } }).join('&')),
  fc.constantFrom('after=1.5', 'after=99999999999999999999', 'limit=1e3', 'limit=0x10', 'after[]=1', 'after=1&after=2', '%', '&&&', 'after=', 'limit=')
)

test('fuzz: the audit feed\'s path and query, and the actor of writes made with an identity', async (t) => {
  const h = await harness(t)
  await fc.assert(fc.asyncProperty(segment, feedQuery, async (tenant, q) => {
    return expectNo5xx(h, { method: 'GET', url: `/tenants/${tenant}/changes?${q}` }, [])
  }), { numRuns: RUNS * 2 })
  t.ok(mixed(h), `feed 2xx/4xx: ${h.seen.ok}/${h.seen.rejected}`)

  // Writes through the routes record the identity's user as the actor: any header value a client can send.
  const writes = { ok: 0, rejected: 0 }
  const header = fc.oneof(id, text.filter((s) => /^[\t\x20-\x7e\x80-\xff]*$/.test(s)), fc.constant('a'.repeat(255)), fc.constant('a'.repeat(256)))
  await fc.assert(fc.asyncProperty(header, fc.constantFrom('g', 'h'), async (user, group) => {
    const body = JSON.stringify({ tenant: 't2', group })
    const before = (await h.store.revisions(['t2'])).get('t2')?.revision ?? 0
    await expectNo5xx(h, { method: 'POST', url: '/create-group', payload: body, headers: { 'content-type': 'application/json', 'x-tenant': 't2', 'x-user': user } }, ['t2'])
    const after = (await h.store.revisions(['t2'])).get('t2')?.revision ?? 0
    if (after > before) {
      const [entry] = (await h.store.changes('t2', after - 1, 1)).entries
      if (entry?.actor !== user) throw new Error(`logged actor ${JSON.stringify(entry?.actor)}, the identity was ${JSON.stringify(user)}`)
      writes.ok++
    } else {
      writes.rejected++
    }
    // Undo, so that the next create-group changes something again.
    await h.app.policyCache.deleteGroup('t2', group)
    return true
  }), { numRuns: RUNS })
  t.ok(writes.ok > 0 && writes.rejected > 0, `writes logged with their actor / refused: ${writes.ok}/${writes.rejected}`)
})

/** A document group: mostly valid (small domains, so imports overlap), sometimes a near miss or anything. */
const documentGroup = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      name: fc.constantFrom('g', 'h', 'k'),
      permissions: fc.uniqueArray(fc.oneof({ weight: 6, arbitrary: fc.constantFrom('documents:read', 'documents:*', '*') }, { weight: 1, arbitrary: fc.oneof(grant, value) }), { maxLength: 3 }),
      users: fc.uniqueArray(fc.oneof({ weight: 6, arbitrary: fc.constantFrom('alice', 'bob') }, { weight: 1, arbitrary: fc.oneof(id, value) }), { maxLength: 3 })
    })
  },
  { weight: 1, arbitrary: fc.record({ name: fc.oneof(id, value), permissions: fc.oneof(fc.array(grant, { maxLength: 2 }), value), users: value }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: value }
)
/** An import's body: mostly an export document (names sometimes repeated), with `ifRevision` sometimes; sometimes anything. */
const importBody = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(fc.array(documentGroup, { maxLength: 4 }), rarely(fc.oneof(fc.nat({ max: 6 }), value)), rarely(fc.oneof(fc.constantFrom(2, '1'), value)), rarely(fc.tuple(key, value)))
      .map(([groups, ifRevision, format, extra]) => {
        const entries: Array<[string, unknown]> = [['revision', 7], ['groups', groups], ['format', format ?? 1]]
        if (ifRevision !== null) entries.push(['ifRevision', ifRevision])
        if (extra !== null) entries.push(extra)
        return '{' + entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',') + '}'
      })
  },
  { weight: 1, arbitrary: anyBody }
)

test('fuzz: the tenant lifecycle — imports, deletions, exports and the tenant listing', async (t) => {
  const h = await harness(t)
  const long = 't' + 'x'.repeat(127)
  const tenant = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('t1', 't2', long) }, { weight: 1, arbitrary: segment })
  // The tenant a path names, when it decodes to a tenant id (nothing else can be written).
  const touched = (target: string): string[] => {
    try {
      return [decodeURIComponent(target)].filter((name) => /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/.test(name))
    } catch {
      return []
    }
  }
  const revision = async (target: string) => (await h.store.revisions(touched(target))).get(decodeURIComponent(target))?.revision ?? 0
  const request = fc.oneof(
    { weight: 6, arbitrary: fc.tuple(tenant, importBody).map(([target, body]) => ({ kind: 'import' as const, target, body })) },
    {
      weight: 2,
      arbitrary: fc.tuple(tenant, rarely(fc.oneof(fc.nat({ max: 6 }).map((n) => `ifRevision=${n}`), fc.constantFrom('ifRevision=1.5', 'ifRevision=-1', 'ifRevision=', 'other=1', 'ifRevision=1&ifRevision=2'), text.map((s) => { try { return encodeURIComponent(s) } catch { return '%' } }))))
        .map(([target, q]) => ({ kind: 'delete' as const, target, body: q ?? '' }))
    },
    { weight: 1, arbitrary: tenant.map((target) => ({ kind: 'export' as const, target, body: '' })) },
    { weight: 1, arbitrary: pageQuery.map((q) => ({ kind: 'list' as const, target: '', body: q.replace(/(^|&)permission=[^&]*/, '') })) }
  )
  await fc.assert(fc.asyncProperty(request, async ({ kind, target, body }) => {
    const before = touched(target).length === 0 ? 0 : await revision(target)
    if (kind === 'import') {
      await expectNo5xx(h, { method: 'PUT', url: `/tenants/${target}/import`, payload: body, headers: { 'content-type': 'application/json' } }, touched(target))
    } else if (kind === 'delete') {
      await expectNo5xx(h, { method: 'DELETE', url: `/tenants/${target}?${body}` }, touched(target))
    } else {
      await expectNo5xx(h, { method: 'GET', url: kind === 'export' ? `/tenants/${target}/export` : `/tenants?${body}` }, [])
    }
    const moved = touched(target).length === 0 ? 0 : await revision(target) - before
    if (moved !== 0 && moved !== 1) throw new Error(`${kind} moved ${target} by ${moved} revisions: ${body.slice(0, 300)}`)
    return true
  }), { numRuns: RUNS * 3 })
  t.ok(mixed(h), `2xx/4xx: ${h.seen.ok}/${h.seen.rejected}; a rejected request wrote nothing, an accepted one took at most one revision`)
})

test('fuzz: the watch stream\'s path, query and Last-Event-ID, over real HTTP (a valid request streams until closed)', async (t) => {
  const app = Fastify()
  await app.register(policyCache, { syncIntervalMs: 0, watch: { maxWatchers: 100000 } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  await app.policyCache.createGroup('t1', 'g')
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const watchQuery = fc.oneof({ weight: 3, arbitrary: rarely(fc.constantFrom('0', '1')).map((after) => after === null ? '' : `after=${after}`) }, feedQuery)
  const lastEventId = rarely(fc.oneof(fc.constantFrom('0', '1', '2', '01', '-1', ''), text.filter((s) => /^[\x20-\x7e]*$/.test(s))))
  const seen = { ok: 0, rejected: 0 }
  await fc.assert(fc.asyncProperty(segment, watchQuery, lastEventId, async (tenant, q, id) => {
    const stream = await openStream(`${base}/tenants/${tenant}/watch?${q}`, id === null ? {} : { 'last-event-id': id })
    const status = stream.response.statusCode ?? 0
    stream.close()
    if (status >= 500 || status < 200 || (status >= 300 && status < 400)) throw new Error(`${status} for /tenants/${tenant}/watch?${q} (Last-Event-ID ${JSON.stringify(id)})`)
    if (status === 200) seen.ok++
    else seen.rejected++
    return true
  }), { numRuns: RUNS, seed: 20261202 })
  t.ok(seen.ok > 0 && seen.rejected > 0, `streams opened / refused: ${seen.ok}/${seen.rejected}`)
  t.equal(await app.policyCache.revision('t1'), 1, 'nothing written')
})
