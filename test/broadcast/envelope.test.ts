/**
 * The broker envelope (lib/broadcast/envelope.ts): the webhook's notice body with its Standard
 * Webhooks id, timestamp and signature alongside. Verified → a decoded notice; anything a key we
 * hold did not sign (or signed too long ago) → at most a hint naming tenants and revisions; not an
 * envelope → invalid. Over the size limit → tenant + revision only, split when still too large.
 */
import { test } from 'tap'
import { encodeEnvelopes, ENVELOPE_VERSION, openEnvelope, openSigned, seal } from '../../lib/broadcast/envelope.js'
import { parseSecret } from '../../lib/broadcast/signature.js'
import type { NoticeChange } from '../../lib/broadcast/notice.js'

const key = parseSecret('whsec_' + Buffer.from('envelope-test-secret-of-32-bytes').toString('base64'), 'test')
const other = parseSecret('another-secret-of-enough-bytes', 'test')
const now = 1_800_000_000
const change: NoticeChange = { tenant: 't1', revision: 3, digest: 'a'.repeat(32), operation: 'assign-user', group: 'readers', user: 'alice' }

test('a signed envelope opens as the notice it carries, with every configured key', async (t) => {
  const [envelope] = encodeEnvelopes([key, other], { origin: 'n1', database: 'db-1', url: 'http://127.0.0.1:3001' }, [change], 7900, now)
  const lines = envelope.split('\n')
  t.equal(lines[0], ENVELOPE_VERSION)
  t.match(lines[1], /^msg_[A-Za-z0-9_-]+$/)
  t.equal(lines[2], String(now))
  t.equal(lines[3].split(' ').length, 2, 'one signature per key (rotation)')
  for (const keys of [[key], [other]]) {
    const opened = openEnvelope(keys, envelope, now + 10)
    t.equal(opened.kind, 'notice')
    if (opened.kind !== 'notice') return
    t.equal(opened.id, lines[1])
    t.same(opened.notice, {
      origin: 'n1',
      database: 'db-1',
      url: 'http://127.0.0.1:3001',
      entries: [{ tenant: 't1', revision: 3, digest: 'a'.repeat(32), carried: { op: 'assign-user', group: 'readers', user: 'alice', revision: 3 } }]
    })
  }
})

test('what a key we hold did not sign, or signed too long ago, is only a hint', async (t) => {
  const [envelope] = encodeEnvelopes([key], { origin: 'n1' }, [change], 7900, now)
  const hint = { kind: 'hint', origin: 'n1', tenants: [{ tenant: 't1', revision: 3 }] }
  const unknownKey = parseSecret('a-secret-nobody-here-holds-at-all', 'test')
  t.same(openEnvelope([unknownKey], envelope, now), hint, 'another secret')
  t.same(openEnvelope([key], envelope, now + 301), hint, 'stale: more than 300 s old')
  t.same(openEnvelope([key], envelope, now - 301), hint, 'from the future')
  t.same(openEnvelope([key], envelope.replace('"alice"', '"mallory"'), now), hint, 'body tampered')
  const noSignature = envelope.split('\n')
  noSignature[3] = ''
  t.same(openEnvelope([key], noSignature.join('\n'), now), hint, 'no signature')
  // Signed, but carrying data that does not fit its operation: nothing carried is trusted.
  const [malformed] = encodeEnvelopes([key], { origin: 'n1' }, [{ tenant: 't1', revision: 3, operation: 'create-group', group: 'g', user: 'u' }], 7900, now)
  t.same(openEnvelope([key], malformed, now), hint, 'signed but malformed')
})

test('what is not an envelope of a notice is invalid', async (t) => {
  const [envelope] = encodeEnvelopes([key], { origin: 'n1' }, [change], 7900, now)
  const cases: Array<[string, string]> = [
    ['', 'not an envelope'],
    ['hello', 'not an envelope'],
    [envelope.replace(/^swv1/, 'swv2'), 'not an envelope'],
    [envelope.split('\n').slice(0, 4).join('\n'), 'not an envelope'],
    [envelope.split('\n').slice(0, 4).join('\n') + '\n{', 'the body is not JSON'],
    [envelope.split('\n').slice(0, 4).join('\n') + '\n{"type":"other"}', 'the body is not a notice'],
    [envelope.replace('"tenant":"t1"', '"tenant":"not a tenant"'), 'the body is not a notice']
  ]
  for (const [raw, reason] of cases) t.same(openEnvelope([key], raw, now), { kind: 'invalid', reason }, reason)
})

test('over the limit: tenant + revision only (the highest per tenant), split into envelopes that fit', async (t) => {
  const [whole] = encodeEnvelopes([key], { origin: 'n1' }, [change], 7900, now)
  const limit = Buffer.byteLength(whole) - 1
  const [reduced, ...more] = encodeEnvelopes([key], { origin: 'n1' }, [change, { ...change, revision: 2 }], limit, now)
  t.same(more, [])
  t.ok(Buffer.byteLength(reduced) <= limit)
  const opened = openEnvelope([key], reduced, now)
  t.same(opened.kind === 'notice' && opened.notice.entries, [{ tenant: 't1', revision: 3, digest: undefined, carried: undefined }])

  const many: NoticeChange[] = Array.from({ length: 200 }, (_, i) => ({ tenant: `tenant-${i}-${'x'.repeat(100)}`, revision: i + 1 }))
  const envelopes = encodeEnvelopes([key], { origin: 'n1' }, many, 7900, now)
  t.ok(envelopes.length > 1, `split into ${envelopes.length}`)
  const seen: string[] = []
  for (const envelope of envelopes) {
    t.ok(Buffer.byteLength(envelope) <= 7900)
    const each = openEnvelope([key], envelope, now)
    if (each.kind === 'notice') seen.push(...each.notice.entries.map((entry) => entry.tenant))
  }
  t.same(seen, many.map((entry) => entry.tenant), 'every tenant, once, in order')
  t.throws(() => encodeEnvelopes([key], { origin: 'n1' }, [change], 100, now), { name: 'RangeError', message: 'one notice entry does not fit in 100 bytes' })
})

test('the size limit is inclusive: an envelope of exactly maxBytes goes as it is', async (t) => {
  const sender = { origin: 'n1' }
  // An envelope's length depends only on what it carries (its id and signature have fixed lengths).
  const whole = Buffer.byteLength(encodeEnvelopes([key], sender, [change], 7900, now)[0])
  const [atLimit, ...more] = encodeEnvelopes([key], sender, [change], whole, now)
  t.same(more, [])
  const opened = openEnvelope([key], atLimit, now)
  t.ok(opened.kind === 'notice' && opened.notice.entries[0].carried !== undefined, 'the full entry, not a bare one')

  const many: NoticeChange[] = Array.from({ length: 20 }, (_, i) => ({ ...change, tenant: `t${i}` }))
  const full = Buffer.byteLength(encodeEnvelopes([key], sender, many, 1_000_000, now)[0])
  const bare = encodeEnvelopes([key], sender, many, full - 1, now)
  t.equal(bare.length, 1, 'one byte short of the full entries: bare ones, in one envelope')
  const bareBytes = Buffer.byteLength(bare[0])
  t.equal(encodeEnvelopes([key], sender, many, bareBytes, now).length, 1, 'bare entries at exactly the limit: still one envelope')
  t.equal(encodeEnvelopes([key], sender, many, bareBytes - 1, now).length, 2, 'one byte less: split in two')
})

test('openSigned: the JSON body of an envelope one of our keys signed, nothing else (NATS replies and presence)', async (t) => {
  const reply = seal([key], JSON.stringify({ serverId: 'n2', revisions: { t1: 3 } }), now)
  t.same(openSigned([other, key], reply, now), { serverId: 'n2', revisions: { t1: 3 } })
  t.equal(openSigned([other], reply, now), undefined, 'signed with a key we do not hold')
  t.equal(openSigned([key], reply, now + 301), undefined, 'stale')
  t.equal(openSigned([key], reply.replace('"n2"', '"n3"'), now), undefined, 'tampered')
  t.equal(openSigned([key], JSON.stringify({ serverId: 'n2', revisions: {} }), now), undefined, 'unsigned')
  t.equal(openSigned([key], seal([key], 'not json', now), now), undefined, 'signed, but not JSON')
})
