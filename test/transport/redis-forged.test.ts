/**
 * redis: any client of the Redis server can PUBLISH on the channel. A forged message (no valid
 * signature), a tampered genuine one and a garbage one apply nothing they carry: at most the tenants
 * named read the changelog — so a change really committed without a notice is picked up, the forged
 * one is not. A replayed genuine envelope is dropped (test/helpers/transport-scenarios.ts).
 */
import t, { type Test } from 'tap'
import { unreachable } from '../helpers/databases.js'
import { outsideWriter, randomName, reachable, REDIS_URL, startBrokerNodes } from '../helpers/brokers.js'
import { recordChannel, redisClient } from '../helpers/redis-client.js'
import { forgedIsAHint, tamperedIsAHint, type Forger } from '../helpers/transport-scenarios.js'

if (!await reachable(REDIS_URL)) {
  unreachable(t, 'Redis', REDIS_URL)
} else {
  /** Two instances on a fresh channel, and a client of the test's own publishing on it. */
  const start = async (t: Test) => {
    const channel = randomName()
    const nodes = await startBrokerNodes(t, 2, { type: 'redis', connection: REDIS_URL, channel })
    const redis = await redisClient(t, REDIS_URL)
    const forger: Forger = { publish: async (raw) => { await redis.publish(channel, raw) } }
    return { channel, nodes, forger }
  }

  t.test('a forged message applies nothing it carries; it only makes the receiver read the changelog', async (t) => {
    const { nodes, forger } = await start(t)
    await forgedIsAHint(t, nodes, outsideWriter(t, nodes[0].file), forger)
  })

  t.test('a tampered envelope is only a hint; garbage and a replay are dropped', async (t) => {
    const { channel, nodes, forger } = await start(t)
    await tamperedIsAHint(t, nodes, forger, await recordChannel(t, REDIS_URL, channel))
  })
}
