import Fastify, { type FastifyInstance } from 'fastify'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { test } from 'tap'
import { decodeEntry, type NoticeChange, type NoticeReply, type ReceivedNotice } from '../../lib/broadcast/notice.js'
import webhookRoutes, { ReplayGuard } from '../../lib/broadcast/receiver.js'
import { newMessageId, parseSecret, sign } from '../../lib/broadcast/signature.js'

// A full garbage collection on demand, for measuring what stays on the heap (not timing).
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const key = parseSecret('receiver-test-secret-0123456789', 'webhookSecret')
const otherKey = parseSecret('a-different-secret-0123456789', 'webhookSecret')

function notice (overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'policy.changed', origin: 'server-a', changes: [{ tenant: 't1', revision: 3, operation: 'assign-user' }], ...overrides }
}

interface SendOptions {
  id?: string
  timestamp?: number
  keys?: Buffer[]
  headers?: Record<string, string | undefined>
}

/** POSTs `payload` to the app's receiver, signed with `options.keys` (default the test key). */
function signedPost (app: FastifyInstance, payload: string | Buffer, options: SendOptions = {}) {
  const id = options.id ?? newMessageId()
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000)
  const headers = Object.entries({
    'content-type': 'application/json',
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': sign(options.keys ?? [key], id, timestamp, payload),
    ...options.headers
  }).filter((entry): entry is [string, string] => entry[1] !== undefined)
  return app.inject({ method: 'POST', url: '/webhook/refresh', headers: Object.fromEntries(headers), payload })
}

async function build (t: { teardown: (fn: () => unknown) => void }, handle?: (notice: ReceivedNotice) => Promise<NoticeReply['revisions']>, setup?: (app: FastifyInstance) => void, replays?: ReplayGuard) {
  const calls: ReceivedNotice[] = []
  const app = Fastify()
  setup?.(app)
  await app.register(webhookRoutes, {
    keys: [key],
    serverId: 'server-b',
    replays,
    handleNotice: async (notice) => {
      calls.push(notice)
      return handle === undefined ? Object.fromEntries(notice.entries.map((e) => [e.tenant, e.revision])) : handle(notice)
    }
  })
  t.teardown(() => app.close())

  const send = (payload: string | Buffer, options?: SendOptions) => signedPost(app, payload, options)
  return { app, calls, send, sendJson: (body: unknown, options?: SendOptions) => send(JSON.stringify(body), options) }
}

test('a valid notice is handled and answered with the receiver\'s revisions', async (t) => {
  const { calls, sendJson } = await build(t)
  const res = await sendJson(notice())
  t.equal(res.statusCode, 200)
  t.same(res.json(), { serverId: 'server-b', revisions: { t1: 3 } })
  t.equal(calls.length, 1)
  t.same(calls[0], { origin: 'server-a', entries: [{ tenant: 't1', revision: 3, carried: undefined }] }, 'handed over decoded')
})

test('null revisions (uncached tenants) are serialized', async (t) => {
  const { sendJson } = await build(t, async () => ({ t1: null, t2: 7 }))
  const res = await sendJson(notice({ changes: [{ tenant: 't1', revision: 1 }, { tenant: 't2', revision: 7 }] }))
  t.equal(res.statusCode, 200)
  t.same(res.json(), { serverId: 'server-b', revisions: { t1: null, t2: 7 } })
})

test('every authentication failure gets one identical 401', async (t) => {
  const { calls, send, sendJson, app } = await build(t)
  const payload = JSON.stringify(notice())
  const now = Math.floor(Date.now() / 1000)
  const failures = {
    'wrong key': await send(payload, { keys: [otherKey] }),
    'tampered body': await send(payload, { headers: { 'webhook-signature': sign([key], 'msg_x', now, payload.replace('3', '4')), 'webhook-id': 'msg_x', 'webhook-timestamp': String(now) } }),
    'stale timestamp': await sendJson(notice(), { timestamp: now - 301 }),
    // Far enough ahead for however long the requests above took; the ±300 s edge is signature.test.ts's.
    'future timestamp': await sendJson(notice(), { timestamp: now + 600 }),
    'bad id': await sendJson(notice(), { id: 'msg.bad id' }),
    'non-canonical timestamp': await send(payload, { headers: { 'webhook-timestamp': `+${now}` } }),
    'only v2 entries': await send(payload, { headers: { 'webhook-signature': 'v2,AAAA' } }),
    'missing id': await send(payload, { headers: { 'webhook-id': undefined } }),
    'missing timestamp': await send(payload, { headers: { 'webhook-timestamp': undefined } }),
    'missing signature': await send(payload, { headers: { 'webhook-signature': undefined } }),
    'no body at all': await app.inject({ method: 'POST', url: '/webhook/refresh' })
  }
  const expected = { statusCode: 401, code: 'FST_POLICY_CACHE_UNAUTHORIZED', error: 'Unauthorized', message: 'Webhook authentication failed' }
  for (const [name, res] of Object.entries(failures)) {
    t.equal(res.statusCode, 401, name)
    t.same(res.json(), expected, name)
  }
  t.equal(calls.length, 0, 'handleNotice never called')
})

test('a replayed id answers 200 saying it is a duplicate and is not handled again', async (t) => {
  let revision = 3
  const { calls, sendJson } = await build(t, async () => ({ t1: revision++ }))
  const id = newMessageId()
  const first = await sendJson(notice(), { id })
  const replay = await sendJson(notice(), { id, timestamp: Math.floor(Date.now() / 1000) + 1 })
  t.equal(first.statusCode, 200)
  t.same(first.json(), { serverId: 'server-b', revisions: { t1: 3 } })
  t.equal(replay.statusCode, 200)
  t.same(replay.json(), { serverId: 'server-b', revisions: {}, duplicate: true }, 'the reply shape, nothing done again')
  t.equal(calls.length, 1)
  const fresh = await sendJson(notice())
  t.same(fresh.json(), { serverId: 'server-b', revisions: { t1: 4 } }, 'a new id is handled')
  t.equal(calls.length, 2)
})

test('a replayed id is looked up only after the signature holds: an unsigned or forged replay is a 401', async (t) => {
  const { calls, send, sendJson } = await build(t, async () => ({ t1: 3 }))
  const id = newMessageId()
  const payload = JSON.stringify(notice())
  t.equal((await send(payload, { id })).statusCode, 200, 'the first delivery')

  const now = Math.floor(Date.now() / 1000)
  const replays = {
    'no signature': await send(payload, { id, headers: { 'webhook-signature': undefined } }),
    'another key': await send(payload, { id, keys: [otherKey] }),
    'malformed v1 entries': await send(payload, { id, headers: { 'webhook-signature': 'v1, v1,AAAA v1,!!' } }),
    'the first signature, a tampered body': await send(payload.replace('"revision":3', '"revision":4'), { id, timestamp: now, headers: { 'webhook-signature': sign([key], id, now, payload) } }),
    'the first signature, stale': await sendJson(notice(), { id, timestamp: now - 301 }),
    'no timestamp': await send(payload, { id, headers: { 'webhook-timestamp': undefined } })
  }
  for (const [name, res] of Object.entries(replays)) {
    t.equal(res.statusCode, 401, name)
    t.same(res.json(), { statusCode: 401, code: 'FST_POLICY_CACHE_UNAUTHORIZED', error: 'Unauthorized', message: 'Webhook authentication failed' }, `${name}: the 401 every authentication failure gets, not the first reply`)
  }
  t.equal(calls.length, 1)
  t.same((await send(payload, { id })).json(), { serverId: 'server-b', revisions: {}, duplicate: true }, 'a correctly signed replay is a duplicate')
})

test('a replay that arrives while the first delivery is handled waits for it', async (t) => {
  let entered!: () => void
  const handling = new Promise<void>((resolve) => { entered = resolve })
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  let arrived!: () => void
  const replayArrived = new Promise<void>((resolve) => { arrived = resolve })
  const events: string[] = []
  const { calls, sendJson } = await build(t, async () => {
    entered()
    await gate
    events.push('first handled')
    return { t1: 3 }
  }, (app) => {
    // The last hook before the route handler: the second verified request with the id is the replay.
    let verified = 0
    app.addHook('preHandler', async () => { if (++verified === 2) arrived() })
  })
  const id = newMessageId()
  const first = sendJson(notice(), { id })
  await handling
  const replay = sendJson(notice(), { id }).then((res) => {
    events.push('replay answered')
    return res
  })
  await replayArrived
  // One turn of the event loop: the handler runs up to its first await, and a replay that did not
  // wait would have answered by now.
  await new Promise((resolve) => setImmediate(resolve))
  t.same(events, [], 'the replay has not answered while the first delivery is handled')
  release()
  t.same((await replay).json(), { serverId: 'server-b', revisions: { t1: 3 } }, 'the first delivery\'s reply')
  t.same(events, ['first handled', 'replay answered'])
  t.equal((await first).statusCode, 200)
  t.equal(calls.length, 1)
})

test('3000 notices naming 50 junk tenants each: the replay cache keeps their ids, not their replies', async (t) => {
  const replays = new ReplayGuard()
  // What a receiver answers for tenants it does not cache: one null each.
  const { calls, sendJson } = await build(t, async (received) => Object.fromEntries(received.entries.map((e) => [e.tenant, null])), undefined, replays)
  const ids = Array.from({ length: 3000 }, () => newMessageId())
  const heapAfterGc = (): number => { gc(); return process.memoryUsage().heapUsed }
  const before = heapAfterGc()
  for (const [n, id] of ids.entries()) {
    const changes = Array.from({ length: 50 }, (_, i) => ({ tenant: `junk-${n}-${i}`, revision: 1 }))
    const res = await sendJson(notice({ changes }), { id })
    if (res.statusCode !== 200) t.fail(`notice ${n}: ${res.statusCode}`)
  }
  t.equal(calls.length, 3000)
  calls.length = 0 // the test's own record of the notices
  const grown = heapAfterGc() - before
  t.same(replays.size, { handled: 3000, inFlight: 0 }, 'one entry per id')
  // Keeping the 150 000 replies (a null per tenant), as the cache did, grew it by ~19 MiB here.
  t.ok(grown < 8 * 1024 * 1024, `the heap grew by ${(grown / 1024 / 1024).toFixed(1)} MiB`)
  t.same((await sendJson(notice(), { id: ids[0] })).json(), { serverId: 'server-b', revisions: {}, duplicate: true }, 'the oldest id is still known')
})

test('the replay cache is bounded: past maxIds the oldest ids are forgotten', async (t) => {
  const replays = new ReplayGuard({ maxIds: 3 })
  const { calls, sendJson } = await build(t, undefined, undefined, replays)
  const ids = [newMessageId(), newMessageId(), newMessageId(), newMessageId()]
  for (const id of ids) await sendJson(notice(), { id })
  t.same(replays.size, { handled: 3, inFlight: 0 })
  t.same((await sendJson(notice(), { id: ids[3] })).json(), { serverId: 'server-b', revisions: {}, duplicate: true })
  t.same((await sendJson(notice(), { id: ids[0] })).json(), { serverId: 'server-b', revisions: { t1: 3 } }, 'the oldest was forgotten: handled again (harmless: notices are idempotent)')
  t.equal(calls.length, 5)
})

test('an announcement (no changes) is answered, and every notice from a peer tells onContact who it is', async (t) => {
  const contacts: Array<[string, string | undefined]> = []
  const app = Fastify()
  await app.register(webhookRoutes, {
    keys: [key],
    serverId: 'server-b',
    handleNotice: async (received) => Object.fromEntries(received.entries.map((e) => [e.tenant, e.revision])),
    onContact: (origin, url) => { contacts.push([origin, url]) }
  })
  t.teardown(() => app.close())
  const send = (body: unknown) => signedPost(app, JSON.stringify(body))
  const announced = await send(notice({ changes: [], url: 'http://10.0.0.1:3000' }))
  t.equal(announced.statusCode, 200)
  t.same(announced.json(), { serverId: 'server-b', revisions: {} })
  t.equal((await send(notice())).statusCode, 200)
  t.equal((await send(notice({ origin: 'server-b' }))).statusCode, 200)
  t.same(contacts, [['server-a', 'http://10.0.0.1:3000'], ['server-a', undefined]], 'not for its own origin')
})

test('a failed handling forgets the id so the retry is handled', async (t) => {
  let fail = true
  const { calls, sendJson } = await build(t, async () => {
    if (fail) throw new Error('database down')
    return { t1: 3 }
  })
  const id = newMessageId()
  t.equal((await sendJson(notice(), { id })).statusCode, 500)
  fail = false
  const retry = await sendJson(notice(), { id })
  t.equal(retry.statusCode, 200)
  t.same(retry.json(), { serverId: 'server-b', revisions: { t1: 3 } })
  t.equal(calls.length, 2)
})

test('a notice from its own origin is ignored', async (t) => {
  const { calls, sendJson } = await build(t)
  const res = await sendJson(notice({ origin: 'server-b' }))
  t.equal(res.statusCode, 200)
  t.same(res.json(), { serverId: 'server-b', revisions: {} })
  t.equal(calls.length, 0)
})

test('a notice carrying this instance\'s own serverId is a warning naming it', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  await app.register(webhookRoutes, { keys: [key], serverId: 'server-b', handleNotice: async () => ({}) })
  t.teardown(() => app.close())
  const payload = JSON.stringify(notice({ origin: 'server-b' }))
  const res = await signedPost(app, payload)
  t.equal(res.statusCode, 200)
  t.match(lines, [{ level: 40, origin: 'server-b', msg: 'policy-cache: ignored a notice carrying this instance\'s own serverId; is SERVER_ID unique?' }])
  t.equal(lines.length, 1)
})

test('schema violations are 400 with a code', async (t) => {
  const { calls, sendJson } = await build(t)
  const change = { tenant: 't1', revision: 3 }
  const cases: Record<string, unknown> = {
    'wrong type': notice({ type: 'policy.deleted' }),
    'missing type': { origin: 'server-a', changes: [change] },
    'missing origin': { type: 'policy.changed', changes: [change] },
    'empty origin': notice({ origin: '' }),
    'origin with spaces': notice({ origin: 'server a' }),
    'origin too long': notice({ origin: 'a'.repeat(129) }),
    'missing changes': { type: 'policy.changed', origin: 'server-a' },
    'url not a string': notice({ url: 42 }),
    'too many changes': notice({ changes: Array.from({ length: 1001 }, (_, i) => ({ tenant: `t${i}`, revision: 1 })) }),
    'bad tenant': notice({ changes: [{ tenant: '-t1', revision: 3 }] }),
    'missing tenant': notice({ changes: [{ revision: 3 }] }),
    'revision 0': notice({ changes: [{ tenant: 't1', revision: 0 }] }),
    'fractional revision': notice({ changes: [{ tenant: 't1', revision: 1.5 }] }),
    'revision as string': notice({ changes: [{ tenant: 't1', revision: '3' }] }),
    'unsafe revision': notice({ changes: [{ tenant: 't1', revision: 2 ** 53 }] }),
    'unknown operation': notice({ changes: [{ tenant: 't1', revision: 3, operation: 'drop-table' }] }),
    'change not an object': notice({ changes: ['t1'] }),
    'body is an array': [notice()],
    'body is a string': 'policy.changed'
  }
  for (const [name, body] of Object.entries(cases)) {
    const res = await sendJson(body)
    t.equal(res.statusCode, 400, name)
    t.equal(res.json().code, 'FST_ERR_VALIDATION', name)
  }
  t.equal(calls.length, 0)
})

test('unknown extra fields are accepted; operation is optional', async (t) => {
  const { calls, sendJson } = await build(t)
  const res = await sendJson(notice({
    schemaVersion: 2,
    changes: [{ tenant: 't1', revision: 3, actor: 'alice' }, { tenant: 't2', revision: 1, operation: 'create-group' }]
  }))
  t.equal(res.statusCode, 200)
  t.same(res.json(), { serverId: 'server-b', revisions: { t1: 3, t2: 1 } })
  t.equal(calls.length, 1)
})

test('a carried change is validated strictly: malformed or inconsistent with its operation is 400, nothing handled', async (t) => {
  const { calls, sendJson } = await build(t)
  const good = { tenant: 't2', revision: 4, operation: 'add-permission', group: 'g', permission: 'doc:*' }
  const schema: Record<string, Record<string, unknown>> = {
    'bad group': { group: '-g' },
    'group not a string': { group: 7 },
    'bad grant': { permission: 'doc:**' },
    'grant too long': { permission: 'a'.repeat(257) },
    'bad user': { operation: 'assign-user', permission: undefined, user: 'a b' }
  }
  for (const [name, override] of Object.entries(schema)) {
    const res = await sendJson(notice({ changes: [good, { ...good, tenant: 't1', ...override }] }))
    t.equal(res.statusCode, 400, name)
    t.equal(res.json().code, 'FST_ERR_VALIDATION', name)
  }
  const inconsistent: Record<string, Record<string, unknown>> = {
    'data without operation': { tenant: 't1', revision: 3, group: 'g' },
    'permission without group': { tenant: 't1', revision: 3, operation: 'add-permission', permission: 'doc:read' },
    'add-permission without permission': { tenant: 't1', revision: 3, operation: 'add-permission', group: 'g' },
    'assign-user without user': { tenant: 't1', revision: 3, operation: 'assign-user', group: 'g' },
    'assign-user with a permission': { tenant: 't1', revision: 3, operation: 'assign-user', group: 'g', user: 'u', permission: 'doc:read' },
    'create-group with a user': { tenant: 't1', revision: 3, operation: 'create-group', group: 'g', user: 'u' },
    'delete-group with a permission': { tenant: 't1', revision: 3, operation: 'delete-group', group: 'g', permission: 'doc:read' }
  }
  for (const [name, change] of Object.entries(inconsistent)) {
    const res = await sendJson(notice({ changes: [good, change] }))
    t.equal(res.statusCode, 400, name)
    t.equal(res.json().code, 'FST_POLICY_CACHE_INVALID_INPUT', name)
  }
  t.equal(calls.length, 0, 'a notice with one bad entry is not handled at all')
})

test('well-formed carried changes of every operation are handed over decoded, as sent', async (t) => {
  const { calls, sendJson } = await build(t)
  const changes: NoticeChange[] = [
    { tenant: 't1', revision: 1, operation: 'create-group', group: 'g' },
    { tenant: 't2', revision: 2, operation: 'add-permission', group: 'g', permission: 'doc:*' },
    { tenant: 't3', revision: 3, operation: 'remove-permission', group: 'g', permission: '*' },
    { tenant: 't4', revision: 4, operation: 'assign-user', group: 'g', user: 'alice@example.com' },
    { tenant: 't5', revision: 5, operation: 'unassign-user', group: 'g', user: 'bob' },
    { tenant: 't6', revision: 6, operation: 'delete-group', group: 'g' }
  ]
  const res = await sendJson(notice({ changes }))
  t.equal(res.statusCode, 200)
  t.same(calls[0].entries, changes.map(decodeEntry))
  t.same(calls[0].entries[3], { tenant: 't4', revision: 4, carried: { op: 'assign-user', group: 'g', user: 'alice@example.com', revision: 4 } })
})

test('oversized bodies are 413, before any handling', async (t) => {
  const { calls, sendJson } = await build(t)
  const res = await sendJson(notice({ padding: 'x'.repeat(64 * 1024) }))
  t.equal(res.statusCode, 413)
  t.equal(res.json().code, 'FST_ERR_CTP_BODY_TOO_LARGE')
  t.equal(calls.length, 0)
})

test('the body limit is configurable', async (t) => {
  const app = Fastify()
  await app.register(webhookRoutes, { keys: [key], serverId: 'server-b', bodyLimit: 128, handleNotice: async () => ({}) })
  t.teardown(() => app.close())
  const payload = JSON.stringify(notice({ padding: 'x'.repeat(128) }))
  const res = await signedPost(app, payload)
  t.equal(res.statusCode, 413)
})

test('malformed JSON and prototype poisoning, correctly signed, are 400', async (t) => {
  const { calls, send } = await build(t)
  const malformed = await send('{"type": "policy.changed",')
  t.equal(malformed.statusCode, 400)
  t.equal(malformed.json().code, 'FST_ERR_CTP_INVALID_JSON_BODY')

  const proto = await send('{"type":"policy.changed","origin":"server-a","changes":[{"tenant":"t1","revision":3}],"__proto__":{"polluted":true}}')
  t.equal(proto.statusCode, 400, '__proto__')
  const ctor = await send('{"type":"policy.changed","origin":"server-a","changes":[{"tenant":"t1","revision":3,"constructor":{"prototype":{"polluted":true}}}]}')
  t.equal(ctor.statusCode, 400, 'constructor.prototype')
  t.equal(({} as Record<string, unknown>).polluted, undefined)

  t.equal((await send('')).statusCode, 400, 'empty body')
  t.equal(calls.length, 0)
})

test('other content types are 415, even when signed', async (t) => {
  const { calls, send } = await build(t)
  const payload = JSON.stringify(notice())
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx']) {
    const res = await send(payload, { headers: { 'content-type': type } })
    t.equal(res.statusCode, 415, type)
  }
  t.equal((await send(payload, { headers: { 'content-type': 'application/json; charset=utf-8' } })).statusCode, 200, 'a charset parameter is fine')
  t.equal(calls.length, 1)
})

test('the route does not change the parent\'s JSON parsing', async (t) => {
  const app = Fastify()
  await app.register(webhookRoutes, { keys: [key], serverId: 'server-b', handleNotice: async () => ({}) })
  app.post('/echo', async (request) => request.body)
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/echo', payload: { a: 1 } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { a: 1 })
})
