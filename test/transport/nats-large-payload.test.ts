/**
 * nats: a notice whose envelope is over `maxPayloadBytes` goes out with tenant + revision only,
 * still signed; the receiver reads the changelog instead of applying a carried change, and still
 * acknowledges the write (it is visible there when the write returns): test/helpers/transport-scenarios.ts.
 */
import t from 'tap'
import { unreachable } from '../helpers/databases.js'
import { NATS_URL, randomName, reachable, startBrokerNodes } from '../helpers/brokers.js'
import { natsClient, record } from '../helpers/nats-client.js'
import { largeNoticeIsAHint } from '../helpers/transport-scenarios.js'

if (!await reachable(NATS_URL)) {
  unreachable(t, 'NATS', NATS_URL)
} else {
  t.test('an envelope over the limit carries tenant + revision; the receiver reads the changelog', async (t) => {
    const subject = randomName()
    const nodes = await startBrokerNodes(t, 2, { type: 'nats', servers: NATS_URL, subject, maxPayloadBytes: 512 })
    await largeNoticeIsAHint(t, { type: 'nats', acknowledged: true }, nodes, await record(await natsClient(t, NATS_URL), subject))
  })
}
