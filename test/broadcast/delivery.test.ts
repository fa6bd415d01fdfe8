/** One delivery attempt: the signed request, the reply check, what a failure means, Retry-After. */
import { EventEmitter, once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { test } from 'tap'
import { classify, describe, HttpStatusError, retryAfterMs, WebhookClient } from '../../lib/broadcast/delivery.js'
import { parseSecret, verify } from '../../lib/broadcast/signature.js'

interface Teardown { teardown: (fn: () => unknown) => void }

const key = parseSecret('delivery-test-secret-0123456789', 'webhookSecret')
const otherKey = parseSecret('delivery-test-rotated-0123456789', 'webhookSecret')

/** A local HTTP server answering with `answer`; records each request's headers and raw body, and emits `request`. */
async function peer (t: Teardown, answer: (response: ServerResponse) => void) {
  const received: Array<{ method?: string, url?: string, headers: IncomingMessage['headers'], body: Buffer }> = []
  const events = new EventEmitter()
  const server = createServer(async (request, response) => {
    const chunks: Buffer[] = []
    for await (const chunk of request) chunks.push(chunk as Buffer)
    received.push({ method: request.method, url: request.url, headers: request.headers, body: Buffer.concat(chunks) })
    events.emit('request')
    answer(response)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/webhook/refresh`, received, events }
}

function client (t: Teardown, options: { requestTimeoutMs?: number, maxRetryAfterMs?: number } = {}) {
  const c = new WebhookClient({ keys: [key, otherKey], requestTimeoutMs: options.requestTimeoutMs ?? 2000, maxRetryAfterMs: options.maxRetryAfterMs ?? 60000 })
  t.teardown(() => c.close())
  return c
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) => (response: ServerResponse) => {
  response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body))
}

test('post sends the body signed by every key under the message id, and resolves with the reply', async (t) => {
  const { url, received } = await peer(t, json(200, { serverId: 'b', revisions: { t1: 3, t2: null } }))
  const body = '{"type":"policy.changed","origin":"a","changes":[{"tenant":"t1","revision":3}]}'
  const reply = await client(t).post(url, 'msg_one', body)
  t.same(reply, { serverId: 'b', revisions: { t1: 3, t2: null } })

  t.equal(received.length, 1)
  const [{ method, url: path, headers, body: raw }] = received
  t.equal(method, 'POST')
  t.equal(path, '/webhook/refresh')
  t.equal(headers['content-type'], 'application/json')
  t.equal(raw.toString(), body, 'the body as given, byte for byte')
  t.equal(headers['webhook-id'], 'msg_one')
  const signature = String(headers['webhook-signature'])
  t.equal(signature.split(' ').length, 2, 'one signature per key')
  const now = Math.floor(Date.now() / 1000)
  const signed = { id: 'msg_one', timestamp: String(headers['webhook-timestamp']), signature }
  t.ok(verify([key], signed, raw, now), 'verifies under the first key')
  t.ok(verify([otherKey], signed, raw, now), 'and under the second')
})

test('a 2xx that is not a receiver\'s reply is a failure', async (t) => {
  for (const [name, answer] of [
    ['no serverId', json(200, { revisions: {} })],
    ['null', json(200, null)],
    ['not JSON', (response: ServerResponse) => { response.writeHead(200).end('ok') }]
  ] as const) {
    const { url } = await peer(t, answer)
    const posted = client(t).post(url, 'msg_x', '{}')
    if (name === 'not JSON') await t.rejects(posted, name)
    else await t.rejects(posted, { message: 'the reply is not a webhook receiver\'s' }, name)
  }
  const { url } = await peer(t, json(200, { serverId: 'b' }))
  t.same(await client(t).post(url, 'msg_x', '{}'), { serverId: 'b', revisions: undefined }, 'revisions may be missing')
  const { url: edge } = await peer(t, json(299, { serverId: 'b', revisions: {} }))
  t.same(await client(t).post(edge, 'msg_x', '{}'), { serverId: 'b', revisions: {} }, '299 is a 2xx')
})

test('a reply larger than 1 MiB is a failure, however it starts', async (t) => {
  const big = JSON.stringify({ serverId: 'b', revisions: {}, padding: 'x'.repeat(1024 * 1024) })
  const { url } = await peer(t, (response) => { response.writeHead(200, { 'content-type': 'application/json' }).end(big) })
  await t.rejects(client(t).post(url, 'msg_x', '{}'))
  const fits = JSON.stringify({ serverId: 'b', revisions: {}, padding: 'x'.repeat(1000 * 1000) })
  const { url: other } = await peer(t, (response) => { response.writeHead(200, { 'content-type': 'application/json' }).end(fits) })
  t.same(await client(t).post(other, 'msg_x', '{}'), { serverId: 'b', revisions: {} }, 'just under it is fine')
})

test('a non-2xx is an HttpStatusError; Retry-After is read on 429 and 503 only, capped', async (t) => {
  const cases: Array<[number, Record<string, string>, number | undefined]> = [
    [500, { 'retry-after': '3' }, undefined],
    [404, {}, undefined],
    [429, { 'retry-after': '3' }, 3000],
    [503, { 'retry-after': '120' }, 10000],
    [503, {}, undefined],
    [307, { location: 'http://127.0.0.1:9/' }, undefined]
  ]
  for (const [status, headers, wait] of cases) {
    const { url, received } = await peer(t, json(status, { error: 'x' }, headers))
    const err = await client(t, { maxRetryAfterMs: 10000 }).post(url, 'msg_x', '{}').then(() => null, (e: unknown) => e)
    t.ok(err instanceof HttpStatusError, `${status} rejects with an HttpStatusError`)
    t.match(err, { statusCode: status, message: `HTTP ${status}` }, `${status}`)
    t.equal((err as HttpStatusError).retryAfterMs, wait, `${status}: Retry-After`)
    t.equal(received.length, 1, `${status}: one request, no redirect followed`)
  }
})

test('a peer that never answers is a failure after requestTimeoutMs', async (t) => {
  const { url } = await peer(t, () => {})
  await t.rejects(client(t, { requestTimeoutMs: 50 }).post(url, 'msg_x', '{}'))
})

test('close aborts a request in flight', async (t) => {
  const { url, events } = await peer(t, () => {})
  const c = client(t)
  const arrived = once(events, 'request')
  const pending = c.post(url, 'msg_x', '{}')
  await arrived
  await c.close()
  await t.rejects(pending)
})

test('classify: retry transport errors, 5xx, 408 and 429; give up other 4xx; stop on 410', async (t) => {
  t.same(classify(new Error('ECONNREFUSED')), { next: 'retry', waitMs: 0 })
  t.same(classify('not even an error'), { next: 'retry', waitMs: 0 })
  t.same(classify(new HttpStatusError(500, undefined)), { next: 'retry', waitMs: 0 })
  t.same(classify(new HttpStatusError(503, 2000)), { next: 'retry', waitMs: 2000 })
  t.same(classify(new HttpStatusError(429, 500)), { next: 'retry', waitMs: 500 })
  t.same(classify(new HttpStatusError(408, undefined)), { next: 'retry', waitMs: 0 })
  t.same(classify(new HttpStatusError(307, undefined)), { next: 'retry', waitMs: 0 })
  for (const status of [400, 401, 404, 413, 415, 499]) t.same(classify(new HttpStatusError(status, undefined)), { next: 'give-up', waitMs: 0 }, String(status))
  t.same(classify(new HttpStatusError(410, undefined)), { next: 'gone', waitMs: 0 })
})

test('describe: the error code in front of the message unless the message has it', async (t) => {
  t.equal(describe(Object.assign(new Error('connect refused'), { code: 'ECONNREFUSED' })), 'ECONNREFUSED: connect refused')
  t.equal(describe(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' })), 'connect ECONNREFUSED 127.0.0.1:9')
  t.equal(describe(new HttpStatusError(502, undefined)), 'HTTP 502')
  t.equal(describe('plain'), 'plain')
})

test('Retry-After: delay-seconds or an HTTP-date, capped; anything else ignored', async (t) => {
  const now = Date.parse('Sun, 29 Nov 2026 18:00:00 GMT')
  t.equal(retryAfterMs('2', now, 60000), 2000)
  t.equal(retryAfterMs(' 0 ', now, 60000), 0)
  t.equal(retryAfterMs('Sun, 29 Nov 2026 18:00:05 GMT', now, 60000), 5000)
  t.equal(retryAfterMs('Sun, 29 Nov 2026 17:00:00 GMT', now, 60000), 0, 'a past date means now')
  t.equal(retryAfterMs('Sunday, 29-Nov-26 18:00:07 GMT', now, 60000), 7000, 'the obsolete RFC 850 form')
  t.equal(retryAfterMs('3600', now, 30000), 30000, 'capped')
  t.equal(retryAfterMs(['3', '9'], now, 60000), 3000, 'the first of repeated headers')
  t.equal(retryAfterMs(undefined, now, 60000), undefined)
  t.equal(retryAfterMs('', now, 60000), undefined)
  t.equal(retryAfterMs('soon', now, 60000), undefined)
  t.equal(retryAfterMs('-5', now, 60000), undefined)
  for (const value of ['5s', '1.5', '5 Sun, 29 Nov 2026 18:00:05 GMT', 'Su, 29 Nov 2026 18:00:05 GMT', 'Sunday soon']) {
    t.equal(retryAfterMs(value, now, 60000), undefined, JSON.stringify(value))
  }
})
