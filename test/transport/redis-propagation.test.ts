/**
 * redis: three in-process instances on one channel. A write on one is visible on the others through
 * the channel alone (the sync is off), applied from the change the notice carries; the write answers
 * without acknowledgements; each instance drops its own messages; /health and /servers report it
 * (test/helpers/transport-scenarios.ts).
 */
import t from 'tap'
import { unreachable } from '../helpers/databases.js'
import { randomName, reachable, REDIS_URL, startBrokerNodes } from '../helpers/brokers.js'
import { propagation, unchangedSendsNothing } from '../helpers/transport-scenarios.js'

if (!await reachable(REDIS_URL)) {
  unreachable(t, 'Redis', REDIS_URL)
} else {
  const transport = () => ({ type: 'redis' as const, connection: REDIS_URL, channel: randomName() })

  t.test('a write on one instance is visible on the others, carried by the notice', async (t) => {
    await propagation(t, { type: 'redis', acknowledged: false }, await startBrokerNodes(t, 3, transport()))
  })

  t.test('an unchanged write sends nothing', async (t) => {
    await unchangedSendsNothing(t, (await startBrokerNodes(t, 1, transport()))[0])
  })
}
