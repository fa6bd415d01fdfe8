/**
 * redis: any client of the Redis server can PUBLISH on the channel. A forged message (no valid
 * signature), a tampered genuine one and a garbage one apply nothing they carry: at most the tenants
 * named read the changelog — so a change really committed without a notice is picked up, the forged
 * one is not. A replayed genuine envelope is dropped.
 */
import t from 'tap'
import { encodeNotice } from '../../lib/broadcast/notice.js'
import { createSqliteDb, KyselyPolicyStore } from '../../lib/store/index.js'
import { unreachable } from '../helpers/databases.js'
import { randomName, reachable, REDIS_URL, startBrokerNodes, until } from '../helpers/brokers.js'
import { recordChannel, redisClient } from '../helpers/redis-client.js'

if (!await reachable(REDIS_URL)) {
  unreachable(t, 'Redis', REDIS_URL)
} else {
  t.test('a forged message applies nothing it carries; it only makes the receiver read the changelog', async (t) => {
    const channel = randomName()
    const [a, b] = await startBrokerNodes(t, 2, { type: 'redis', connection: REDIS_URL, channel })
    const redis = await redisClient(t, REDIS_URL)
    await a.app.policyCache.createGroup('t1', 'admins')
    await a.app.policyCache.addPermission('t1', 'admins', '*')
    await until('b is at revision 2', async () => { await b.app.policyCache.warm(['t1']); return await b.app.policyCache.revision('t1') === 2 })
    const receivedBefore = (await until('b handled both notices', async () => { const s = await b.transport(); return s.received === 2 && s })).received

    const db = createSqliteDb(a.file)
    t.teardown(() => db.destroy())
    await new KyselyPolicyStore({ db }).write('t1', { op: 'assign-user', group: 'admins', user: 'bob' }, 'outside')
    t.equal(b.app.policyCache.checkSync('t1', 'bob', 'x:y'), false, 'b has not seen the silent write')

    const body = encodeNotice('n1', [{ tenant: 't1', revision: 3, operation: 'assign-user', group: 'admins', user: 'mallory' }])
    const forged = ['swv1', 'msg_forged', String(Math.floor(Date.now() / 1000)), 'v1,' + Buffer.alloc(32).toString('base64'), body].join('\n')
    await redis.publish(channel, forged)

    const status = await until('b handled the forged message as a hint', async () => { const s = await b.transport(); return s.hints >= 1 && s })
    t.equal(status.received, receivedBefore, 'not counted as a notice')
    t.equal(b.app.policyCache.checkSync('t1', 'mallory', 'x:y'), false, 'the forged change is not applied')
    t.equal(b.app.policyCache.checkSync('t1', 'bob', 'x:y'), true, 'the changelog was read: the real revision 3 is applied')
    t.equal(await b.app.policyCache.revision('t1'), 3)
  })

  t.test('a tampered envelope is only a hint; garbage and a replay are dropped', async (t) => {
    const channel = randomName()
    const [a, b] = await startBrokerNodes(t, 2, { type: 'redis', connection: REDIS_URL, channel })
    const redis = await redisClient(t, REDIS_URL)
    const wire = await recordChannel(t, REDIS_URL, channel)
    await a.app.policyCache.createGroup('t1', 'readers')
    await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
    await b.app.policyCache.warm(['t1'])
    await a.app.policyCache.assignUser('t1', 'readers', 'alice')
    const genuine = await until('the test saw the third message', () => wire.payloads[2])
    await until('b allows alice', () => b.app.policyCache.checkSync('t1', 'alice', 'documents:read'))

    const tampered = genuine.replace('"user":"alice"', '"user":"mallory"').replace('"revision":3', '"revision":4')
    t.not(tampered, genuine)
    await redis.publish(channel, tampered)
    await redis.publish(channel, 'not an envelope')
    const status = await until('b handled both', async () => { const s = await b.transport(); return s.hints >= 1 && s.dropped >= 1 && s })
    t.equal(status.hints, 1)
    t.equal(b.app.policyCache.checkSync('t1', 'mallory', 'documents:read'), false, 'the tampered change is not applied')
    t.equal(await b.app.policyCache.revision('t1'), 3, 'the revision stays what the database says')

    await redis.publish(channel, genuine)
    await until('b dropped the replay', async () => (await b.transport()).dropped >= 2)
    await until('b handled the three genuine notices', async () => (await b.transport()).received === 3)
    t.equal((await b.transport()).received, 3, 'the replay was not handled again')
  })
}
