import { createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import { test } from 'tap'
import { newMessageId, parseSecret, sign } from '../../lib/broadcast/signature.js'
import { join } from 'node:path'
import { SECRET, tempDir } from '../helpers/app.js'
import { freePort, startCluster } from '../helpers/cluster.js'
import { startProxy } from '../helpers/proxy.js'

async function check (url: string, query: string) {
  const res = await fetch(`${url}/check-access?${query}`)
  return await res.json() as { allowed: boolean, revision: number }
}

async function write (url: string, path: string, body: object) {
  const res = await fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, body: await res.json() as { revision: number, changed: boolean, peers: { acked: number, total: number } } }
}

const alice = 'tenant=tenant1&user=alice&permission=documents:read'

test('a write acknowledged by all peers is visible on every instance on the very next check', async (t) => {
  // A write waits only until every peer has acknowledged: a long ackTimeoutMs costs nothing here, and
  // the default 200 ms is missed by a peer on a loaded machine (acked 0 of 2).
  const [a, b, c] = await startCluster(t, 3, { ackTimeoutMs: 60000 })
  // Peers have the tenant cached (the hard case: they must catch up, not just load lazily).
  t.match(await check(b.url, alice), { allowed: false, revision: 0 })
  t.match(await check(c.url, alice), { allowed: false, revision: 0 })

  await write(a.url, '/create-group', { tenant: 'tenant1', group: 'editors' })
  await write(a.url, '/add-permission', { tenant: 'tenant1', group: 'editors', permission: 'documents:read' })
  const assigned = await write(a.url, '/assign-user', { tenant: 'tenant1', group: 'editors', user: 'alice' })
  t.same(assigned.body.peers, { acked: 2, total: 2 })
  t.same(await Promise.all([check(b.url, alice), check(c.url, alice)]), [{ allowed: true, revision: 3 }, { allowed: true, revision: 3 }])

  const revoked = await write(c.url, '/remove-permission', { tenant: 'tenant1', group: 'editors', permission: 'documents:read' })
  t.same(revoked.body, { tenant: 'tenant1', revision: 4, changed: true, peers: { acked: 2, total: 2 } })
  t.same(await check(a.url, alice), { allowed: false, revision: 4 }, 'revocation visible at once on the first instance')
  t.same(await check(b.url, alice), { allowed: false, revision: 4 })

  const servers = await (await fetch(`${a.url}/servers`)).json() as { peers: Array<{ serverId: string, state: string }> }
  t.same(servers.peers.map((p) => [p.serverId, p.state]).sort(), [['node-2', 'up'], ['node-3', 'up']])
})

test('duplicate and out-of-order notices change nothing', async (t) => {
  const [a, b] = await startCluster(t, 2)
  await write(a.url, '/create-group', { tenant: 't1', group: 'g' })
  await write(a.url, '/add-permission', { tenant: 't1', group: 'g', permission: 'p:q' })
  t.match(await check(b.url, 'tenant=t1&user=u&permission=p:q'), { revision: 2 })

  const keys = [parseSecret(SECRET, 'webhookSecret')]
  const send = async (id: string, changes: object[]) => {
    const body = JSON.stringify({ type: 'policy.changed', origin: 'node-x', changes })
    const timestamp = Math.floor(Date.now() / 1000)
    const res = await fetch(`${b.url}/webhook/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': sign(keys, id, timestamp, body) },
      body
    })
    return { status: res.status, body: await res.json() as { revisions: Record<string, number | null> } }
  }
  const old = await send(newMessageId(), [{ tenant: 't1', revision: 1, operation: 'create-group' }])
  t.equal(old.status, 200)
  t.same(old.body.revisions, { t1: 2 }, 'an out-of-order (older) notice does not move the revision back')
  const id = newMessageId()
  t.same((await send(id, [{ tenant: 't1', revision: 2 }])).body.revisions, { t1: 2 })
  t.equal((await send(id, [{ tenant: 't1', revision: 2 }])).status, 200, 'a duplicate is acknowledged')
  t.same(await check(b.url, 'tenant=t1&user=u&permission=p:q'), { allowed: false, revision: 2 })
  t.same((await send(newMessageId(), [{ tenant: 'uncached', revision: 5 }])).body.revisions, { uncached: null }, 'an uncached tenant is left to load lazily')
})

test('a dead peer costs at most one bounded wait', async (t) => {
  const deadPort = await freePort()
  const dead = `http://127.0.0.1:${deadPort}`
  // The longest ackTimeoutMs there is: a write that waited for the dead peer would take a minute, and
  // this test's writes would outlast its timeout. (How fast they are is bench/faults.ts's to measure.)
  const [a] = await startCluster(t, 1, {
    extraPeers: [dead],
    ackTimeoutMs: 60000,
    requestTimeoutMs: 1000,
    retry: { retries: 2, minDelayMs: 10, maxDelayMs: 50 }
  })
  const first = await write(a.url, '/create-group', { tenant: 't1', group: 'g' })
  t.same(first.body.peers, { acked: 0, total: 1 }, 'the refused connection releases the write at once')
  const servers = await (await fetch(`${a.url}/servers`)).json() as { peers: Array<{ state: string, consecutiveFailures: number, lastError: string }> }
  t.match(servers.peers[0], { state: 'down' })
  t.ok(servers.peers[0].consecutiveFailures >= 1)
  t.type(servers.peers[0].lastError, 'string')
  for (let i = 0; i < 5; i++) {
    t.same((await write(a.url, '/add-permission', { tenant: 't1', group: 'g', permission: `p${i}` })).body.peers, { acked: 0, total: 1 }, 'a later write does not wait for the known-down peer')
  }
})

test('a hanging peer: one write pays the bounded wait, the rest do not wait', async (t) => {
  const sockets: Socket[] = []
  const hanging = createServer((socket) => { sockets.push(socket) }) // accepts, never answers
  hanging.listen(0, '127.0.0.1')
  await once(hanging, 'listening')
  t.teardown(() => { for (const s of sockets) s.destroy(); hanging.close() })
  const url = `http://127.0.0.1:${(hanging.address() as { port: number }).port}`
  const [a, b] = await startCluster(t, 2, { extraPeers: [url], ackTimeoutMs: 2000, requestTimeoutMs: 20000 })

  const first = await write(a.url, '/create-group', { tenant: 't1', group: 'g' })
  t.same(first.body.peers, { acked: 1, total: 2 }, 'the healthy peer acked; the hanging one timed out the wait')
  const servers = await (await fetch(`${a.url}/servers`)).json() as { peers: Array<{ url: string, state: string }> }
  t.equal(servers.peers.find((p) => p.url === url)?.state, 'down', 'a peer missing the ack deadline is marked down')
  // That the later writes do not wait for the peer known down is asserted without a clock in
  // test/broadcast/broadcaster.test.ts; what they cost is measured by bench/faults.ts.
  for (let i = 0; i < 5; i++) {
    const res = await write(a.url, '/add-permission', { tenant: 't1', group: 'g', permission: `p${i}` })
    t.same(res.body.peers, { acked: 1, total: 2 })
  }
  const after = await (await fetch(`${a.url}/servers`)).json() as { peers: Array<{ url: string, state: string, delivered: number }> }
  t.match(after.peers.find((p) => p.url === url), { state: 'down', delivered: 0 }, 'the hanging peer stays down, never having acknowledged')
  t.match(await check(b.url, 'tenant=t1&user=u&permission=p4'), { revision: 6 })
})

test('a partitioned peer converges once back, through the next delivery', async (t) => {
  const file = join(tempDir(t), 'shared.db')
  // No sync on b: what heals it here is delivery alone (the sync has its own test below).
  const [b] = await startCluster(t, 1, { file, name: 'b', syncIntervalMs: 0 })
  const proxy = await startProxy(t, Number(new URL(b.url).port))
  // Cut, the peer refuses at once; back, it must ack 'waited for again' however loaded the machine.
  const [a] = await startCluster(t, 1, { file, name: 'a', extraPeers: [proxy.url], ackTimeoutMs: 60000, retry: { retries: 1, minDelayMs: 10, maxDelayMs: 20 } })
  await write(a.url, '/create-group', { tenant: 't1', group: 'g' })
  t.match(await check(b.url, 'tenant=t1&user=u&permission=p:q'), { revision: 1 }, 'b caches the tenant')

  proxy.setUp(false)
  const cut = await write(a.url, '/add-permission', { tenant: 't1', group: 'g', permission: 'p:q' })
  t.same(cut.body.peers, { acked: 0, total: 1 })
  await write(a.url, '/assign-user', { tenant: 't1', group: 'g', user: 'u' })
  t.match(await check(b.url, 'tenant=t1&user=u&permission=p:q'), { allowed: false, revision: 1 }, 'b is stale while partitioned')
  t.match(await check(b.url, 'tenant=t1&user=u&permission=p:q&minRevision=3'), { allowed: true, revision: 3 }, 'a token still gets a fresh answer')
  const lagging = await (await fetch(`${a.url}/servers`)).json() as { peers: Array<{ tenantsBehind: number, lag: unknown[] }> }
  t.match(lagging.peers[0], { state: 'down', tenantsBehind: 1, lag: [{ tenant: 't1', acked: 1, revision: 3 }] }, '/servers shows the lag: b acknowledged 1, we are at 3')

  proxy.setUp(true)
  const healed = await write(a.url, '/create-group', { tenant: 't1', group: 'h' })
  t.same(healed.body.peers, { acked: 0, total: 1 }, 'a peer known down is not waited for, but the delivery goes out')
  let state = ''
  for (let i = 0; i < 100 && state !== 'up'; i++) {
    const servers = await (await fetch(`${a.url}/servers`)).json() as { peers: Array<{ state: string }> }
    state = servers.peers[0].state
    if (state !== 'up') await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(state, 'up', 'b acknowledged a later delivery: back up')
  const caughtUp = await (await fetch(`${a.url}/servers`)).json() as { peers: Array<{ tenantsBehind: number, lag: unknown[] }> }
  t.match(caughtUp.peers[0], { tenantsBehind: 0, lag: [] }, 'no lag once b acknowledged our revision')
  t.same(await check(b.url, 'tenant=t1&user=u&permission=p:q'), { allowed: true, revision: 4 }, 'b converged')
  const next = await write(a.url, '/unassign-user', { tenant: 't1', group: 'g', user: 'u' })
  t.same(next.body.peers, { acked: 1, total: 1 }, 'and is waited for again')
  t.same(await check(b.url, 'tenant=t1&user=u&permission=p:q'), { allowed: false, revision: 5 })
})

test('anti-entropy alone heals a peer that missed every notice', async (t) => {
  const file = join(tempDir(t), 'shared.db')
  const [b] = await startCluster(t, 1, { file, name: 'b', syncIntervalMs: 100 })
  const [a] = await startCluster(t, 1, { file, name: 'a' }) // a does not know b at all: no notices
  await write(a.url, '/create-group', { tenant: 't1', group: 'g' })
  t.match(await check(b.url, 'tenant=t1&user=u&permission=p:q'), { revision: 1 })
  await write(a.url, '/add-permission', { tenant: 't1', group: 'g', permission: 'p:q' })
  await write(a.url, '/assign-user', { tenant: 't1', group: 'g', user: 'u' })
  // Bounded wait for the sync loop (100 ms ± 10 %): poll b until it answers from revision 3.
  let seen = await check(b.url, 'tenant=t1&user=u&permission=p:q')
  for (let i = 0; i < 100 && seen.revision < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    seen = await check(b.url, 'tenant=t1&user=u&permission=p:q')
  }
  t.same(seen, { allowed: true, revision: 3 })
})
