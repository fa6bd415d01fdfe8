import { join } from 'node:path'
import t from 'tap'
import { createSqliteDb } from '../../lib/store/index.js'
import { tempDir } from '../helpers/app.js'
import { membershipSuite } from './suite.js'

// In one process, instances share one connection: better-sqlite3 waits for a lock synchronously, so
// two connections to one file in one process would block each other (test/examples/ runs processes).
membershipSuite(t, 'sqlite', async (t) => {
  const db = createSqliteDb(join(tempDir(t), 'members.db'))
  t.teardown(() => db.destroy())
  return { tablePrefix: 'policy_', open: async () => ({ db, release: async () => {} }) }
})
