import { test } from 'tap'
import { newMessageId, parseSecret, sign, TIMESTAMP_TOLERANCE_SECONDS, verify } from '../../lib/broadcast/signature.js'

// The Standard Webhooks reference test vector (standard-webhooks libraries' tests).
const SPEC_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
const SPEC_ID = 'msg_p5jXN8AQM9LWM0D4loKWxJek'
const SPEC_TIMESTAMP = 1614265330
const SPEC_PAYLOAD = '{"test": 2432232314}'
const SPEC_SIGNATURE = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='

const key = parseSecret(SPEC_SECRET, 'webhookSecret')
const body = Buffer.from(SPEC_PAYLOAD)
const now = SPEC_TIMESTAMP
const valid = { id: SPEC_ID, timestamp: String(SPEC_TIMESTAMP), signature: SPEC_SIGNATURE }

test('reproduces the Standard Webhooks known-answer vector', async (t) => {
  t.equal(sign([key], SPEC_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD), SPEC_SIGNATURE)
  t.equal(sign([key], SPEC_ID, SPEC_TIMESTAMP, body), SPEC_SIGNATURE, 'a Buffer body signs the same')
  t.ok(verify([key], valid, body, now))
})

test('rejects forged, truncated, non-base64 signatures and a tampered body', async (t) => {
  const other = parseSecret('another-secret-of-enough-length', 'webhookSecret')
  t.notOk(verify([key], { ...valid, signature: sign([other], SPEC_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD) }, body, now), 'forged with another key')
  t.notOk(verify([key], { ...valid, signature: SPEC_SIGNATURE.slice(0, -4) }, body, now), 'truncated')
  t.notOk(verify([key], { ...valid, signature: 'v1,' }, body, now), 'empty mac')
  t.notOk(verify([key], { ...valid, signature: 'v1,!!!not base64!!!' }, body, now), 'non-base64')
  t.notOk(verify([key], valid, Buffer.from('{"test": 2432232315}'), now), 'tampered body')
  t.notOk(verify([key], { ...valid, id: 'msg_p5jXN8AQM9LWM0D4loKWxJeK' }, body, now), 'id not covered by the mac')
})

test('enforces the timestamp tolerance in both directions', async (t) => {
  t.equal(TIMESTAMP_TOLERANCE_SECONDS, 300)
  t.ok(verify([key], valid, body, now + 300), '300 s old is accepted')
  t.ok(verify([key], valid, body, now - 300), '300 s ahead is accepted')
  t.notOk(verify([key], valid, body, now + 301), '301 s old is rejected')
  t.notOk(verify([key], valid, body, now - 301), '301 s ahead is rejected')
})

test('rejects non-canonical timestamps even when correctly signed', async (t) => {
  for (const timestamp of ['+1614265330', '1.61426533e9', ' 1614265330', '1614265330 ', '0x6037', '16142653300', '', '-1614265330']) {
    const signature = sign([key], SPEC_ID, timestamp as unknown as number, SPEC_PAYLOAD)
    t.notOk(verify([key], { ...valid, timestamp, signature }, body, now), JSON.stringify(timestamp))
  }
})

test('rejects bad ids and missing headers', async (t) => {
  for (const id of ['', 'msg p5j', 'msg.p5j', 'ä', 'a'.repeat(65)]) {
    const signature = sign([key], id, SPEC_TIMESTAMP, SPEC_PAYLOAD)
    t.notOk(verify([key], { ...valid, id, signature }, body, now), `id ${JSON.stringify(id)}`)
  }
  const longest = 'a'.repeat(64)
  t.ok(verify([key], { ...valid, id: longest, signature: sign([key], longest, SPEC_TIMESTAMP, SPEC_PAYLOAD) }, body, now), '64 characters is fine')
  t.notOk(verify([key], { timestamp: valid.timestamp, signature: valid.signature }, body, now), 'no id')
  t.notOk(verify([key], { id: valid.id, signature: valid.signature }, body, now), 'no timestamp')
  t.notOk(verify([key], { id: valid.id, timestamp: valid.timestamp }, body, now), 'no signature')
})

test('rotation: every key signs, any key verifies', async (t) => {
  const next = parseSecret('the-next-secret-0123456789', 'webhookSecret')
  const both = sign([key, next], SPEC_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD)
  const entries = both.split(' ')
  t.equal(entries.length, 2)
  t.equal(entries[0], SPEC_SIGNATURE)
  t.ok(verify([key], { ...valid, signature: both }, body, now), 'old key alone verifies')
  t.ok(verify([next], { ...valid, signature: both }, body, now), 'new key alone verifies')
  t.ok(verify([next, key], valid, body, now), 'a receiver holding both accepts the old signature')
})

test('skips entries of other versions and garbage', async (t) => {
  const mac = SPEC_SIGNATURE.slice(3)
  t.ok(verify([key], { ...valid, signature: `v2,${mac} garbage  v1a,${mac} ${SPEC_SIGNATURE}` }, body, now))
  t.notOk(verify([key], { ...valid, signature: `v2,${mac}` }, body, now), 'the right mac under v2 is not accepted')
  t.notOk(verify([key], { ...valid, signature: mac }, body, now), 'a bare mac is not accepted')
})

test('several v1 entries: one valid entry verifies wherever it stands; malformed ones alone never do', async (t) => {
  const mac = SPEC_SIGNATURE.slice(3)
  const wrongKey = sign([parseSecret('another-secret-of-enough-length', 'webhookSecret')], SPEC_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD)
  const malformed = [
    'v1,', // empty mac
    'v1,!!!not base64!!!',
    `v1,${mac.slice(0, -4)}`, // truncated: shorter than a SHA-256 mac
    `v1,${Buffer.alloc(33, 1).toString('base64')}`, // longer than a SHA-256 mac
    `v1,${Buffer.alloc(32).toString('base64')}`, // right length, wrong bytes
    wrongKey, // right length, another key's mac
    `v1,${mac.replace(/^./, (c) => c === 'A' ? 'B' : 'A')}` // right key, one character off
  ]
  t.notOk(verify([key], { ...valid, signature: malformed.join(' ') }, body, now), 'every entry malformed: rejected')
  for (let i = 0; i < malformed.length; i++) {
    const others = malformed.filter((_, j) => j !== i)
    t.notOk(verify([key], { ...valid, signature: [malformed[i], malformed[i]].join(' ') }, body, now), `${malformed[i]} twice`)
    t.ok(verify([key], { ...valid, signature: [malformed[i], SPEC_SIGNATURE].join(' ') }, body, now), `${malformed[i]} before the valid entry`)
    t.ok(verify([key], { ...valid, signature: [SPEC_SIGNATURE, malformed[i]].join(' ') }, body, now), `${malformed[i]} after the valid entry`)
    t.ok(verify([key], { ...valid, signature: [...others.slice(0, 3), SPEC_SIGNATURE, ...others.slice(3)].join(' ') }, body, now), `the valid entry among the others, ${malformed[i]} left out`)
  }
  const next = parseSecret('the-next-secret-0123456789', 'webhookSecret')
  t.ok(verify([next, key], { ...valid, signature: malformed.join(' ') + ' ' + SPEC_SIGNATURE }, body, now), 'a receiver with two keys finds the one valid entry last')
  t.notOk(verify([next, key], { ...valid, signature: malformed.join(' ') }, body, now), 'nor does a second key make malformed entries valid')
})

test('parseSecret: whsec_ base64, raw UTF-8, trimming, refusals', async (t) => {
  t.same(parseSecret(SPEC_SECRET, 'webhookSecret'), Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64'))
  t.same(parseSecret(`  ${SPEC_SECRET}\n`, 'webhookSecret'), key, 'surrounding spaces are trimmed')
  t.same(parseSecret(' sixteen-bytes-ok ', 'webhookSecret'), Buffer.from('sixteen-bytes-ok'), 'raw secrets are UTF-8')

  const weak = (() => { try { parseSecret('short-secret', 'webhookSecret') } catch (err) { return err } })() as Error & { code: string }
  t.equal(weak.code, 'FST_POLICY_CACHE_INVALID_OPTION')
  t.match(weak.message, /webhookSecret/)
  t.match(weak.message, /16 bytes/)
  t.notMatch(weak.message, /short-secret/, 'the secret is not in the message')

  t.throws(() => parseSecret('               ', 'webhookSecret'), { code: 'FST_POLICY_CACHE_INVALID_OPTION' }, 'blank')
  for (const notAString of [undefined, null, 1234567890123456, Buffer.from('a-secret-of-enough-bytes')]) {
    t.throws(() => parseSecret(notAString as unknown as string, 'secrets[0]'), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /"secrets\[0\]".*must be a string/ }, `not a string: ${String(notAString)}`)
  }
  t.throws(() => parseSecret('whsec_c2hvcnQ=', 'webhookSecret'), { code: 'FST_POLICY_CACHE_INVALID_OPTION' }, 'whsec_ decoding to < 16 bytes')
  t.throws(() => parseSecret('whsec_', 'webhookSecret'), { code: 'FST_POLICY_CACHE_INVALID_OPTION' }, 'empty whsec_')
  const bad = (() => { try { parseSecret('whsec_MfKQ9r8GKYqrTwjU*D8ILPZIo2LaLaSw', 'secrets[1]') } catch (err) { return err } })() as Error & { code: string }
  t.equal(bad.code, 'FST_POLICY_CACHE_INVALID_OPTION', 'invalid base64 after whsec_')
  t.match(bad.message, /secrets\[1\].*base64/)
  t.notMatch(bad.message, /MfKQ9r8/)
  t.throws(() => parseSecret('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS', 'webhookSecret'), { code: 'FST_POLICY_CACHE_INVALID_OPTION' }, 'truncated base64')
  t.throws(() => parseSecret('whsec_MfKQ9r8GKYqr TwjUPD8ILPZIo2LaLaSw', 'webhookSecret'), { code: 'FST_POLICY_CACHE_INVALID_OPTION' }, 'inner space')
})

test('newMessageId: prefixed, url-safe, unique', async (t) => {
  // Ids come from a pool of random bytes refilled every 128 ids: these span several refills.
  const ids = new Set(Array.from({ length: 1000 }, newMessageId))
  t.equal(ids.size, 1000)
  for (const id of ids) t.match(id, /^msg_[A-Za-z0-9_-]{32}$/)
})

test('verify takes a body as a string: its UTF-8 bytes are what was signed', async (t) => {
  t.ok(verify([key], valid, SPEC_PAYLOAD, now))
  t.notOk(verify([key], valid, SPEC_PAYLOAD + ' ', now))
  const unicode = '{"tenant":"é"}'
  const signature = sign([key], SPEC_ID, now, Buffer.from(unicode, 'utf8'))
  t.ok(verify([key], { ...valid, signature }, unicode, now), 'the string is hashed as UTF-8')
  t.notOk(verify([key], { ...valid, signature }, Buffer.from(unicode, 'latin1'), now), 'other bytes of the same text do not verify')
})
