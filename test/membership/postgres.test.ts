import t from 'tap'
import { dropPrefixed, POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { membershipSuite } from './suite.js'

const admin = await postgresDb()
if (admin === undefined) {
  unreachable(t, 'PostgreSQL', POSTGRES_URL)
} else {
  t.teardown(() => admin.destroy())
  // Each instance on its own pool, as separate hosts would be; each test on fresh tables.
  membershipSuite(t, 'postgres', async (t) => {
    const tablePrefix = randomPrefix()
    t.teardown(() => dropPrefixed(admin, tablePrefix))
    return {
      tablePrefix,
      open: async () => {
        const db = await postgresDb()
        if (db === undefined) throw new Error('PostgreSQL went away')
        return { db, release: () => db.destroy() }
      }
    }
  })
}
