/**
 * `peers: dnsPeers(…)` in the plugin: instances on 127.0.0.1–3, one port for all (as a headless
 * Service gives its pods), find each other through a DNS answer the test controls, and their send
 * sets follow it every `peerRefreshMs`; a failed lookup keeps the last set.
 */
import { once } from 'node:events'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import { test, type Test } from 'tap'
import policyCache, { dnsPeers } from '../../lib/plugin.js'
import { SECRET, tempDir } from '../helpers/app.js'
import { freePort } from '../helpers/cluster.js'
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js'

const NAME = 'policy.default.svc.cluster.local'

/** Resolves with `fn()`'s first truthy value; fails after `timeoutMs` naming `what`. */
async function until<T> (what: string, fn: () => T | Promise<T>, timeoutMs = 30000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await fn()
    if (value !== undefined && value !== null && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

interface Instance {
  app: FastifyInstance
  url: string
  /** Log lines at warn and above, parsed; `warned` fires on each. */
  logs: Array<{ msg: string, err?: { code?: string } }>
  warned: Writable
}

/** One instance at `host`:`port` on the shared SQLite `file`, its peers from `dns`. Closed at the end of the test. */
async function start (t: Test, dns: DnsServer, file: string, host: string, port: number): Promise<Instance> {
  const logs: Instance['logs'] = []
  const warned = new Writable({
    write (chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line))
      warned.emit('line')
      done()
    }
  })
  const app = Fastify({ logger: { level: 'warn', stream: warned } })
  t.teardown(() => app.close())
  const url = `http://${host}:${port}`
  await app.register(policyCache, {
    sqliteFile: file,
    serverId: `pod-${host.split('.')[3]}`,
    publicUrl: url,
    peers: dnsPeers({ name: NAME, port, servers: [dns.address], timeoutMs: 1000 }),
    peerRefreshMs: 50,
    webhookSecret: SECRET,
    syncIntervalMs: 0,
    // A write waits for every peer's acknowledgement however loaded the machine is.
    ackTimeoutMs: 10000
  })
  await app.listen({ port, host })
  return { app, url, logs, warned }
}

/** The peer URLs `/servers` lists, sorted. */
async function servers (instance: Instance): Promise<string[]> {
  const res = await instance.app.inject({ method: 'GET', url: '/servers' })
  return (res.json().peers as Array<{ url: string }>).map((peer) => peer.url).sort()
}

/** Waits until `/servers` lists exactly `expected`. */
async function untilServers (instance: Instance, expected: string[]): Promise<void> {
  const want = JSON.stringify([...expected].sort())
  await until(`${instance.url} sends to ${want}`, async () => JSON.stringify(await servers(instance)) === want)
}

test('instances find each other through the DNS name, and their send sets follow its answer', async (t) => {
  const dns = await startDnsServer(t, { [NAME]: { a: ['127.0.0.1', '127.0.0.2'] } })
  const port = await freePort()
  const file = join(tempDir(t), 'dns.db')
  const [one, two, three] = [
    await start(t, dns, file, '127.0.0.1', port),
    await start(t, dns, file, '127.0.0.2', port),
    await start(t, dns, file, '127.0.0.3', port)
  ]

  // At registration: each instance sends to the others in the answer, never to itself.
  t.same(await servers(one), [two.url])
  t.same(await servers(two), [one.url])
  t.same(await servers(three), [one.url, two.url], 'a pod not (yet) in the answer still sends to the ones that are')
  const first = await one.app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't', group: 'g' } })
  t.same(first.json().peers, { acked: 1, total: 1 })
  await one.app.policyCache.assignUser('t', 'g', 'u')
  t.equal(await three.app.policyCache.check('t', 'u', 'read'), false, 'the third pod holds the tenant')

  // The third pod becomes ready: every send set takes it in at the next refresh, and a write reaches it.
  dns.table.set(NAME, { a: ['127.0.0.3', '127.0.0.2', '127.0.0.1'] })
  await untilServers(one, [two.url, three.url])
  await untilServers(two, [one.url, three.url])
  const second = await one.app.inject({ method: 'POST', url: '/add-permission', payload: { tenant: 't', group: 'g', permission: 'read' } })
  t.same(second.json().peers, { acked: 2, total: 2 }, 'both peers acknowledged the write')
  t.equal(three.app.policyCache.checkSync('t', 'u', 'read'), true, 'the third pod applied the write it acknowledged')

  // The second pod goes away.
  dns.table.set(NAME, { a: ['127.0.0.1', '127.0.0.3'] })
  await untilServers(one, [three.url])
  await untilServers(three, [one.url])

  // DNS fails: the last set is kept, and the failure logged once with its code.
  dns.table.set(NAME, { rcode: 2 })
  while (!one.logs.some((line) => line.err?.code === 'FST_POLICY_CACHE_DNS_PEERS')) await once(one.warned, 'line')
  t.match(one.logs.find((line) => line.err?.code === 'FST_POLICY_CACHE_DNS_PEERS'), { msg: /resolving peers failed; keeping the last list/ })
  t.same(await servers(one), [three.url], 'the last set is kept while DNS fails')

  // Scaled to zero (NXDOMAIN) is no peers, not an error.
  dns.table.delete(NAME)
  await untilServers(one, [])
  await untilServers(three, [])
  const third = await one.app.inject({ method: 'POST', url: '/remove-permission', payload: { tenant: 't', group: 'g', permission: 'read' } })
  t.same(third.json().peers, { acked: 0, total: 0 })
})

test('registration: no records starts with no peers; a failing DNS fails registration with the coded error', async (t) => {
  const dns = await startDnsServer(t, { 'broken.test': { rcode: 2 } })
  const port = await freePort()
  const lonely = await start(t, dns, join(tempDir(t), 'lonely.db'), '127.0.0.1', port)
  t.same(await servers(lonely), [], 'NXDOMAIN at startup: the first pod of a Deployment')
  dns.table.set(NAME, { a: ['127.0.0.1', '127.0.0.2'] })
  await untilServers(lonely, ['http://127.0.0.2:' + port])

  const app = Fastify()
  t.teardown(() => app.close())
  app.register(policyCache, { peers: dnsPeers({ name: 'broken.test', port, servers: [dns.address] }), webhookSecret: SECRET, syncIntervalMs: 0 })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_POLICY_CACHE_DNS_PEERS', message: /"broken\.test".*ESERVFAIL/, cause: { code: 'ESERVFAIL' } })
})
