import { EventEmitter, once } from 'node:events'
import { createServer, type Socket } from 'node:net'
import Fastify from 'fastify'
import { test } from 'tap'
import { Broadcaster, type BroadcasterOptions } from '../../lib/broadcast/broadcaster.js'
import { decodeEntry, type Notice, type NoticeChange, type NoticeReply, type ReceivedNotice } from '../../lib/broadcast/notice.js'
import webhookRoutes from '../../lib/broadcast/receiver.js'
import { parseSecret } from '../../lib/broadcast/signature.js'

interface Teardown { teardown: (fn: () => unknown) => void }

const SECRET = 'sender-test-secret-0123456789'
const key = parseSecret(SECRET, 'webhookSecret')

/** A deferred: a promise and its resolver. */
function deferred<T = void> () {
  let settle!: (value: T) => void
  const promise = new Promise<T>((resolve) => { settle = resolve })
  return { promise, resolve: settle }
}

/** A logger that records entries and emits each under its level. */
function recorder () {
  const events = new EventEmitter()
  const entries: Array<{ level: string, obj: object, msg: string }> = []
  const at = (level: string) => (obj: object, msg: string) => {
    entries.push({ level, obj, msg })
    events.emit(level, obj)
  }
  /** Resolves once `count` entries of `level` were logged. */
  const until = async (level: string, count: number) => {
    while (entries.filter((entry) => entry.level === level).length < count) await once(events, level)
  }
  return { log: { debug: at('debug'), info: at('info'), warn: at('warn') }, entries, events, until }
}

interface ReceiverOptions {
  serverId?: string
  handle?: (notice: ReceivedNotice) => Promise<NoticeReply['revisions']>
}

/**
 * A real Fastify instance serving the real webhook route on a random port. `notices` are the
 * decoded notices handed to the engine; `bodies` what arrived on the wire.
 */
async function receiver (t: Teardown, options: ReceiverOptions = {}) {
  const app = Fastify()
  const requests: Array<{ id: string, timestamp: string }> = []
  const bodies: Notice[] = []
  const notices: ReceivedNotice[] = []
  const completed: ReceivedNotice[] = []
  const handled = new EventEmitter()
  app.addHook('onRequest', async (request) => {
    requests.push({ id: String(request.headers['webhook-id']), timestamp: String(request.headers['webhook-timestamp']) })
  })
  app.addHook('preHandler', async (request) => { bodies.push(request.body as Notice) })
  await app.register(webhookRoutes, {
    keys: [key],
    serverId: options.serverId ?? 'receiver',
    handleNotice: async (notice) => {
      notices.push(notice)
      const revisions = options.handle === undefined
        ? Object.fromEntries(notice.entries.map((entry) => [entry.tenant, entry.revision]))
        : await options.handle(notice)
      completed.push(notice)
      handled.emit('notice', notice)
      return revisions
    }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const { port } = app.server.address() as { port: number }
  return { app, url: `http://127.0.0.1:${port}`, requests, bodies, notices, completed, handled }
}
/**
 * A receiver that holds its first notice until `gate` resolves (`entered` resolves once it is held)
 * and resolves `done` when a notice carries revision `last` of tenant t1.
 */
async function gatedReceiver (t: Teardown, last: number) {
  const entered = deferred()
  const gate = deferred()
  const done = deferred()
  const peer = await receiver(t, {
    handle: async (notice) => {
      if (peer.notices.length === 1) {
        entered.resolve()
        await gate.promise
      }
      if (notice.entries.some((e) => e.tenant === 't1' && e.revision === last)) done.resolve()
      return {}
    }
  })
  return { peer, entered, gate, done }
}

/** A TCP server that accepts connections and never answers. */
async function hangingServer (t: Teardown) {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const close = async () => {
    if (!server.listening) return
    for (const socket of sockets) socket.destroy()
    server.close()
    await once(server, 'close')
  }
  t.teardown(close)
  const { port } = server.address() as { port: number }
  return { url: `http://127.0.0.1:${port}`, close }
}

/** The broadcaster's timers are unref'd: keeps the test process alive while it waits on background retries. */
function keepAlive (t: Teardown) {
  const timer = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(timer))
}

/** A URL nothing listens on. */
async function closedPortUrl () {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return `http://127.0.0.1:${port}`
}

function broadcaster (t: Teardown, options: Partial<BroadcasterOptions> & { peers: string[] }) {
  const logs = recorder()
  const b = new Broadcaster({
    serverId: 'sender',
    keys: [key],
    ackTimeoutMs: 1000,
    requestTimeoutMs: 1000,
    retry: { retries: 0, minDelayMs: 1, maxDelayMs: 5 },
    log: logs.log,
    ...options
  })
  t.teardown(() => b.close())
  return { b, logs }
}

/** Resolves with the value if `promise` settles before any macrotask runs, else with 'waited'. */
function immediately<T> (promise: Promise<T>): Promise<T | 'waited'> {
  return Promise.race([promise, new Promise<'waited'>((resolve) => setImmediate(resolve, 'waited'))])
}

const change = (tenant: string, revision: number): NoticeChange => ({ tenant, revision, operation: 'assign-user' })

test('delivers a signed notice to every peer, waits for the acks and keeps stats', async (t) => {
  const a = await receiver(t, { serverId: 'server-a' })
  const c = await receiver(t, { serverId: 'server-c' })
  const { b } = broadcaster(t, { peers: [a.url, c.url] })

  t.same(b.status().map((peer) => peer.state), ['unknown', 'unknown'])
  const summary = await b.notify([change('t1', 4)])
  t.same(summary, { acked: 2, total: 2 })
  for (const peer of [a, c]) {
    t.same(peer.bodies[0], { type: 'policy.changed', origin: 'sender', changes: [change('t1', 4)] }, 'the wire format')
    t.same(peer.notices, [{ origin: 'sender', entries: [decodeEntry(change('t1', 4))] }])
    t.match(peer.requests[0].id, /^msg_[A-Za-z0-9_-]+$/)
  }

  const [first, second] = b.status()
  t.match(first, {
    url: a.url,
    serverId: 'server-a',
    state: 'up',
    lastFailureAt: null,
    lastError: null,
    consecutiveFailures: 0,
    delivered: 1,
    failed: 0
  })
  t.equal(second.serverId, 'server-c')
  t.ok(Date.parse(first.lastSuccessAt as string) <= Date.now())
  t.type(first.latencyMs, 'number')

  t.same(await b.notify([]), { acked: 0, total: 2 }, 'nothing to send')
  t.equal(a.requests.length, 1)
})

test('an acknowledgement comes only from a 2xx carrying the revision, after the peer handled it', async (t) => {
  const gate = deferred()
  const peer = await receiver(t, {
    handle: async () => {
      if (peer.notices.length === 1) await gate.promise
      return {}
    }
  })
  const { b } = broadcaster(t, { peers: [peer.url], ackTimeoutMs: 5000 })

  const first = b.notify([change('t1', 1)])
  const second = b.notify([change('t1', 2)])
  t.equal(await immediately(first), 'waited', 'the first write waits while the peer handles it')
  gate.resolve()
  t.same(await first, { acked: 1, total: 1 })
  t.same(await second, { acked: 1, total: 1 })
  t.equal(peer.completed.length, 2, 'revision 2 was acknowledged by the second request, not by the first')
  t.same(peer.completed.map((notice) => notice.entries[0].revision), [1, 2])
})

test('coalesces a burst into at most one more request, carrying the latest revision per tenant', async (t) => {
  const { peer, entered, gate, done } = await gatedReceiver(t, 20)
  const { b } = broadcaster(t, { peers: [peer.url], ackTimeoutMs: 0 })

  t.same(await b.notify([change('t1', 1)]), { acked: 0, total: 1 }, 'ackTimeoutMs 0 does not wait')
  await entered.promise
  for (let revision = 2; revision <= 20; revision++) {
    await b.notify([change('t1', revision), change(`other${revision % 3}`, revision)])
  }
  gate.resolve()
  await done.promise
  t.equal(peer.requests.length, 2, 'two requests for twenty writes')
  const last = peer.notices[1].entries
  t.same(last.find((e) => e.tenant === 't1'), decodeEntry(change('t1', 20)))
  t.same(last.map((e) => e.tenant).sort(), ['other0', 'other1', 'other2', 't1'])
  t.same(last.find((e) => e.tenant === 'other2'), decodeEntry(change('other2', 20)))
})

test('coalescing keeps each carried change with its own revision; split notices stay valid', async (t) => {
  const carrying = (tenant: string, revision: number): NoticeChange => ({ tenant, revision, operation: 'assign-user', group: 'g', user: `u${revision}` })
  const { peer, entered, gate, done } = await gatedReceiver(t, 20)
  const { b } = broadcaster(t, { peers: [peer.url], ackTimeoutMs: 0 })

  await b.notify([carrying('t1', 1)])
  await entered.promise
  // Revisions arrive out of order too: an older one never replaces a newer one's entry.
  for (let revision = 2; revision <= 20; revision++) await b.notify([carrying('t1', revision), carrying('t2', 22 - revision)])
  gate.resolve()
  await done.promise
  t.equal(peer.requests.length, 2)
  t.same(peer.notices[1].entries, [carrying('t1', 20), carrying('t2', 20)].map(decodeEntry), 'the latest revision, with the change made at it')
  for (const { entries } of peer.notices) {
    for (const { revision, carried } of entries) t.match(carried, { user: `u${revision}`, revision }, 'never another revision\'s data')
  }

  const long = Array.from({ length: 400 }, (_, i): NoticeChange =>
    ({ tenant: `${'x'.repeat(120)}${i}`, revision: 2 ** 40, operation: 'add-permission', group: 'g'.repeat(128), permission: 'p'.repeat(256) }))
  const before = peer.notices.length
  // An hour-long ackTimeoutMs: only the delivery of every part can release the write (a loaded machine is slow).
  const { b: waiting } = broadcaster(t, { peers: [peer.url], ackTimeoutMs: 3_600_000 })
  t.same(await waiting.notify(long), { acked: 1, total: 1 }, 'acknowledged once every part is delivered')
  t.ok(peer.notices.length - before > 1, 'split into several notices')
  t.same(peer.notices.slice(before).flatMap((n) => n.entries), long.map(decodeEntry), 'every entry delivered whole, accepted by the strict receiver')
  t.equal(waiting.status()[0].failed, 0)
})

test('a down peer costs the first write no bounded wait and the next ones nothing', async (t) => {
  keepAlive(t)
  const url = await closedPortUrl()
  // An hour-long ackTimeoutMs: the write can only have been released by the failure.
  const { b, logs } = broadcaster(t, { peers: [url], ackTimeoutMs: 3_600_000, retry: { retries: 3, minDelayMs: 1, maxDelayMs: 2 } })

  t.same(await b.notify([change('t1', 1)]), { acked: 0, total: 1 }, 'released at the failure, not at ackTimeoutMs')
  const [status] = b.status()
  t.equal(status.state, 'down')
  t.match(status.lastError, /ECONNREFUSED/)
  t.ok(status.lastFailureAt)

  t.same(await immediately(b.notify([change('t1', 2)])), { acked: 0, total: 1 }, 'a down peer is not waited for at all')

  await logs.until('debug', 2) // both notices given up after their retries
  const after = b.status()[0]
  t.equal(after.failed, 8, 'four attempts for each of the two notices')
  t.equal(after.consecutiveFailures, 8)
  t.equal(logs.entries.filter((entry) => entry.level === 'warn').length, 1, 'one warning per state change, not per attempt')
  t.match(logs.entries.find((entry) => entry.level === 'warn'), { obj: { peer: url, reason: /ECONNREFUSED/ } })
  t.notMatch(JSON.stringify(logs.entries), /v1,|sender-test-secret/, 'no signature or secret is logged')
})

test('a hanging peer costs one write ackTimeoutMs and no later write anything', async (t) => {
  const { url } = await hangingServer(t)
  // An hour-long request timeout: only the ack deadline and close() can end what this test waits for.
  const { b, logs } = broadcaster(t, { peers: [url], ackTimeoutMs: 100, requestTimeoutMs: 3_600_000 })

  const first = b.notify([change('t1', 1)])
  t.equal(await immediately(first), 'waited', 'the first write waits for the hanging peer')
  t.same(await first, { acked: 0, total: 1 })
  t.match(b.status()[0], { state: 'down', lastError: 'no acknowledgement within 100 ms', failed: 0 }, 'released by the ack deadline, not by a failure')
  t.equal(logs.entries.length, 1)
  t.match(logs.entries[0], { level: 'warn', obj: { peer: url } })

  t.same(await immediately(b.notify([change('t1', 2)])), { acked: 0, total: 1 })
  t.same(await immediately(b.notify([change('t1', 3)])), { acked: 0, total: 1 })

  // close() awaits every delivery loop: it resolves only because it aborts the hour-long request.
  await b.close()
})

test('a request that exceeds requestTimeoutMs fails and marks the peer down', async (t) => {
  const { url } = await hangingServer(t)
  const { b, logs } = broadcaster(t, { peers: [url], ackTimeoutMs: 0, requestTimeoutMs: 100 })
  await b.notify([change('t1', 1)])
  await once(logs.events, 'warn')
  t.match(b.status()[0], { state: 'down', failed: 1, consecutiveFailures: 1, lastError: /timeout/i })
})

test('a peer comes back up when a retry succeeds, with the same id and a fresh timestamp', async (t) => {
  const realNow = Date.now
  let offsetMs = 0
  Date.now = () => realNow() + offsetMs
  t.teardown(() => { Date.now = realNow })

  let failures = 2
  const peer = await receiver(t, {
    handle: async () => {
      offsetMs += 5000 // each attempt happens 5 s after the previous one
      if (failures-- > 0) throw new Error('database unavailable')
      return { t1: 1 }
    }
  })
  const { b, logs } = broadcaster(t, { peers: [peer.url], ackTimeoutMs: 1000, retry: { retries: 5, minDelayMs: 1, maxDelayMs: 5 } })

  const recovered = once(logs.events, 'info')
  t.same(await b.notify([change('t1', 1)]), { acked: 0, total: 1 }, 'the failed first attempt releases the write')
  t.equal(b.status()[0].state, 'down')
  await recovered

  t.equal(peer.requests.length, 3)
  t.equal(new Set(peer.requests.map((request) => request.id)).size, 1, 'one webhook-id for every attempt')
  const timestamps = peer.requests.map((request) => Number(request.timestamp))
  t.ok(timestamps[0] < timestamps[1] && timestamps[1] < timestamps[2], `fresh timestamps ${timestamps.join(', ')}`)
  t.match(b.status()[0], { state: 'up', serverId: 'receiver', delivered: 1, failed: 2, consecutiveFailures: 0, lastError: 'HTTP 500' })

  t.same(await b.notify([change('t1', 2)]), { acked: 1, total: 1 }, 'an up peer is waited for again')
  t.not(peer.requests[3].id, peer.requests[0].id, 'a new message has a new id')
})

test('a redirect is a failure and is not followed; so is a 2xx that is not a receiver\'s', async (t) => {
  const target = await receiver(t)
  const app = Fastify()
  app.post('/redirect/webhook/refresh', async (request, reply) => reply.redirect(`${target.url}/webhook/refresh`, 307))
  app.post('/plain/webhook/refresh', async () => 'ok')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const { port } = app.server.address() as { port: number }

  const { b } = broadcaster(t, { peers: [`http://127.0.0.1:${port}/redirect`, `http://127.0.0.1:${port}/plain/`] })
  t.same(await b.notify([change('t1', 1)]), { acked: 0, total: 2 })
  const [redirected, plain] = b.status()
  t.match(redirected, { state: 'down', lastError: 'HTTP 307' })
  t.match(plain, { state: 'down', serverId: null })
  t.equal(target.requests.length, 0, 'the redirect target got nothing')
})

test('splits large bursts into notices a receiver accepts', async (t) => {
  const peer = await receiver(t)
  const { b } = broadcaster(t, { peers: [peer.url] })

  const many = Array.from({ length: 1500 }, (_, i) => ({ tenant: `t${i}`, revision: 1 }))
  t.same(await b.notify(many), { acked: 1, total: 1 })
  t.same(peer.notices.map((notice) => notice.entries.length), [1000, 500])

  const long = Array.from({ length: 300 }, (_, i) => change(`${'x'.repeat(120)}${i}`, 2 ** 40))
  t.same(await b.notify(long), { acked: 1, total: 1 }, 'under the 64 KiB body limit')
  t.ok(peer.notices.length > 3)
  t.equal(b.status()[0].failed, 0)
})

test('setPeers keeps remaining peers, drops removed ones and releases their waiters', async (t) => {
  const { url: hanging } = await hangingServer(t)
  const good = await receiver(t, { serverId: 'good' })
  const added = await receiver(t, { serverId: 'added' })
  const { b } = broadcaster(t, { peers: [good.url, hanging], ackTimeoutMs: 5000, requestTimeoutMs: 5000 })

  const pending = b.notify([change('t1', 1)])
  await once(good.handled, 'notice')
  t.equal(await immediately(pending), 'waited', 'still waiting for the hanging peer')
  b.setPeers([good.url, added.url])
  t.same(await immediately(pending), { acked: 1, total: 2 }, 'the removed peer\'s waiter is released at once')

  t.match(b.status(), [{ url: good.url, state: 'up', delivered: 1 }, { url: added.url, state: 'unknown', delivered: 0 }])
  t.same(await b.notify([change('t1', 2)]), { acked: 2, total: 2 })
  t.equal(good.requests.length, 2)
  t.equal(added.requests.length, 1)
})

test('close releases waiting writes, stops retries and leaves no handles', async (t) => {
  const count = () => {
    const counts: Record<string, number> = {}
    for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1
    return counts
  }
  // Sockets finish closing a few turns of the event loop after their owner's close() resolves.
  const settle = async () => {
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
  }
  await settle()
  const before = count()
  const peer = await receiver(t)
  const { url: hanging, close: closeHanging } = await hangingServer(t)
  const down = await closedPortUrl()
  const events: Array<{ kind: string, peer: string }> = []
  let downFailed!: () => void
  const downHasFailed = new Promise<void>((resolve) => { downFailed = resolve })
  const { b } = broadcaster(t, {
    peers: [peer.url, hanging, down],
    ackTimeoutMs: 5000,
    requestTimeoutMs: 5000,
    retry: { retries: 1000, minDelayMs: 5, maxDelayMs: 5 },
    observe: (event) => {
      events.push(event)
      if (event.kind === 'failed' && event.peer === down) downFailed()
    }
  })

  const pending = b.notify([change('t1', 1)])
  await once(peer.handled, 'notice')
  t.ok((count().TCPSocketWrap ?? 0) > (before.TCPSocketWrap ?? 0), 'connections are open')

  await downHasFailed // the down peer is being retried

  const closing = b.close()
  const atClose = events.length
  await closing
  // close() resolves once every delivery loop has returned: what they did not do by then, they never do.
  t.same(events.slice(atClose), [], 'no attempt and no retry once close() is called')
  t.match(await immediately(pending), { total: 3 }, 'the waiting write is released by close')
  t.equal(await immediately(b.close()), undefined, 'close is idempotent')
  t.same(await b.notify([change('t1', 2)]), { acked: 0, total: 3 }, 'notify after close sends nothing')
  t.same(events.slice(atClose), [], 'and starts no delivery')
  t.equal(peer.requests.length, 1)

  await peer.app.close()
  await closeHanging()
  await settle()
  const after = count()
  for (const type of ['TCPSocketWrap', 'TCPServerWrap', 'Timeout']) t.ok((after[type] ?? 0) <= (before[type] ?? 0), `no ${type} left behind`)
})

/** A peer answering each request with what `answer` says (a status and headers), else as a receiver does. */
async function scriptedPeer (t: Teardown, answer: (n: number, notice: Notice) => { status: number, headers?: Record<string, string> } | undefined) {
  const app = Fastify()
  const notices: Notice[] = []
  const arrivals: number[] = []
  app.post('/webhook/refresh', async (request, reply) => {
    const notice = request.body as Notice
    notices.push(notice)
    arrivals.push(performance.now())
    const scripted = answer(notices.length, notice)
    if (scripted !== undefined) return reply.code(scripted.status).headers(scripted.headers ?? {}).send({ error: 'scripted' })
    return { serverId: 'scripted', revisions: {} }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const { port } = app.server.address() as { port: number }
  return { url: `http://127.0.0.1:${port}`, notices, arrivals }
}

test('the circuit opens after consecutive failures, sends nothing during the cool-down, then one probe', async (t) => {
  keepAlive(t)
  let healthy = false
  const peer = await scriptedPeer(t, () => healthy ? undefined : { status: 500 })
  const { b, logs } = broadcaster(t, {
    peers: [peer.url],
    retry: { retries: 10, minDelayMs: 1, maxDelayMs: 2 },
    circuitBreaker: { failureThreshold: 3, cooldownMs: 150 }
  })
  const atOpening: number[] = []
  logs.events.on('info', (obj: { cooldownMs?: number }) => { if (obj.cooldownMs !== undefined) atOpening.push(peer.notices.length) })

  t.same(await b.notify([change('t1', 1)]), { acked: 0, total: 1 })
  await logs.until('info', 1)
  t.same(atOpening, [3], 'opened at the third consecutive failure, although ten retries were allowed')
  t.match(b.status()[0], { state: 'down', circuit: 'open', consecutiveFailures: 3 })
  t.ok(b.status()[0].nextAttemptAt, 'shows when sending resumes')

  t.same(await immediately(b.notify([change('t1', 2), change('t2', 1)])), { acked: 0, total: 1 }, 'an open circuit is not waited for')
  await logs.until('info', 2)
  t.same(atOpening, [3, 4], 'after the cool-down exactly one probe, whose failure reopened the circuit')

  healthy = true
  const recovered = new Promise((resolve) => logs.events.on('info', (obj: { serverId?: string }) => { if (obj.serverId !== undefined) resolve(obj) }))
  await recovered
  t.equal(peer.notices.length, 5, 'the next probe succeeded')
  t.same(peer.notices[4].changes.map((c) => [c.tenant, c.revision]).sort(), [['t1', 2], ['t2', 1]], 'the probe carried the coalesced latest revisions')
  t.match(b.status()[0], { state: 'up', circuit: 'closed', consecutiveFailures: 0, nextAttemptAt: null, tenantsBehind: 0 })
})

test('Retry-After on 503 is honoured before the next attempt', async (t) => {
  keepAlive(t)
  const peer = await scriptedPeer(t, (n) => n === 1 ? { status: 503, headers: { 'retry-after': '1' } } : undefined)
  const { b, logs } = broadcaster(t, { peers: [peer.url], retry: { retries: 3, minDelayMs: 1, maxDelayMs: 2 } })
  await b.notify([change('t1', 1)])
  t.match(b.status()[0], { state: 'down', lastError: 'HTTP 503', circuit: 'closed' })
  t.ok(b.status()[0].nextAttemptAt, 'the hold is visible')
  await logs.until('info', 1)
  t.equal(peer.notices.length, 2)
  const gap = peer.arrivals[1] - peer.arrivals[0]
  t.ok(gap >= 900, `waited ${Math.round(gap)} ms for Retry-After: 1 (the backoff alone is at most 2 ms)`)
  t.match(b.status()[0], { state: 'up', nextAttemptAt: null })
})

test('Retry-After on 429 is capped by retry.maxRetryAfterMs', async (t) => {
  keepAlive(t)
  const peer = await scriptedPeer(t, (n) => n === 1 ? { status: 429, headers: { 'retry-after': '3600' } } : undefined)
  const { b, logs } = broadcaster(t, { peers: [peer.url], retry: { retries: 3, minDelayMs: 1, maxDelayMs: 2, maxRetryAfterMs: 100 } })
  await b.notify([change('t1', 1)])
  const hold = Date.parse(b.status()[0].nextAttemptAt as string) - Date.now()
  t.ok(hold <= 100, 'held for at most the cap, not an hour')
  await logs.until('info', 1)
  t.equal(peer.notices.length, 2, 'retried after the capped wait')
  t.ok(peer.arrivals[1] - peer.arrivals[0] >= 50, 'but it did wait')
})

test('other 4xx answers are not retried', async (t) => {
  const peer = await scriptedPeer(t, (_n, notice) => notice.changes[0].tenant === 'bad' ? { status: 400 } : undefined)
  const { b, logs } = broadcaster(t, { peers: [peer.url], retry: { retries: 5, minDelayMs: 1, maxDelayMs: 2 } })
  t.same(await b.notify([change('bad', 1)]), { acked: 0, total: 1 })
  await logs.until('debug', 1) // given up
  t.equal(peer.notices.length, 1, 'one attempt, no retries')
  t.match(b.status()[0], { state: 'down', lastError: 'HTTP 400', failed: 1 })
  t.same(await b.notify([change('t1', 1)]), { acked: 0, total: 1 }, 'a down peer is not waited for')
  await logs.until('info', 1)
  t.match(b.status()[0], { state: 'up', delivered: 1 }, 'later notices still go out')
})

test('410 Gone stops all sending to that peer, shown in its state and logged once', async (t) => {
  const peer = await scriptedPeer(t, () => ({ status: 410 }))
  const other = await receiver(t)
  const { b, logs } = broadcaster(t, { peers: [peer.url, other.url], retry: { retries: 5, minDelayMs: 1, maxDelayMs: 2 } })
  t.same(await b.notify([change('t1', 1)]), { acked: 1, total: 2 })
  t.match(b.status()[0], { state: 'gone', lastError: 'HTTP 410', failed: 1 })
  t.same(await b.notify([change('t1', 2)]), { acked: 1, total: 2 })
  t.same(await b.notify([change('t1', 3)]), { acked: 1, total: 2 })
  t.equal(peer.notices.length, 1, 'nothing sent after the 410')
  t.equal(other.notices.length, 3, 'the other peer still gets everything')
  t.equal(logs.entries.filter((entry) => /410/.test(entry.msg)).length, 1, 'logged once')
})

test('status shows each peer\'s lag: per tenant, the revision it acknowledged vs ours', async (t) => {
  const peer = await scriptedPeer(t, (_n, notice) => notice.changes.some((c) => c.tenant === 'bad') ? { status: 500 } : undefined)
  const { b, logs } = broadcaster(t, { peers: [peer.url] })
  await b.notify([change('t1', 1), change('bad', 1)])
  t.match(b.status()[0], { state: 'down', tenantsBehind: 2 })
  t.same(b.status()[0].lag.sort((x, y) => x.tenant < y.tenant ? -1 : 1), [
    { tenant: 'bad', acked: null, revision: 1 },
    { tenant: 't1', acked: null, revision: 1 }
  ])
  await b.notify([change('t1', 2)]) // the peer is down: not waited for
  await logs.until('info', 1) // up again
  t.same(b.status()[0].lag, [{ tenant: 'bad', acked: null, revision: 1 }], 't1 is acknowledged at our revision')
  await b.notify([change('t1', 3), change('bad', 2)])
  await logs.until('warn', 2) // down again
  t.same(b.status()[0].lag.sort((x, y) => x.tenant < y.tenant ? -1 : 1), [
    { tenant: 'bad', acked: null, revision: 2 },
    { tenant: 't1', acked: 2, revision: 3 }
  ], 'acknowledged 2, ours 3')
  t.equal(b.status()[0].tenantsBehind, 2)
})

/** Resolves once `ready()` holds, checking after each turn of the event loop (bounded: 5 s). */
async function until (ready: () => boolean): Promise<void> {
  const started = Date.now()
  while (!ready()) {
    if (Date.now() - started > 5000) throw new Error('timed out waiting')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

test('contact from a peer we gave up on, by its URL or its serverId, sends what is queued at once, not after the cool-down', async (t) => {
  keepAlive(t)
  let healthy = true
  const peer = await scriptedPeer(t, () => healthy ? undefined : { status: 500 })
  const { b } = broadcaster(t, { peers: [peer.url], circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 } })
  t.same(await b.notify([change('t1', 1)]), { acked: 1, total: 1 }, 'up: its serverId is known')

  healthy = false
  await b.notify([change('t1', 2)])
  t.match(b.status()[0], { state: 'down', circuit: 'open' }, 'given up on for a minute')
  await b.notify([change('t1', 3)])
  healthy = true
  b.contact('another', 'http://127.0.0.1:1')
  b.contact('scripted-not', undefined)
  t.match(b.status()[0], { state: 'down', circuit: 'open' }, 'contact from others changes nothing')
  t.equal(peer.notices.length, 2)

  b.contact('another', peer.url)
  t.match(b.status()[0], { state: 'unknown', circuit: 'closed', consecutiveFailures: 0, nextAttemptAt: null }, 'named by its URL: revived')
  await until(() => peer.notices.length === 3)
  t.same(peer.notices[2].changes.map((c) => c.revision), [3], 'the queued change went out at once')
  await until(() => b.status()[0].state === 'up')

  healthy = false
  await b.notify([change('t1', 4)])
  t.match(b.status()[0], { state: 'down', circuit: 'open' })
  healthy = true
  b.contact('scripted', undefined)
  await until(() => peer.notices.length === 5)
  t.match(b.status()[0], { circuit: 'closed' }, 'named by its serverId: revived')
  t.same(peer.notices[4].changes.map((c) => c.revision), [4])
})

test('contact changes nothing for a peer that is up, or once the broadcaster is closed', async (t) => {
  let healthy = true
  const peer = await scriptedPeer(t, () => healthy ? undefined : { status: 500 })
  const { b } = broadcaster(t, { peers: [peer.url], circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 } })
  await b.notify([change('t1', 1)])
  const before = b.status()[0]
  b.contact('scripted', peer.url)
  t.same(b.status()[0], before, 'nothing to revive')
  t.equal(peer.notices.length, 1)

  healthy = false
  await b.notify([change('t1', 2)])
  await b.close()
  b.contact('scripted', peer.url)
  t.match(b.status()[0], { state: 'down', circuit: 'open' }, 'closed: left as it was')
})

test('announce sends every peer one notice without changes, carrying the database and URL, and revives those that answer', async (t) => {
  keepAlive(t)
  let healthy = false
  const flaky = await scriptedPeer(t, () => healthy ? undefined : { status: 500 })
  const gone = await scriptedPeer(t, () => ({ status: 410 }))
  const dead = await closedPortUrl()
  const { b, logs } = broadcaster(t, {
    peers: [flaky.url, gone.url, dead],
    databaseId: () => 'db-1',
    publicUrl: 'http://sender.example',
    circuitBreaker: { failureThreshold: 1, cooldownMs: 60_000 }
  })
  await b.notify([change('t1', 1)])
  t.match(b.status().map((s) => s.state), ['down', 'gone', 'down'])
  t.equal(gone.notices.length, 1)

  healthy = true
  await b.announce()
  t.equal(gone.notices.length, 1, 'a gone peer is not announced to')
  const announced = flaky.notices.find((notice) => notice.changes.length === 0)
  t.match(announced, { type: 'policy.changed', origin: 'sender', database: 'db-1', url: 'http://sender.example', changes: [] })
  t.ok(logs.entries.some((entry) => entry.level === 'debug' && (entry.obj as { peer?: string }).peer === dead), 'the dead peer\'s failure is logged, not thrown')
  await until(() => flaky.notices.some((notice) => notice.changes.some((c) => c.revision === 1)))
  await until(() => b.status()[0].state === 'up')
  t.match(b.status()[0], { circuit: 'closed' }, 'its answer revived it: the queued change went out at once')

  await b.close()
  const count = flaky.notices.length
  await b.announce()
  t.equal(flaky.notices.length, count, 'nothing announced once closed')
})

test('a gone peer is neither sent to nor waited for, and a write with no peer to wait for returns at once', async (t) => {
  const gone = await scriptedPeer(t, () => ({ status: 410 }))
  const { b } = broadcaster(t, { peers: [gone.url] })
  await b.notify([change('t1', 1)])
  t.match(b.status()[0], { state: 'gone' })
  t.same(await immediately(b.notify([change('t1', 2)])), { acked: 0, total: 1 })
  t.equal(gone.notices.length, 1)
})

test('a write with no change returns at once and sends nothing', async (t) => {
  const a = await receiver(t)
  const { b } = broadcaster(t, { peers: [a.url] })
  t.same(await immediately(b.notify([])), { acked: 0, total: 1 })
  t.same(b.status().map((peer) => peer.state), ['unknown'], 'no peer waited for, none marked down')
  t.equal(a.requests.length, 0)
})

test('delivered and failed events measure the attempt\'s own latency', async (t) => {
  const events: Array<{ kind: string, latencyMs?: number }> = []
  let healthy = true
  const peer = await scriptedPeer(t, () => healthy ? undefined : { status: 500 })
  const { b } = broadcaster(t, { peers: [peer.url], observe: (event) => events.push(event) })
  await b.notify([change('t1', 1)])
  healthy = false
  await b.notify([change('t1', 2)])
  const timed = events.filter((event) => event.kind === 'delivered' || event.kind === 'failed')
  t.same(timed.map((event) => event.kind), ['delivered', 'failed'])
  for (const event of timed) t.ok(event.latencyMs! >= 0 && event.latencyMs! < 5000, `${event.kind}: ${event.latencyMs} ms`)
})

test('setPeers after close changes nothing', async (t) => {
  const peer = await receiver(t)
  const { b } = broadcaster(t, { peers: [peer.url] })
  await b.close()
  b.setPeers([peer.url, 'http://127.0.0.1:1'])
  t.same(b.status().map((s) => s.url), [peer.url], 'the list is frozen once closed')
})

test('a notice carries the sender\'s database and URL', async (t) => {
  const peer = await receiver(t)
  const { b } = broadcaster(t, { peers: [peer.url], databaseId: () => 'db-1', publicUrl: 'http://sender.example' })
  await b.notify([change('t1', 1)])
  t.match(peer.bodies[0], { origin: 'sender', database: 'db-1', url: 'http://sender.example' })
})
