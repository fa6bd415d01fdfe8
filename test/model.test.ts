import fc from 'fast-check'
import { test } from 'tap'
import { isPermission, PERMISSION_MAX_LENGTH, PERMISSION_PATTERN } from '../lib/model.js'

// isPermission scans characters instead of running the regex (it is on the check's hot path);
// it must accept exactly what the published pattern and length limit accept.
const byPattern = (s: string): boolean => s.length <= PERMISSION_MAX_LENGTH && new RegExp(PERMISSION_PATTERN).test(s)

test('isPermission agrees with PERMISSION_PATTERN on permission-like strings', async (t) => {
  fc.assert(fc.property(fc.stringMatching(/^[a-cA9:._*\- \n\u00e9]{0,12}$/), (s) => isPermission(s) === byPattern(s)), { numRuns: 20000 })
  t.pass()
})

test('isPermission agrees with PERMISSION_PATTERN on arbitrary strings', async (t) => {
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 16 }), (s) => isPermission(s) === byPattern(s)), { numRuns: 20000 })
  t.pass()
})

test('isPermission edge cases', async (t) => {
  for (const s of ['a'.repeat(256), 'a'.repeat(257), 'a:b', 'doc:x.y-z_1', ':a', 'a:', 'a::b', 'a\n', '', '*', 'a:*', 'a b']) {
    t.equal(isPermission(s), byPattern(s), JSON.stringify(s))
  }
  t.equal(isPermission(42), false)
  t.equal(isPermission(undefined), false)
})
