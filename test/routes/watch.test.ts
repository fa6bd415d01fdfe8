/**
 * `GET /tenants/:tenant/watch` over real HTTP (a `listen()`ed server, a raw node:http client): the
 * Server-Sent Events, resuming with `Last-Event-ID` / `?after=`, the reset, a client that does not
 * read dropped with the queue bounded, the watcher limit, heartbeats, shutdown with streams open, the
 * strict query and header, the route hooks and the long-id fallback.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { once } from 'node:events'
import http from 'node:http'
import type { Socket } from 'node:net'
import { test, type Test } from 'tap'
import { MemoryPolicyStore } from '../../examples/custom-store.js'
import policyCache, { type PolicyCacheOptions } from '../../lib/plugin.js'
import { get } from '../helpers/app.js'
import { openStream, type SseEvent } from '../helpers/sse.js'

/** A listening app with the plugin; its base URL. Closed at the end of the test unless `close` is false. */
async function serve (t: Test, options: PolicyCacheOptions = {}, close = true): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify()
  await app.register(policyCache, { syncIntervalMs: 0, ...options })
  await app.listen({ port: 0, host: '127.0.0.1' })
  if (close) t.teardown(() => app.close())
  return { app, url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` }
}

const ids = (events: SseEvent[]) => events.map((event) => `${event.event}:${event.id ?? ''}`)

/** Resolves once the instance has no watch open (its stream's close seen by the server). */
async function noWatchers (app: FastifyInstance): Promise<void> {
  while (app.policyCache.stats().watchers > 0) await new Promise((resolve) => setImmediate(resolve))
}

test('the events: ready, then each change with its revision as id and the audit entry as data', async (t) => {
  const { app, url } = await serve(t, { serverId: 'server-a' })
  await app.policyCache.createGroup('t1', 'g')
  const stream = await openStream(`${url}/tenants/t1/watch`)
  t.teardown(stream.close)
  t.equal(stream.response.statusCode, 200)
  t.match(stream.response.headers, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', 'policy-revision': '1' })
  t.strictSame(await stream.next(), { event: 'ready', id: '1', data: { tenant: 't1', revision: 1 } })
  await app.policyCache.assignUser('t1', 'g', 'alice', { actor: 'admin' })
  await app.policyCache.batch('t1', [{ op: 'create-group', group: 'h' }, { op: 'add-permission', group: 'h', permission: 'docs:*' }])
  const [one, two] = [await stream.next(), await stream.next()]
  t.match(one, { event: 'change', id: '2', data: { revision: 2, operation: 'assign-user', group: 'g', user: 'alice', origin: 'server-a', actor: 'admin' } })
  t.type(one.data.committedAt, 'number')
  t.match(two, { event: 'change', id: '3', data: { revision: 3, changes: [{ operation: 'create-group', group: 'h' }, { operation: 'add-permission', group: 'h', permission: 'docs:*' }], actor: null } })
  const feed = await get(app, '/tenants/t1/changes?after=1')
  t.strictSame([one.data, two.data], feed.body.entries, 'the same entries as the audit feed')
})

test('Last-Event-ID resumes across writes made while disconnected, then goes on live without a duplicate', async (t) => {
  const { app, url } = await serve(t)
  const pc = app.policyCache
  const first = await openStream(`${url}/tenants/t1/watch?after=0`)
  await pc.createGroup('t1', 'g')
  await pc.createGroup('t1', 'h')
  const seen = await first.until((event) => event.id === '2')
  t.strictSame(ids(seen), ['ready:0', 'change:1', 'change:2'])
  first.close()
  await noWatchers(app)
  for (const user of ['u1', 'u2', 'u3']) await pc.assignUser('t1', 'g', user)
  // An EventSource reconnects to the same URL (?after=0) with the id of the last event it had: the header wins.
  const again = await openStream(`${url}/tenants/t1/watch?after=0`, { 'last-event-id': '2' })
  t.teardown(again.close)
  t.equal(again.response.headers['policy-revision'], '2')
  await pc.assignUser('t1', 'g', 'u4')
  const resumed = await again.until((event) => event.id === '6')
  t.strictSame(ids(resumed), ['ready:2', 'change:3', 'change:4', 'change:5', 'change:6'])
  t.strictSame(resumed.slice(1).map((event) => event.data.user), ['u1', 'u2', 'u3', 'u4'])
})

test('resuming after pruned changes: a reset event, then live', async (t) => {
  const { app, url } = await serve(t, { changelogRetention: 10 })
  // Pruned at revision 64, down to the newest 10.
  for (let i = 0; i < 64; i++) await app.policyCache.createGroup('t1', `g${i}`)
  const stream = await openStream(`${url}/tenants/t1/watch`, { 'last-event-id': '7' })
  t.teardown(stream.close)
  await app.policyCache.createGroup('t1', 'late')
  const [ready, reset, change] = [await stream.next(), await stream.next(), await stream.next()]
  t.match(ready, { event: 'ready', id: '7' })
  t.match(reset, { event: 'reset', id: '64', data: { code: 'FST_POLICY_CACHE_CHANGES_PRUNED', oldestRevision: 55, revision: 64, message: /after 7: the oldest kept is revision 55/ } })
  t.match(change, { event: 'change', id: '65', data: { group: 'late' } })
})

test('a client that does not read is dropped, the queue within maxBuffered; it then resumes from its last id', async (t) => {
  const { app, url } = await serve(t, { watch: { maxBuffered: 8, heartbeatMs: 600000 }, maxBatchChanges: 500 })
  const pc = app.policyCache
  await pc.createGroup('t1', 'g')
  const stream = await openStream(`${url}/tenants/t1/watch`)
  t.teardown(stream.close)
  t.match(await stream.next(), { event: 'ready', id: '1' })
  stream.response.pause()
  // Large events (a batch of 500 long grants each) fill the socket's buffers, then the queue.
  const grants = Array.from({ length: 500 }, (_, i) => `${'p'.repeat(150)}:${i}`)
  let writes = 0
  while (pc.stats().watchersDropped === 0) {
    const op = writes++ % 2 === 0 ? 'add-permission' : 'remove-permission'
    await pc.batch('t1', grants.map((permission) => ({ op, group: 'g', permission })))
    t.ok(pc.stats().watchBuffered <= 8, 'the queue within its bound') || t.bailout('unbounded')
    if (writes > 2000) t.bailout('never dropped')
  }
  t.comment(`dropped after ${writes} writes of about 80 KB each`)
  t.match(pc.stats(), { watchersDropped: 1, watchers: 0, watchBuffered: 0 })
  stream.response.resume()
  const rest: SseEvent[] = []
  for (;;) {
    const event = await stream.next().catch(() => undefined)
    if (event === undefined) break
    rest.push(event)
  }
  const last = rest.pop()
  t.match(last, { event: 'end', id: undefined, data: { code: 'FST_POLICY_CACHE_WATCH_OVERFLOW', message: /8 were waiting/ } }, 'the final event')
  const received = rest.map((event) => Number(event.id))
  t.strictSame(received, Array.from({ length: received.length }, (_, i) => i + 2), 'what it got, in order without a gap')
  t.ok(received.length < writes, 'not everything: it was dropped')

  // Reconnecting with the last id it had: the rest from the changelog.
  const again = await openStream(`${url}/tenants/t1/watch`, { 'last-event-id': String(received.at(-1) ?? 1) })
  t.teardown(again.close)
  const resumed = await again.until((event) => event.id === String(writes + 1))
  t.equal(resumed.length - 1, writes + 1 - (received.at(-1) ?? 1), 'every change it missed')
})

test('maxWatchers: a stream beyond it answers the coded 503; a closed one frees its place', async (t) => {
  const { app, url } = await serve(t, { watch: { maxWatchers: 1 } })
  const first = await openStream(`${url}/tenants/t1/watch`)
  await first.next()
  const refused = await openStream(`${url}/tenants/t2/watch`)
  t.equal(refused.response.statusCode, 503)
  t.match(refused.response.headers['content-type'], /^application\/json/)
  await refused.ended
  first.close()
  await noWatchers(app)
  const second = await openStream(`${url}/tenants/t2/watch`)
  t.teardown(second.close)
  t.equal(second.response.statusCode, 200)
  t.match(await second.next(), { event: 'ready' })
})

test('heartbeats: a comment every heartbeatMs', async (t) => {
  const { url } = await serve(t, { watch: { heartbeatMs: 20 } })
  const stream = await openStream(`${url}/tenants/t1/watch`)
  t.teardown(stream.close)
  await stream.commentsUntil(2)
  t.strictSame(stream.comments.slice(0, 2), ['heartbeat', 'heartbeat'])
})

test('app.close() ends every stream with a final event and does not hang on them, a client that does not read included', async (t) => {
  const { app, url } = await serve(t, { watch: { maxBuffered: 100000 } }, false)
  const pc = app.policyCache
  await pc.createGroup('t1', 'g')
  const reading = await openStream(`${url}/tenants/t1/watch`)
  const stuck = await openStream(`${url}/tenants/t1/watch`)
  t.match(await reading.next(), { event: 'ready' })
  t.match(await stuck.next(), { event: 'ready' })
  stuck.response.pause()
  // Enough for the stuck client's socket to be backed up.
  const grants = Array.from({ length: 500 }, (_, i) => `${'p'.repeat(150)}:${i}`)
  for (let i = 0; i < 150; i++) {
    const op = i % 2 === 0 ? 'add-permission' : 'remove-permission'
    await pc.batch('t1', grants.map((permission) => ({ op, group: 'g', permission })))
  }
  await reading.until((event) => event.id === '151')
  await app.close()
  t.match(await reading.next(), { event: 'end', data: { code: 'FST_POLICY_CACHE_CLOSING', message: /shutting down/ } })
  await reading.ended
  // The stuck client's connection was destroyed: once it reads again, its stream is over.
  stuck.response.resume()
  await stuck.ended
  t.equal(pc.stats().watchers, 0)
  const late = await openStream(`${url}/tenants/t1/watch`).catch((err: Error) => err)
  t.type(late, Error, 'the server no longer listens')
})

test('the query and the header are strict; refusals are coded JSON errors', async (t) => {
  const { app } = await serve(t)
  await app.policyCache.createGroup('t1', 'g')
  for (const query of ['from=0', 'after=-1', 'after=1.5', 'after=01', 'after=', 'after=abc', 'after=1&x=2', 'after=1&after=2']) {
    const res = await get(app, `/tenants/t1/watch?${query}`)
    t.equal(res.status, 400, query)
    t.match(res.body, { code: /^FST_/ }, `${query}: coded`)
  }
  for (const header of ['-1', 'abc', '1.5', '01', '']) {
    const res = await app.inject({ url: '/tenants/t1/watch', headers: { 'last-event-id': header } })
    t.equal(res.statusCode, 400, `Last-Event-ID ${JSON.stringify(header)}`)
  }
  t.equal((await get(app, '/tenants/bad%20id/watch')).status, 400, 'a malformed tenant')
  const head = await app.inject({ method: 'HEAD', url: '/tenants/t1/watch' })
  t.equal(head.statusCode, 200, 'HEAD: the headers only')
  t.equal(head.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(head.body, '')
  const ahead = await get(app, '/tenants/t1/watch?after=5')
  t.equal(ahead.status, 412)
  t.equal(ahead.body.code, 'FST_POLICY_CACHE_REVISION_AHEAD')
  t.equal(app.policyCache.stats().watchers, 0, 'no refused request holds a place')
})

test('behind routeHooks like the other policy routes', async (t) => {
  const { app, url } = await serve(t, {
    routeHooks: {
      onRequest: async (request, reply) => {
        if (request.headers.authorization !== 'Bearer admin') await reply.code(401).send({ statusCode: 401, code: 'HOST_UNAUTHORIZED', error: 'Unauthorized', message: 'admin token required' })
        reply.header('access-control-allow-origin', 'https://board.example')
      }
    }
  })
  for (const path of ['/tenants/t1/watch', `/tenants/${'T'.repeat(128)}/watch`]) {
    const denied = await app.inject({ url: path })
    t.equal(denied.statusCode, 401, path)
    t.equal(denied.json().code, 'HOST_UNAUTHORIZED')
  }
  const stream = await openStream(`${url}/tenants/t1/watch`, { authorization: 'Bearer admin' })
  t.teardown(stream.close)
  t.equal(stream.response.headers['access-control-allow-origin'], 'https://board.example', 'headers the hooks set are sent')
  t.match(await stream.next(), { event: 'ready', id: '0' })
})

test('a tenant id longer than maxParamLength: the same stream, the same checks', async (t) => {
  const { app, url } = await serve(t)
  const tenant = 'T'.repeat(128)
  await app.policyCache.createGroup(tenant, 'g')
  const stream = await openStream(`${url}/tenants/${tenant}/watch?after=0`)
  t.teardown(stream.close)
  t.match(await stream.next(), { event: 'ready', id: '0', data: { tenant } })
  t.match(await stream.next(), { event: 'change', id: '1', data: { operation: 'create-group' } })
  t.equal((await get(app, `/tenants/${tenant}/watch?since=1`)).status, 400, 'unknown parameters refused')
  t.equal((await get(app, `/tenants/${tenant}/watch?after=x`)).status, 400)
  const header = await app.inject({ url: `/tenants/${tenant}/watch`, headers: { 'last-event-id': 'x' } })
  t.equal(header.statusCode, 400)
  t.match(header.json(), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /^Invalid Last-Event-ID: / })
})

test('a client gone while its watch opened holds no place', async (t) => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  class Slow extends MemoryPolicyStore {
    override async snapshot (tenant: string) {
      await gate
      return await super.snapshot(tenant)
    }
  }
  const app = Fastify()
  const sockets: Socket[] = []
  app.addHook('onRequest', async (request) => { sockets.push(request.raw.socket) })
  await app.register(policyCache, { db: new Slow(), syncIntervalMs: 0 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const request = http.get(`http://127.0.0.1:${(app.server.address() as { port: number }).port}/tenants/t1/watch`)
  request.on('error', () => {})
  while (app.policyCache.stats().watchers === 0) await new Promise((resolve) => setImmediate(resolve))
  // The client goes while the tenant loads: the server sees its socket close, then the watch opens.
  const closed = once(sockets[0], 'close')
  request.destroy()
  await closed
  release()
  await noWatchers(app)
  t.equal(app.policyCache.stats().watchers, 0)
})
