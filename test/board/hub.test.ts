/**
 * lib/board/hub.ts on its own: the propagation log's bound and matching, a peer's report filling in
 * what the peer status lacks, ticks that do not overlap, and a failing snapshot that only logs.
 */
import Fastify from 'fastify'
import { test } from 'tap'
import { BoardHub, PROPAGATION_WRITES, PropagationLog, type BoardSnapshot, type BoardSources } from '../../lib/board/hub.js'
import { parseSecret } from '../../lib/broadcast/signature.js'
import type { PeerStatus } from '../../lib/broadcast/status.js'
import policyCache from '../../lib/plugin.js'
import { SECRET } from '../helpers/app.js'

const change = (revision: number) => ({ tenant: 't', revision })

test('the propagation log keeps the latest writes and one acknowledgement per peer', async (t) => {
  const log = new PropagationLog('me')
  for (let revision = 1; revision <= PROPAGATION_WRITES + 5; revision++) log.committed([change(revision)])
  const samples = log.samples()
  t.equal(samples.length, PROPAGATION_WRITES, 'bounded')
  t.same(samples.map((s) => s.revision).slice(0, 2), [PROPAGATION_WRITES + 5, PROPAGATION_WRITES + 4], 'newest first')
  t.equal(samples.at(-1)?.revision, 6, 'the oldest dropped')

  const top = PROPAGATION_WRITES + 5
  log.observe({ kind: 'failed', peer: 'http://p', changes: [change(top)], latencyMs: 1 })
  log.observe({ kind: 'delivered', peer: 'http://p', changes: [change(top), change(1)], latencyMs: 1 })
  log.observe({ kind: 'delivered', peer: 'http://p', changes: [change(top)], latencyMs: 1 })
  log.observe({ kind: 'delivered', peer: 'http://q', changes: [change(top)], latencyMs: 1 })
  const [newest] = log.samples()
  t.same(newest.acks.map((ack) => ack.peer), ['http://p', 'http://q'], 'a failure is no acknowledgement; a repeat counts once; a forgotten write is ignored')
  t.match(newest, { origin: 'me', tenant: 't' })
  newest.acks.length = 0
  t.equal(log.samples()[0].acks.length, 2, 'samples are copies')
})

function sources (overrides: Partial<BoardSources> = {}): BoardSources {
  return {
    serverId: 'hub',
    url: null,
    incarnation: null,
    keys: [parseSecret(SECRET, 'secret')],
    path: '/policy-board',
    maxStreams: 4,
    intervalMs: 60000,
    closing: () => false,
    peers: () => [],
    cachedRevision: () => null,
    cachedRevisions: () => [],
    transport: () => ({ type: 'webhook', state: 'up', acknowledged: true, channel: null, subscribedAt: null, subscriptions: 0, lastError: null, published: 0, received: 0, hints: 0, dropped: 0 }),
    log: { debug: () => {} },
    ...overrides
  }
}

test('a peer\'s report names it when its status does not', async (t) => {
  const peer = Fastify()
  t.teardown(() => peer.close())
  await peer.register(policyCache, { board: true, serverId: 'far', webhookSecret: SECRET, membership: false, syncIntervalMs: 0 })
  const url = await peer.listen({ port: 0, host: '127.0.0.1' })
  const status = { url, serverId: null, state: 'unknown', incarnation: null, source: 'static', heartbeatAgeMs: null, delivered: 0, failed: 0, latencyMs: null } as unknown as PeerStatus
  const hub = new BoardHub(sources({ peers: () => [status, { ...status, url: 'http://127.0.0.1:9', state: 'gone' }] }))
  const snapshot = await hub.snapshot(null)
  t.match(snapshot.members[1], { serverId: 'far', url, reachable: true, incarnation: null })
  t.match(snapshot.members[2], { serverId: null, state: 'gone', reachable: false }, 'a gone peer is not asked')
})

test('ticks do not overlap; a failing snapshot is logged, the stream stays', async (t) => {
  let calls = 0
  const logged: unknown[] = []
  const hub = new BoardHub(sources({
    cachedRevisions: () => {
      calls++
      if (calls === 1) throw new Error('boom')
      return []
    },
    log: { debug: (obj) => { logged.push(obj) } }
  }))
  const received: BoardSnapshot[] = []
  let ended = 0
  const close = hub.open(null, (snapshot) => received.push(snapshot), () => { ended++ })
  // The first tick is still gathering: opening a second stream starts no second tick.
  hub.open('t', (snapshot) => received.push(snapshot), () => { ended++ })
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(calls, 1, 'one tick ran')
  t.match(logged, [{ err: { message: 'boom' } }], 'its failure was logged')
  t.same(received, [], 'nothing sent from a failed tick')
  close()
  hub.close()
  t.equal(ended, 1, 'close ends the streams still open')
  t.throws(() => hub.open(null, () => {}, () => {}), { code: 'FST_POLICY_CACHE_BOARD_BUSY' })
})
