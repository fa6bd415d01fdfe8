/** lib/page.ts: the cursor round-trips every key, refuses what it did not make, and the limit's bounds. */
import fc from 'fast-check'
import { test } from 'tap'
import { isGrant, isIdentifier } from '../lib/model.js'
import { decodeCursor, encodeCursor, nextCursor, pageLimit } from '../lib/page.js'

test('a cursor decodes to the key it was made from, for every identifier and grant', async (t) => {
  fc.assert(fc.property(fc.oneof(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/), fc.stringMatching(/^[a-z0-9._-]{1,8}(:[a-z0-9._-]{1,8}){0,3}(:\*)?$/)), (key) => {
    const cursor = encodeCursor(key)
    return /^[A-Za-z0-9_-]+$/.test(cursor) && decodeCursor(cursor, (k) => isIdentifier(k) || isGrant(k)) === key
  }), { numRuns: 500 })
  t.equal(decodeCursor(undefined, isIdentifier), undefined, 'no cursor: from the start')
  t.equal(nextCursor(undefined), null, 'the last page has no next')
  t.equal(nextCursor('alice'), 'YWxpY2U')
  t.equal(decodeCursor(encodeCursor('a'.repeat(300)), () => true), 'a'.repeat(300), 'a cursor of 400 characters')
})

test('a cursor it did not make is a coded 400 naming cursor', async (t) => {
  const longest = encodeCursor('a'.repeat(300))
  t.equal(longest.length, 400, 'the longest key a cursor names (a 256-character grant is shorter) fits 400 characters')
  for (const cursor of ['', '!!', 'YWxpY2U=', 'YWxpY2V', 'a b', 'x'.repeat(401), 42, null, encodeCursor('a b'), encodeCursor('\u00ff')]) {
    t.throws(() => decodeCursor(cursor, isIdentifier), { code: 'FST_POLICY_CACHE_INVALID_INPUT', statusCode: 400, message: 'Invalid cursor: must be the `next` of a previous page' }, JSON.stringify(cursor))
  }
  t.throws(() => decodeCursor(encodeCursor('a:*'), isIdentifier), { code: 'FST_POLICY_CACHE_INVALID_INPUT' }, 'a key the listing does not hold')
  t.equal(decodeCursor(encodeCursor('a:*'), isGrant), 'a:*')
})

test('limit: 1 to 1000, default 100', async (t) => {
  t.equal(pageLimit(undefined), 100)
  t.equal(pageLimit(1), 1)
  t.equal(pageLimit(1000), 1000)
  for (const limit of [0, 1001, -1, 1.5, Number.NaN, Infinity, '10', null]) {
    t.throws(() => pageLimit(limit), { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: 'Invalid limit: must be an integer from 1 to 1000' }, String(limit))
  }
})
