/**
 * The inbox of broker transports (lib/broadcast/inbox.ts): a verified notice goes to the sink's
 * `deliver` once per id; an unverifiable one only to `hint` (tenants and revisions, capped); this
 * instance's own messages, replays and garbage are dropped; a failing sink is logged, never thrown.
 */
import { test } from 'tap'
import { encodeEnvelopes } from '../../lib/broadcast/envelope.js'
import { Inbox, MAX_HINT_TENANTS } from '../../lib/broadcast/inbox.js'
import type { ReceivedNotice } from '../../lib/broadcast/notice.js'
import { parseSecret } from '../../lib/broadcast/signature.js'

const key = parseSecret('inbox-test-secret-long-enough', 'test')
const stranger = parseSecret('a-key-this-instance-does-not-hold', 'test')

function setup (fail = false) {
  const delivered: ReceivedNotice[] = []
  const hinted: Array<Array<{ tenant: string, revision: number }>> = []
  const warnings: string[] = []
  const inbox = new Inbox({
    keys: [key],
    serverId: 'me',
    sink: {
      deliver: async (notice) => { if (fail) throw new Error('database down'); delivered.push(notice); return {} },
      hint: async (tenants) => { if (fail) throw new Error('database down'); hinted.push([...tenants]) },
      resubscribed: async () => {}
    },
    log: { debug: () => {}, warn: (_obj, msg) => { warnings.push(msg) } }
  })
  return { inbox, delivered, hinted, warnings }
}

const seal = (keys: Buffer[], origin: string, tenants = ['t1']): string =>
  encodeEnvelopes(keys, { origin }, tenants.map((tenant) => ({ tenant, revision: 2 })), 7900, Math.floor(Date.now() / 1000))[0]

test('a verified notice is delivered once per id; own messages and garbage are dropped', async (t) => {
  const { inbox, delivered, hinted } = setup()
  const envelope = seal([key], 'peer')
  t.equal(await inbox.receive(envelope), 'delivered')
  t.equal(await inbox.receive(envelope), 'duplicate')
  t.equal(await inbox.receive(seal([key], 'me')), 'own')
  t.equal(await inbox.receive(seal([stranger], 'me')), 'own', 'an unverifiable one claiming our origin too')
  t.equal(await inbox.receive('garbage'), 'invalid')
  t.equal(delivered.length, 1)
  t.equal(delivered[0].origin, 'peer')
  t.same(hinted, [])
  t.same(inbox.counters, { received: 1, hints: 0, dropped: 4 })
})

test('an unverifiable message is a hint, capped, logged once', async (t) => {
  const { inbox, delivered, hinted, warnings } = setup()
  const tenants = Array.from({ length: MAX_HINT_TENANTS + 20 }, (_, i) => `t${i}`)
  t.equal(await inbox.receive(seal([stranger], 'forger', tenants)), 'hint')
  t.equal(await inbox.receive(seal([stranger], 'forger')), 'hint')
  t.same(delivered, [])
  t.equal(hinted[0].length, MAX_HINT_TENANTS)
  t.same(hinted[1], [{ tenant: 't1', revision: 2 }])
  t.equal(warnings.length, 1)
  t.same(inbox.counters, { received: 0, hints: 2, dropped: 0 })
})

test('a failing sink is logged and reported, never thrown; the id can be handled again', async (t) => {
  const { inbox, warnings } = setup(true)
  const envelope = seal([key], 'peer')
  t.equal(await inbox.receive(envelope), 'failed')
  t.equal(await inbox.receive(envelope), 'failed', 'not remembered as handled')
  t.equal(await inbox.receive(seal([stranger], 'forger')), 'failed')
  t.equal(warnings.length, 4)
  t.same(inbox.counters, { received: 0, hints: 0, dropped: 0 })
})

test('answer: called with the revisions once a verified notice was delivered, never for a hint, a replay or a failure', async (t) => {
  const answers: Array<Record<string, number | null>> = []
  const answer = (revisions: Record<string, number | null>): void => { answers.push(revisions) }
  const { inbox } = setup()
  const envelope = seal([key], 'peer')
  t.equal(await inbox.receive(envelope, answer), 'delivered')
  t.same(answers, [{}], 'the sink\'s revisions')
  t.equal(await inbox.receive(envelope, answer), 'duplicate')
  t.equal(await inbox.receive(seal([stranger], 'forger'), answer), 'hint')
  t.equal(await setup(true).inbox.receive(seal([key], 'peer'), answer), 'failed')
  t.equal(answers.length, 1, 'answered once only')
})
