/**
 * The webhook transport (lib/broadcast/webhook-transport.ts): the broadcaster behind the transport
 * interface. Publishing is the broadcaster's notify, peers its statuses (annotated), receiving hands
 * the receiver route's notices to the sink; its status has no channel and no subscription to lose.
 */
import { test } from 'tap'
import { Broadcaster } from '../../lib/broadcast/broadcaster.js'
import type { ReceivedNotice } from '../../lib/broadcast/notice.js'
import { parseSecret } from '../../lib/broadcast/signature.js'
import { WebhookTransport } from '../../lib/broadcast/webhook-transport.js'

const log = { debug: () => {}, info: () => {}, warn: () => {} }
const notice: ReceivedNotice = { origin: 'peer', database: undefined, entries: [{ tenant: 't1', revision: 1, digest: undefined, carried: undefined }] }

test('publish, peers, receive and status', async (t) => {
  // A peer that refuses connections: never acknowledges.
  const broadcaster = new Broadcaster({ serverId: 'me', keys: [parseSecret('webhook-transport-secret-long', 'test')], peers: ['http://127.0.0.1:9'], ackTimeoutMs: 0, log })
  const transport = new WebhookTransport({ broadcaster })
  t.equal(transport.type, 'webhook')
  t.notOk('inTransaction' in transport, 'nothing inside the write\'s transaction')
  t.match(transport.status(), { type: 'webhook', state: 'connecting', acknowledged: true, channel: null, subscriptions: 0 })
  await t.rejects(transport.receive(notice), /not started/)

  const received: ReceivedNotice[] = []
  await transport.start({ deliver: async (n) => { received.push(n); return { t1: 1 } }, hint: async () => {}, resubscribed: async () => {} })
  t.same(await transport.receive(notice), { t1: 1 })
  t.same(received, [notice])
  t.match(transport.status(), { state: 'up', subscriptions: 1, received: 1, hints: 0, dropped: 0, published: 0 })
  t.type(transport.status().subscribedAt, 'string')

  t.same(await transport.publish([{ tenant: 't1', revision: 1 }]), { acked: 0, total: 1 }, 'the broadcaster\'s summary')
  t.same(transport.peers().map((peer) => peer.url), ['http://127.0.0.1:9'])
  const annotated = new WebhookTransport({ broadcaster, annotate: (statuses) => statuses.map((s) => ({ ...s, source: 'both' as const })) })
  t.equal(annotated.peers()[0].source, 'both')

  await transport.close()
  t.equal(transport.status().state, 'closed')
  t.same(await transport.publish([{ tenant: 't1', revision: 2 }]), { acked: 0, total: 1 }, 'nothing sent once closed')
})
