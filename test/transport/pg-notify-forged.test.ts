/**
 * pg-notify: any database user can NOTIFY on the channel. A forged message (no valid signature) and
 * a tampered one (a genuine envelope whose body was changed) apply nothing they carry: at most the
 * tenants they name read the changelog — so a change really committed without a notice is picked
 * up, and the forged change is not.
 */
import { sql } from 'kysely'
import t from 'tap'
import { encodeNotice } from '../../lib/broadcast/notice.js'
import { KyselyPolicyStore } from '../../lib/store/index.js'
import { POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { listen, startNodes, until } from '../helpers/pg-notify.js'

const admin = await postgresDb()
if (admin === undefined) {
  unreachable(t, 'PostgreSQL', POSTGRES_URL)
} else {
  t.teardown(() => admin.destroy())

  t.test('a forged NOTIFY applies nothing it carries; it only makes the receiver read the changelog', async (t) => {
    const prefix = randomPrefix()
    const [a, b] = await startNodes(t, admin, prefix, 2)
    const channel = (await a.transport()).channel as string
    await a.app.policyCache.createGroup('t1', 'admins')
    await a.app.policyCache.addPermission('t1', 'admins', '*')
    await until('b is at revision 2', async () => { await b.app.policyCache.warm(['t1']); return await b.app.policyCache.revision('t1') === 2 })
    // Both notices handled (the counter moves once the engine is done with one).
    const receivedBefore = (await until('b handled both notices', async () => { const s = await b.transport(); return s.received === 2 && s })).received

    // A change committed without any notice (a writer outside the plugin): b does not know of it.
    const outside = new KyselyPolicyStore({ db: admin, tablePrefix: prefix })
    await outside.write('t1', { op: 'assign-user', group: 'admins', user: 'bob' }, 'outside')
    t.equal(b.app.policyCache.checkSync('t1', 'bob', 'x:y'), false, 'b has not seen the silent write')

    // The forger claims revision 3 assigned mallory, with a plausible envelope but a made-up signature.
    const body = encodeNotice('n1', [{ tenant: 't1', revision: 3, operation: 'assign-user', group: 'admins', user: 'mallory' }])
    const now = Math.floor(Date.now() / 1000)
    const forged = ['swv1', 'msg_forged', String(now), 'v1,' + Buffer.alloc(32).toString('base64'), body].join('\n')
    await sql`select pg_notify(${channel}, ${forged})`.execute(admin)

    const status = await until('b handled the forged message as a hint', async () => { const s = await b.transport(); return s.hints >= 1 && s })
    t.equal(status.received, receivedBefore, 'not counted as a notice')
    t.equal(b.app.policyCache.checkSync('t1', 'mallory', 'x:y'), false, 'the forged change is not applied')
    t.equal(b.app.policyCache.checkSync('t1', 'bob', 'x:y'), true, 'the changelog was read: the real revision 3 is applied')
    t.equal(await b.app.policyCache.revision('t1'), 3)
  })

  t.test('a tampered genuine envelope is only a hint too', async (t) => {
    const prefix = randomPrefix()
    const [a, b] = await startNodes(t, admin, prefix, 2)
    const channel = (await a.transport()).channel as string
    const wire = await listen(t, channel)
    await a.app.policyCache.createGroup('t1', 'readers')
    await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
    await b.app.policyCache.warm(['t1'])
    await a.app.policyCache.assignUser('t1', 'readers', 'alice')
    const genuine = await until('the test saw the third message', () => wire.payloads[2])
    await until('b allows alice', () => b.app.policyCache.checkSync('t1', 'alice', 'documents:read'))

    // The same id, timestamp and signature; the body now carries revision 4 assigning mallory.
    const tampered = genuine.replace('"user":"alice"', '"user":"mallory"').replace('"revision":3', '"revision":4')
    t.not(tampered, genuine)
    await sql`select pg_notify(${channel}, ${tampered})`.execute(admin)
    // A garbage message on the channel is dropped.
    await sql`select pg_notify(${channel}, ${'not an envelope'})`.execute(admin)

    const status = await until('b handled both', async () => { const s = await b.transport(); return s.hints >= 1 && s.dropped >= 1 && s })
    t.equal(status.hints, 1)
    t.equal(b.app.policyCache.checkSync('t1', 'mallory', 'documents:read'), false, 'the tampered change is not applied')
    t.equal(await b.app.policyCache.revision('t1'), 3, 'the revision stays what the database says')

    // The genuine envelope replayed: verified, but its id was handled already.
    await sql`select pg_notify(${channel}, ${genuine})`.execute(admin)
    await until('b dropped the replay', async () => (await b.transport()).dropped >= 2)
    t.equal((await b.transport()).received, 3)
  })
}
