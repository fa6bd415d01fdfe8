/**
 * The example server cuts off a client that sends its request too slowly: a body trickled byte by
 * byte, to a policy route and to the webhook (whose signature cannot be checked before the body has
 * arrived), and headers trickled the same way (slowloris). Each gets a 408 and a closed connection
 * within `requestTimeout` (checked every second), while the client is still sending.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'tap'
import { parseConfig } from '../../examples/config.js'
import { HTTP_TIMEOUTS, startServer } from '../../examples/server.js'

const STRONG = 'whsec_' + Buffer.alloc(32, 7).toString('base64')
const TRICKLE_MS = 250

/**
 * Opens a connection, writes `head` at once, then one byte of `rest` every 250 ms. Resolves when
 * the server closes the connection, with what it answered and whether the client was still sending;
 * gives up (rejects) after three times the server's bound, so an uncut request fails the test.
 */
function trickle (port: number, head: string, rest: string): Promise<{ answer: string, stillSending: boolean }> {
  const limit = 3 * HTTP_TIMEOUTS.requestTimeout
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let answer = ''
    let sent = 0
    const timer = setInterval(() => {
      if (sent < rest.length) socket.write(rest[sent++])
    }, TRICKLE_MS)
    const giveUp = setTimeout(() => {
      socket.destroy()
      reject(new Error(`not cut off within ${limit} ms (${sent} of ${rest.length} bytes sent, answer ${JSON.stringify(answer)})`))
    }, limit)
    socket.on('data', (chunk) => { answer += chunk })
    socket.on('error', () => {})
    socket.on('close', () => {
      clearInterval(timer)
      clearTimeout(giveUp)
      resolve({ answer, stillSending: sent < rest.length })
    })
    socket.write(head)
  })
}

test('slow requests are cut off with a 408: trickled bodies (policy route, webhook) and trickled headers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'policy-cache-timeouts-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const config = parseConfig(['0'], { POLICY_DB: join(dir, 'policy.db'), WEBHOOK_SECRET: STRONG, SYNC_INTERVAL_MS: '0' })
  const { app, url } = await startServer(config, { logger: false })
  t.teardown(() => app.close())
  const port = Number(new URL(url).port)

  // Long enough that trickling it takes far beyond the bound: the request never completes by itself.
  const body = JSON.stringify({ tenant: 'acme', group: 'g'.repeat(200) })
  const post = (path: string, headers: string): string =>
    `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n${headers}\r\n`
  const signed = 'webhook-id: msg_1\r\nwebhook-timestamp: ' + Math.floor(Date.now() / 1000) + '\r\nwebhook-signature: v1,AAAA\r\n'

  const [policy, webhook, headers] = await Promise.all([
    trickle(port, post('/create-group', ''), body),
    trickle(port, post('/webhook/refresh', signed), body),
    trickle(port, 'POST /create-group HTTP/1.1\r\n', 'host: 127.0.0.1\r\ncontent-type: application/json\r\n'.repeat(20))
  ])
  for (const [name, cut] of [['policy route body', policy], ['webhook body', webhook], ['headers', headers]] as const) {
    t.match(cut.answer, /^HTTP\/1\.1 408 /, `${name}: 408`)
    t.ok(cut.stillSending, `${name}: cut off while the client was still sending`)
  }

  // An ordinary request on the same server is not affected.
  const ok = await fetch(`${url}/create-group`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tenant: 'acme', group: 'g' }) })
  t.equal(ok.status, 200)
})

// The idle and keep-alive limits are a minute long: checked as set, not waited for.
test('the example server sets its connection and keep-alive timeouts on the HTTP server', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'policy-cache-timeouts-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { app } = await startServer(parseConfig(['0'], { POLICY_DB: join(dir, 'policy.db') }), { logger: false })
  t.teardown(() => app.close())
  t.match(app.server, {
    requestTimeout: HTTP_TIMEOUTS.requestTimeout,
    headersTimeout: HTTP_TIMEOUTS.requestTimeout,
    timeout: HTTP_TIMEOUTS.connectionTimeout,
    keepAliveTimeout: HTTP_TIMEOUTS.keepAliveTimeout
  })
})
