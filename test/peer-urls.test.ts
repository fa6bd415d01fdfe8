/**
 * Peer URL hygiene: only http/https, no credentials, no query or fragment (each a startup error
 * naming the option), this instance's own URL dropped and duplicates collapsed (each a warning),
 * and redirects never followed.
 */
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import { test, type Test } from 'tap'
import policyCache, { type PolicyCacheOptions } from '../lib/plugin.js'
import { SECRET } from './helpers/app.js'

async function startupError (options: PolicyCacheOptions): Promise<Error | null> {
  const app = Fastify()
  const err = await app.register(policyCache, { syncIntervalMs: 0, webhookSecret: SECRET, ...options }).ready().then(() => null, (e: Error) => e)
  await app.close()
  return err
}

/** An app whose warn-level logs are collected. */
async function logged (t: Test, options: PolicyCacheOptions) {
  const lines: Array<{ level: number, msg: string, peer?: string, reason?: string }> = []
  const stream = new Writable({
    write (chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)))
      done()
    }
  })
  const app = Fastify({ logger: { level: 'warn', stream } })
  t.teardown(() => app.close())
  await app.register(policyCache, { syncIntervalMs: 0, webhookSecret: SECRET, ...options })
  await app.ready()
  return { app, warnings: () => lines.filter((line) => line.level === 40 && line.peer !== undefined) }
}

test('each bad peer URL is a startup error naming the option, static or resolved by a function', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['ftp://127.0.0.1:3001', /"ftp:" is not http or https/],
    ['file:///etc/passwd', /"file:" is not http or https/],
    ['javascript:alert(1)', /"javascript:" is not http or https/],
    ['ws://127.0.0.1:3001', /"ws:" is not http or https/],
    ['http://user:pw@127.0.0.1:3001', /must not carry credentials/],
    ['http://user@127.0.0.1:3001', /must not carry credentials/],
    ['http://127.0.0.1:3001/?x=1', /must not have a query or fragment/],
    ['http://127.0.0.1:3001/#frag', /must not have a query or fragment/],
    ['127.0.0.1:3001', /is not http or https|is not a URL/],
    ['not a url', /is not a URL/]
  ]
  for (const [url, reason] of cases) {
    for (const peers of [[url], async () => [url]]) {
      const err = await startupError({ peers })
      t.match(err, { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /^Invalid option "peers": / }, `${url} (${typeof peers})`)
      t.match(err?.message, reason, url)
      t.notMatch(err?.message ?? '', /pw@/, 'never echoes credentials')
    }
  }
  t.match(await startupError({ publicUrl: 'http://admin:secret@127.0.0.1:3000' }), { message: /^Invalid option "publicUrl": .*credentials/ })
  t.match(await startupError({ publicUrl: 'gopher://127.0.0.1:3000' }), { message: /^Invalid option "publicUrl": / })
})

test('this instance\'s own URL is dropped and duplicates collapsed, each with a warning', async (t) => {
  const { app, warnings } = await logged(t, {
    publicUrl: 'http://LOCALHOST:80/',
    peers: ['http://127.0.0.1:3001/', 'http://localhost', 'http://127.0.0.1:3001', 'HTTP://127.0.0.1:3001//', 'https://10.0.0.2:443']
  })
  t.same(app.policyCache.peers().map((peer) => peer.url), ['http://127.0.0.1:3001', 'https://10.0.0.2'])
  t.same(warnings().map(({ peer, reason }) => [peer, reason]), [
    ['http://localhost', 'publicUrl'],
    ['http://127.0.0.1:3001', 'duplicate'],
    ['http://127.0.0.1:3001', 'duplicate']
  ])
  t.match(warnings()[0].msg, /this instance's publicUrl/)

  const resolved = await logged(t, { publicUrl: 'http://127.0.0.1:3000', peers: async () => ['http://127.0.0.1:3000/', 'http://127.0.0.1:3002'] })
  t.same(resolved.app.policyCache.peers().map((peer) => peer.url), ['http://127.0.0.1:3002'])
  t.same(resolved.warnings().map(({ reason }) => reason), ['publicUrl'], 'a function\'s list too')

  const clean = await logged(t, { publicUrl: 'http://127.0.0.1:3000', peers: ['http://127.0.0.1:3002'] })
  t.same(clean.warnings(), [], 'no warning for a clean list')
})

async function listen (server: Server): Promise<string> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

test('a redirecting peer is a failed delivery; the redirect target receives nothing', async (t) => {
  const received: string[] = []
  const target = createServer((request, response) => {
    received.push(`${request.method} ${request.url}`)
    response.writeHead(200, { 'content-type': 'application/json' }).end('{"serverId":"target","revisions":{}}')
  })
  const targetUrl = await listen(target)
  t.teardown(() => { target.closeAllConnections(); target.close() })

  for (const status of [301, 302, 303, 307, 308]) {
    const hits: string[] = []
    const redirector = createServer((request, response) => {
      hits.push(`${request.method} ${request.url}`)
      request.resume()
      response.writeHead(status, { location: `${targetUrl}/webhook/refresh` }).end()
    })
    const url = await listen(redirector)
    t.teardown(() => { redirector.closeAllConnections(); redirector.close() })

    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(policyCache, { syncIntervalMs: 0, webhookSecret: SECRET, peers: [url], retry: { retries: 0 }, ackTimeoutMs: 30000 })
    const outcome = await app.policyCache.createGroup('t1', 'g')
    t.same(outcome.peers, { acked: 0, total: 1 }, `${status}: not acknowledged`)
    t.same(hits, ['POST /webhook/refresh'], `${status}: the peer was asked once`)
    t.match(app.policyCache.peers()[0], { state: 'down', lastError: `HTTP ${status}`, delivered: 0, failed: 1 })
    await app.close()
  }
  t.same(received, [], 'the redirect target never received a request')
})
