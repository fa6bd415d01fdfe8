import t from 'tap'
import { dropPrefixed, MYSQL_URL, mysqlDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { membershipSuite } from './suite.js'

const admin = await mysqlDb()
if (admin === undefined) {
  unreachable(t, 'MySQL', MYSQL_URL)
} else {
  t.teardown(() => admin.destroy())
  // Each instance on its own pool, as separate hosts would be; each test on fresh tables.
  membershipSuite(t, 'mysql', async (t) => {
    const tablePrefix = randomPrefix()
    t.teardown(() => dropPrefixed(admin, tablePrefix))
    return {
      tablePrefix,
      open: async () => {
        const db = await mysqlDb()
        if (db === undefined) throw new Error('MySQL went away')
        return { db, release: () => db.destroy() }
      }
    }
  })
}
