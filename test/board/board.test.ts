/**
 * The policy board's option and routes (lib/board/, lib/routes/mount.ts): off by default, the page and
 * its assets as shipped in board/, behind routeHooks, where the page finds the policy routes, the
 * cluster snapshot across instances (signed member reports, propagation, members that left), the
 * live stream bounded by maxStreams and ended by drain and close.
 */
import { readFileSync } from 'node:fs'
import Fastify from 'fastify'
import { test } from 'tap'
import policyCache, { DEFAULTS, type BoardSnapshot } from '../../lib/plugin.js'
import { newMessageId, parseSecret, sign, WEBHOOK_HEADERS } from '../../lib/broadcast/signature.js'
import { buildApp, get, post, SECRET } from '../helpers/app.js'
import { startCluster } from '../helpers/cluster.js'

const asset = (name: string): string => readFileSync(new URL(`../../board/${name}`, import.meta.url), 'utf8')

/** Signed member-report headers, as an instance serving a board sends them. */
function memberHeaders (secret: string, tenants: string, timestamp = Math.floor(Date.now() / 1000)): Record<string, string> {
  const id = newMessageId()
  return {
    [WEBHOOK_HEADERS.id]: id,
    [WEBHOOK_HEADERS.timestamp]: String(timestamp),
    [WEBHOOK_HEADERS.signature]: sign([parseSecret(secret, 'secret')], id, timestamp, `policy-board.member:${tenants}`)
  }
}

/** Waits until `check` holds for a snapshot of `url`'s board, or fails after 10 s. */
async function snapshotWhere (url: string, tenant: string, check: (snapshot: BoardSnapshot) => boolean): Promise<BoardSnapshot> {
  const deadline = Date.now() + 10000
  for (;;) {
    const snapshot = await (await fetch(`${url}/policy-board/api/cluster?tenant=${tenant}`)).json() as BoardSnapshot
    if (check(snapshot)) return snapshot
    if (Date.now() > deadline) throw new Error(`no such snapshot within 10 s; last: ${JSON.stringify(snapshot)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

test('the board is off by default, and with board: false', async (t) => {
  const app = await buildApp(t)
  t.equal((await app.inject('/policy-board/')).statusCode, 404)
  const off = await buildApp(t, { board: false })
  t.equal((await off.inject('/policy-board/')).statusCode, 404)
})

test('the board option is validated', async (t) => {
  const cases: Array<[unknown, string]> = [
    ['yes', 'Invalid option "board": must be a boolean or { path, maxStreams }'],
    [null, 'Invalid option "board": must be a boolean or { path, maxStreams }'],
    [{ paht: '/x' }, 'Invalid option "board.paht": is not an option; did you mean "board.path"?'],
    [{ path: 'board' }, 'Invalid option "board.path": must be a path prefix like "/admin" (no trailing slash)'],
    [{ path: '/board/' }, 'Invalid option "board.path": must be a path prefix like "/admin" (no trailing slash)'],
    [{ path: '' }, 'Invalid option "board.path": must be a path like "/policy-board", not empty'],
    [{ maxStreams: 0 }, 'Invalid option "board.maxStreams": must be an integer from 1 to 1000'],
    [{ maxStreams: 1.5 }, 'Invalid option "board.maxStreams": must be an integer from 1 to 1000']
  ]
  for (const [board, message] of cases) {
    const app = Fastify()
    app.register(policyCache, { board: board as never })
    await t.rejects(async () => { await app.ready() }, { code: 'FST_POLICY_CACHE_INVALID_OPTION', message }, JSON.stringify(board))
    await app.close()
  }
  t.equal(DEFAULTS.board.path, '/policy-board')
})

test('the page and its assets, as shipped in board/', async (t) => {
  const app = await buildApp(t, { board: true })
  const redirect = await app.inject('/policy-board?tenant=t1')
  t.equal(redirect.statusCode, 302)
  t.equal(redirect.headers.location, 'policy-board/?tenant=t1', 'relative (the page\'s links are relative to its folder), the query kept')
  t.equal((await app.inject('/policy-board')).headers.location, 'policy-board/')

  const types: Record<string, string> = { 'index.html': 'text/html', 'board.css': 'text/css', 'board.js': 'text/javascript' }
  for (const [name, type] of Object.entries(types)) {
    const res = await app.inject(name === 'index.html' ? '/policy-board/' : `/policy-board/${name}`)
    t.equal(res.statusCode, 200, name)
    t.equal(res.headers['content-type'], `${type}; charset=utf-8`, `${name}'s type`)
    t.equal(res.body, asset(name), `${name} as shipped`)
    t.match(res.headers['content-security-policy'], /default-src 'none'; script-src 'self'/, `${name}: nothing from elsewhere`)
  }
  // Nothing the page loads comes from another origin.
  t.notMatch(asset('index.html') + asset('board.js') + asset('board.css'), /https?:\/\/(?!www\.w3\.org)/, 'no URL of another origin')

  t.equal((await app.inject('/policy-board/other.js')).statusCode, 404)
})

test('the board sits behind routeHooks, like the policy routes; a path and prefixes move it', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, {
    prefix: '/api',
    board: { path: '/ops/board' },
    routes: { policy: { prefix: '/admin' } },
    routeHooks: {
      onRequest: async (request, reply) => {
        if (request.headers.authorization !== 'Bearer admin') return await reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'no' })
      }
    }
  })
  for (const url of ['/api/ops/board', '/api/ops/board/', '/api/ops/board/board.js', '/api/ops/board/api/cluster', '/api/ops/board/api/events']) {
    t.equal((await app.inject(url)).statusCode, 401, `${url} refused without the host's credentials`)
  }
  const res = await app.inject({ url: '/api/ops/board/api/cluster', headers: { authorization: 'Bearer admin' } })
  t.equal(res.statusCode, 200)
  // The page is at /api/ops/board/: ../../ is /api/, the register prefix.
  t.same(res.json().links, { policy: '../../admin/' })
  t.equal((await app.inject({ url: '/api/ops/board/', headers: { authorization: 'Bearer admin' } })).statusCode, 200)
})

test('without policy routes the page is told so', async (t) => {
  const app = await buildApp(t, { board: true, routes: { policy: false } })
  t.same((await get(app, '/policy-board/api/cluster')).body.links, { policy: null })
  const plain = await buildApp(t, { board: true })
  t.same((await get(plain, '/policy-board/api/cluster')).body.links, { policy: '../' })
})

test('a snapshot of one instance: itself, the tenant\'s revision, the cached tenants', async (t) => {
  const app = await buildApp(t, { board: true, serverId: 'solo', preload: ['t1'] })
  await post(app, '/create-group', { tenant: 't1', group: 'g' })
  await post(app, '/add-permission', { tenant: 't1', group: 'g', permission: 'p' })

  const none = (await get(app, '/policy-board/api/cluster')).body
  t.equal(none.tenant, null)
  t.equal(none.newest, null)
  t.same(none.members.map((m: { serverId: string, state: string, revision: number | null }) => [m.serverId, m.state, m.revision]), [['solo', 'self', null]])
  t.same(none.tenants, [{ tenant: 't1', revision: 2 }])
  t.match(none.members[0], { self: true, reachable: true, transport: { type: 'webhook' }, incarnation: null, closing: false, lag: null })

  const t1 = (await get(app, '/policy-board/api/cluster?tenant=t1')).body
  t.equal(t1.newest, 2)
  t.match(t1.members[0], { revision: 2, lag: 0 })
  // Not loaded by the board: a tenant this instance does not cache is `null`.
  const other = (await get(app, '/policy-board/api/cluster?tenant=t2')).body
  t.match(other, { newest: null, members: [{ revision: null, lag: null }] })
  t.notOk(app.policyCache.cachedRevisions().some(([tenant]) => tenant === 't2'), 'the board loads nothing')

  const bad = await get(app, '/policy-board/api/cluster?tenant=-x')
  t.equal(bad.status, 400)
  t.equal((await get(app, '/policy-board/api/cluster?tenant=t1&x=1')).status, 400, 'unknown query parameter')
})

test('the member report is signed with the webhook keys; without a secret there is none', async (t) => {
  const app = await buildApp(t, { board: true, webhookSecret: SECRET, serverId: 'a', preload: ['t1'] })
  await post(app, '/create-group', { tenant: 't1', group: 'g' })
  const url = '/policy-board/api/member?tenants=t1,t2'
  t.equal((await app.inject(url)).statusCode, 401, 'unsigned')
  const other = 'whsec_' + Buffer.from('another-secret-long-enough-too!!').toString('base64')
  t.equal((await app.inject({ url, headers: memberHeaders(other, 't1,t2') })).statusCode, 401, 'another key')
  t.equal((await app.inject({ url, headers: memberHeaders(SECRET, 't1') })).statusCode, 401, 'signed for other tenants')
  t.equal((await app.inject({ url, headers: memberHeaders(SECRET, 't1,t2', Math.floor(Date.now() / 1000) - 3600) })).statusCode, 401, 'stale')
  const res = await app.inject({ url, headers: memberHeaders(SECRET, 't1,t2') })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { serverId: 'a', revisions: { t1: 1, t2: null }, closing: false, transport: { type: 'webhook', state: 'up' }, propagation: [] })
  const empty = await app.inject({ url: '/policy-board/api/member?tenants=', headers: memberHeaders(SECRET, '') })
  t.same(empty.json().revisions, {})
  t.equal((await app.inject({ url: '/policy-board/api/member?tenants=a,,b', headers: memberHeaders(SECRET, 'a,,b') })).statusCode, 400, 'malformed list')
  t.equal((await app.inject({ url: '/policy-board/api/member', headers: memberHeaders(SECRET, '') })).statusCode, 400, 'tenants required')

  const open = await buildApp(t, { board: true })
  t.equal((await open.inject({ url, headers: memberHeaders(SECRET, 't1,t2') })).statusCode, 404, 'no secret: no member route')
})

test('a cluster: every member\'s revision and lag, propagation, unreachable and departed members', async (t) => {
  const [a, b, c] = await startCluster(t, 3, { board: true, name: 'n', peers: [], membership: { heartbeatMs: 500, ttlMs: 10000, pollMs: 50 }, ackTimeoutMs: 2000 })
  // Each sees the other two.
  await snapshotWhere(a.url, 't1', (s) => s.members.length === 3 && s.members.every((m) => m.reachable))
  await a.app.policyCache.warm(['t1'])
  await b.app.policyCache.warm(['t1'])
  await post(a.app, '/create-group', { tenant: 't1', group: 'g' })
  const write = await post(a.app, '/assign-user', { tenant: 't1', group: 'g', user: 'u' })
  t.same(write.body.peers, { acked: 2, total: 2 })

  const snapshot = await snapshotWhere(c.url, 't1', (s) => s.propagation.some((w) => w.revision === 2 && w.acks.length === 2))
  const byId = new Map(snapshot.members.map((m) => [m.serverId, m]))
  t.equal(snapshot.self, 'n-3')
  t.match(byId.get('n-1'), { state: 'unknown', source: 'membership', reachable: true, revision: 2, lag: 0, transport: { type: 'webhook' } })
  t.match(byId.get('n-2'), { revision: 2, lag: 0 })
  // State is this instance's delivery state: n-3 has sent n-1 nothing yet; n-1 delivered to n-2.
  t.match((await snapshotWhere(a.url, 't1', () => true)).members.find((m) => m.serverId === 'n-2'), { state: 'up', delivered: 2, failed: 0 })
  t.match(byId.get('n-3'), { self: true, revision: null, lag: null }, 'not cached on the board\'s own instance')
  t.equal(snapshot.newest, 2)
  t.ok(byId.get('n-1')?.incarnation?.length === 36, 'a member\'s incarnation')
  const sample = snapshot.propagation.find((w) => w.revision === 2)!
  t.match(sample, { origin: 'n-1', tenant: 't1' })
  t.same(sample.acks.map((ack) => ack.peer).sort(), [b.url, c.url].sort(), 'acknowledged by both others')
  t.ok(sample.acks.every((ack) => ack.ms >= 0))

  // Once n-3 loads the tenant, every member answers from the newest revision.
  await c.app.policyCache.warm(['t1'])
  const caught = await snapshotWhere(a.url, 't1', (s) => s.members.every((m) => m.revision === 2))
  t.ok(caught.members.every((m) => m.lag === 0), 'every member caught up')

  // n-2 leaves gracefully: listed as left, no longer reachable.
  await b.app.close()
  const left = await snapshotWhere(a.url, 't1', (s) => s.members.some((m) => m.serverId === 'n-2' && m.state === 'left'))
  t.match(left.members.find((m) => m.serverId === 'n-2'), { state: 'left', reachable: false })
  t.equal(left.members.length, 3)
})

test('a peer that does not serve a board report is unreachable, its state kept', async (t) => {
  // No board there: the report's route answers 404.
  const [a] = await startCluster(t, 1, { name: 'n' })
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, { board: true, serverId: 'watcher', webhookSecret: SECRET, peers: [a.url, 'http://127.0.0.1:9'], syncIntervalMs: 0 })
  const snapshot = (await get(app, '/policy-board/api/cluster?tenant=t1')).body as BoardSnapshot
  t.same(snapshot.members.map((m) => [m.url, m.reachable]), [[null, true], [a.url, false], ['http://127.0.0.1:9', false]])
})

test('live stream: snapshots at once and every interval, bounded, ended by drain', async (t) => {
  const app = Fastify()
  await app.register(policyCache, { board: { maxStreams: 1 }, serverId: 'live', preload: ['t1'] })
  t.teardown(() => app.close())
  await post(app, '/create-group', { tenant: 't1', group: 'g' })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })

  const controller = new AbortController()
  const res = await fetch(`${url}/policy-board/api/events?tenant=t1`, { signal: controller.signal })
  t.equal(res.status, 200)
  t.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8')
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader()
  let text = ''
  const events = (): BoardSnapshot[] => [...text.matchAll(/event: cluster\ndata: (.*)\n\n/g)].map((m) => JSON.parse(m[1]) as BoardSnapshot)
  while (events().length < 1) text += (await reader.read()).value ?? ''
  t.match(events()[0], { self: 'live', tenant: 't1', newest: 1 })

  // A second stream is over maxStreams.
  const busy = await app.inject('/policy-board/api/events')
  t.equal(busy.statusCode, 503)
  t.match(busy.json(), { code: 'FST_POLICY_CACHE_BOARD_BUSY', message: /1 are open \(board.maxStreams\)/ })
  t.equal((await app.inject('/policy-board/api/events?tenant=%20')).statusCode, 400)

  // The next snapshot follows a write, without asking.
  await post(app, '/assign-user', { tenant: 't1', group: 'g', user: 'u' })
  while (!events().some((e) => e.newest === 2)) text += (await reader.read()).value ?? ''
  t.pass('a later snapshot carries the write')

  // drain() ends the stream; a new one is refused.
  await app.policyCache.drain()
  for (;;) {
    const { done } = await reader.read()
    if (done) break
  }
  t.pass('the stream ended on drain')
  const closing = await app.inject('/policy-board/api/events')
  t.equal(closing.statusCode, 503)
  t.match(closing.json().message, /shutting down/)
})

test('a browser closing its stream frees its slot; app.close() ends open streams', async (t) => {
  const app = Fastify()
  await app.register(policyCache, { board: { maxStreams: 1 } })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const first = new AbortController()
  const res = await fetch(`${url}/policy-board/api/events`, { signal: first.signal })
  const reader = res.body!.getReader()
  await reader.read()
  first.abort()
  // Freed once the server sees the connection close.
  const deadline = Date.now() + 10000
  let status = 0
  let second: Response | undefined
  while (Date.now() < deadline) {
    second = await fetch(`${url}/policy-board/api/events`)
    status = second.status
    if (status === 200) break
    await second.text()
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(status, 200, 'the slot was freed')
  const ended = second!.text()
  const closed = app.close()
  await ended
  await closed
  t.pass('app.close() ended the open stream and closed')
})
