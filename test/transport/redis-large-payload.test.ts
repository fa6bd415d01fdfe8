/**
 * redis: a notice whose envelope is over `maxPayloadBytes` goes out with tenant + revision only,
 * still signed; the receiver reads the changelog instead of applying a carried change
 * (test/helpers/transport-scenarios.ts).
 */
import t from 'tap'
import { unreachable } from '../helpers/databases.js'
import { randomName, reachable, REDIS_URL, startBrokerNodes } from '../helpers/brokers.js'
import { recordChannel } from '../helpers/redis-client.js'
import { largeNoticeIsAHint } from '../helpers/transport-scenarios.js'

if (!await reachable(REDIS_URL)) {
  unreachable(t, 'Redis', REDIS_URL)
} else {
  t.test('an envelope over the limit carries tenant + revision; the receiver reads the changelog', async (t) => {
    const channel = randomName()
    const nodes = await startBrokerNodes(t, 2, { type: 'redis', connection: REDIS_URL, channel, maxPayloadBytes: 512 })
    await largeNoticeIsAHint(t, { type: 'redis', acknowledged: false }, nodes, await recordChannel(t, REDIS_URL, channel))
  })
}
