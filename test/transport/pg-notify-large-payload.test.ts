/**
 * pg-notify: a notice whose envelope is over `maxPayloadBytes` (7900 by default, under PostgreSQL's
 * 8000-byte limit) goes out with tenant + revision only, still signed; the receiver reads the
 * changelog instead of applying a carried change. Here the limit is lowered to 512 bytes and the
 * write uses 128-character ids, so that one entry does not fit whole (test/helpers/transport-scenarios.ts).
 */
import t from 'tap'
import { POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { listen, startNodes } from '../helpers/pg-notify.js'
import { largeNoticeIsAHint } from '../helpers/transport-scenarios.js'

const admin = await postgresDb()
if (admin === undefined) {
  unreachable(t, 'PostgreSQL', POSTGRES_URL)
} else {
  t.teardown(() => admin.destroy())

  t.test('an envelope over the limit carries tenant + revision; the receiver reads the changelog', async (t) => {
    const nodes = await startNodes(t, admin, randomPrefix(), 2, { maxPayloadBytes: 512 })
    const wire = await listen(t, (await nodes[0].transport()).channel as string)
    await largeNoticeIsAHint(t, { type: 'pg-notify', acknowledged: false }, nodes, wire)
  })
}
