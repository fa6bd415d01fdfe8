/**
 * Membership between example-server processes on one SQLite file, with no peer list: a new process
 * is in every /servers and acknowledges the next write; SIGTERM takes it out (exit 0); SIGKILL takes
 * it out once its row expires, writes meanwhile answering (a refused connection releases them); a
 * restart with the same SERVER_ID replaces its row. Waits are positive, with deadlines ≥ 60 s for a
 * loaded machine; no durations are asserted (bench/ measures them).
 */
import { rmSync } from 'node:fs'
import tap, { test } from 'tap'
import { startCluster, waitHealthy, waitPeers, type Cluster, type Instance } from '../../examples/demo.js'
import { request } from '../helpers/http.js'

tap.setTimeout(600000)

const PERIODS = { MEMBERSHIP_HEARTBEAT_MS: '200', MEMBERSHIP_TTL_MS: '3000', MEMBERSHIP_POLL_MS: '100' }

async function servers (instance: Instance): Promise<Array<{ url: string, serverId: string | null, source: string, incarnation: string | null, state: string }>> {
  return (await request('GET', `${instance.url}/servers`)).body.peers
}

test('processes on one SQLite file find each other: join, graceful leave, SIGKILL, restart', async (t) => {
  const cluster: Cluster = await startCluster({ size: 2, env: { ...PERIODS, ACK_TIMEOUT_MS: '30000', SYNC_INTERVAL_MS: '0' } })
  t.teardown(async () => {
    await cluster.stop()
    rmSync(cluster.dir, { recursive: true, force: true })
  })
  await waitHealthy(cluster, 120000)
  await waitPeers(cluster.instances, 60000)
  const [s1, s2] = cluster.instances

  // Join: no peer list anywhere.
  const s3 = await cluster.add()
  await waitHealthy({ ...cluster, instances: [s3] }, 120000)
  await waitPeers([s1, s2, s3], 60000)
  for (const instance of [s1, s2]) {
    t.match((await servers(instance)).find((peer) => peer.url === s3.url), { source: 'membership', incarnation: String }, `${instance.serverId} lists server-3 from the membership`)
  }
  const write = await request('POST', `${s1.url}/create-group`, { tenant: 't1', group: 'g' })
  t.match(write.body, { revision: 1, peers: { acked: 2, total: 2 } }, 'the next write is acknowledged by both others')
  t.match((await request('GET', `${s3.url}/health`)).body, { status: 'ok', membership: 'ok' })

  // Graceful leave.
  s3.child.kill('SIGTERM')
  t.equal(await s3.exited, 0, 'SIGTERM: exit 0')
  await waitPeers([s1, s2], 60000)
  t.pass('out of every send set')

  // Crash: SIGKILL leaves its row; writes go on, and it expires out.
  const s4 = await cluster.add()
  await waitHealthy({ ...cluster, instances: [s4] }, 120000)
  await waitPeers([s1, s2, s4], 60000)
  const incarnation = (await servers(s1)).find((peer) => peer.url === s4.url)?.incarnation
  s4.child.kill('SIGKILL')
  t.equal(await s4.exited, 'SIGKILL')
  const during = await request('POST', `${s1.url}/create-group`, { tenant: 't1', group: 'h' })
  t.equal(during.status, 200, 'a write while the killed instance is still a member answers')
  t.equal(during.body.peers.acked, 1, 'server-2 acknowledged; the killed one refused at once')
  await waitPeers([s1, s2], 60000)
  t.pass('the killed instance expired out of every send set')

  // Restart with the same serverId: a new incarnation replaces the row.
  const again = await cluster.add(s4.serverId)
  await waitHealthy({ ...cluster, instances: [again] }, 120000)
  await waitPeers([s1, s2, again], 60000)
  const listed = (await servers(s1)).find((peer) => peer.url === again.url)
  t.ok(listed?.incarnation !== undefined && listed.incarnation !== incarnation, 'a new incarnation')
  t.equal((await servers(s1)).filter((peer) => peer.url === s4.url).length, 0, 'the URL of the killed incarnation is gone')
  const last = await request('POST', `${s2.url}/create-group`, { tenant: 't1', group: 'i' })
  t.match(last.body, { revision: 3, peers: { acked: 2, total: 2 } })
  t.match((await request('GET', `${again.url}/check-access?tenant=t1&user=u&permission=p:q&minRevision=3`)).body, { revision: 3 })
})
