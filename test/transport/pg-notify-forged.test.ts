/**
 * pg-notify: any database user can NOTIFY on the channel. A forged message (no valid signature) and
 * a tampered one (a genuine envelope whose body was changed) apply nothing they carry: at most the
 * tenants they name read the changelog — so a change really committed without a notice is picked
 * up, and the forged change is not; garbage and a replayed genuine envelope are dropped
 * (test/helpers/transport-scenarios.ts).
 */
import { sql } from 'kysely'
import t, { type Test } from 'tap'
import { KyselyPolicyStore } from '../../lib/store/index.js'
import { POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { listen, startNodes } from '../helpers/pg-notify.js'
import { forgedIsAHint, tamperedIsAHint, type Forger } from '../helpers/transport-scenarios.js'

const admin = await postgresDb()
if (admin === undefined) {
  unreachable(t, 'PostgreSQL', POSTGRES_URL)
} else {
  t.teardown(() => admin.destroy())
  /** Two instances on fresh tables, and what a database user can NOTIFY on their channel. */
  const start = async (t: Test, prefix = randomPrefix()) => {
    const nodes = await startNodes(t, admin, prefix, 2)
    const channel = (await nodes[0].transport()).channel as string
    const forger: Forger = { publish: async (raw) => { await sql`select pg_notify(${channel}, ${raw})`.execute(admin) } }
    return { channel, nodes, forger }
  }

  t.test('a forged NOTIFY applies nothing it carries; it only makes the receiver read the changelog', async (t) => {
    const prefix = randomPrefix()
    const { nodes, forger } = await start(t, prefix)
    await forgedIsAHint(t, nodes, new KyselyPolicyStore({ db: admin, tablePrefix: prefix }), forger)
  })

  t.test('a tampered genuine envelope is only a hint too', async (t) => {
    const { channel, nodes, forger } = await start(t)
    await tamperedIsAHint(t, nodes, forger, await listen(t, channel))
  })
}
