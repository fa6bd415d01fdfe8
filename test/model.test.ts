import fc from 'fast-check'
import { test } from 'tap'
import {
  assertChange, assertGrant, assertIdentifier, assertPermission, IDENTIFIER_PATTERN, isGrant, isIdentifier, isPermission,
  OPERATIONS, PERMISSION_MAX_LENGTH, PERMISSION_PATTERN, type Change
} from '../lib/model.js'

// isPermission scans characters instead of running the regex (it is on the check's hot path);
// it must accept exactly what the published pattern and length limit accept.
const byPattern = (s: string): boolean => s.length <= PERMISSION_MAX_LENGTH && new RegExp(PERMISSION_PATTERN).test(s)

test('isPermission edge cases', async (t) => {
  for (const s of ['a'.repeat(256), 'a'.repeat(257), 'a:b', 'doc:x.y-z_1', ':a', 'a:', 'a::b', 'a\n', '', '*', 'a:*', 'a b']) {
    t.equal(isPermission(s), byPattern(s), JSON.stringify(s))
  }
  t.equal(isPermission(42), false)
  t.equal(isPermission(undefined), false)
})

test('isIdentifier: a letter or digit, then up to 127 of [A-Za-z0-9._@-]', async (t) => {
  for (const s of ['a', 'Z', '7', 'alice@example.com', 'a.b_c-d', 'a'.repeat(128)]) t.equal(isIdentifier(s), true, JSON.stringify(s))
  for (const s of ['', '-a', '.a', '_a', '@a', 'a'.repeat(129), 'a b', 'a/b', 'a:b', 'é', 'a\n']) t.equal(isIdentifier(s), false, JSON.stringify(s))
  for (const v of [42, null, undefined, ['a'], { toString: () => 'a' }]) t.equal(isIdentifier(v), false, String(v))
})

test('isGrant: a concrete permission, `*`, or one with a final `:*`, at most 256 characters', async (t) => {
  for (const s of ['*', 'a', 'a:*', 'documents:read', 'a:b:*', 'x.y-z_1:*', 'a'.repeat(256), `${'a'.repeat(254)}:*`]) t.equal(isGrant(s), true, JSON.stringify(s))
  for (const s of ['', 'a'.repeat(257), `${'a'.repeat(255)}:*`, '**', 'a*', 'a:**', '*:a', 'a:*:b', ':a', 'a:', 'a::b', 'a b']) t.equal(isGrant(s), false, JSON.stringify(s))
  for (const v of [42, null, undefined, ['*']]) t.equal(isGrant(v), false, String(v))
})

test('the assertions throw a coded 400 naming the field and the rule', async (t) => {
  const invalid = (message: string) => ({ code: 'FST_POLICY_CACHE_INVALID_INPUT', statusCode: 400, message })
  t.doesNotThrow(() => assertIdentifier('tenant', 't1'))
  t.throws(() => assertIdentifier('tenant', 'bad tenant'), invalid(`Invalid tenant: must match ${IDENTIFIER_PATTERN}`))
  t.throws(() => assertIdentifier('user', ''), invalid(`Invalid user: must match ${IDENTIFIER_PATTERN}`))
  t.doesNotThrow(() => assertGrant('doc:*'))
  t.throws(() => assertGrant('doc:**'), invalid('Invalid permission: must be segment(:segment)* with an optional final *, at most 256 characters'))
  t.doesNotThrow(() => assertPermission('doc:read'))
  t.throws(() => assertPermission('doc:*'), invalid('Invalid permission: must be a concrete segment(:segment)* (no *), at most 256 characters'))
})

test('assertChange checks the operation, the group and the field the operation needs', async (t) => {
  const invalid = (field: string) => ({ code: 'FST_POLICY_CACHE_INVALID_INPUT', statusCode: 400, message: new RegExp(`^Invalid ${field}: `) })
  const good: Change[] = [
    { op: 'create-group', group: 'g' },
    { op: 'delete-group', group: 'g' },
    { op: 'add-permission', group: 'g', permission: 'doc:*' },
    { op: 'remove-permission', group: 'g', permission: '*' },
    { op: 'assign-user', group: 'g', user: 'alice' },
    { op: 'unassign-user', group: 'g', user: 'bob' }
  ]
  for (const change of good) t.doesNotThrow(() => assertChange(change), change.op)

  t.throws(() => assertChange({ op: 'rename-group', group: 'g' } as unknown as Change), {
    ...invalid('operation'),
    message: `Invalid operation: must be one of ${OPERATIONS.join(', ')}`
  })
  // Each operation with exactly its own fields, the group malformed.
  const rest: Record<string, object> = { 'add-permission': { permission: 'doc:read' }, 'remove-permission': { permission: 'doc:read' }, 'assign-user': { user: 'alice' }, 'unassign-user': { user: 'alice' } }
  for (const op of OPERATIONS) {
    t.throws(() => assertChange({ op, group: 'bad group', ...rest[op] } as Change), invalid('group'), `${op}: group`)
  }
  for (const op of ['add-permission', 'remove-permission'] as const) {
    t.throws(() => assertChange({ op, group: 'g', permission: 'doc:**' }), invalid('permission'), `${op}: permission`)
    t.throws(() => assertChange({ op, group: 'g' } as unknown as Change), invalid('permission'), `${op}: no permission`)
  }
  for (const op of ['assign-user', 'unassign-user'] as const) {
    t.throws(() => assertChange({ op, group: 'g', user: 'no spaces' }), invalid('user'), `${op}: user`)
    t.throws(() => assertChange({ op, group: 'g' } as unknown as Change), invalid('user'), `${op}: no user`)
  }
  // A field the operation has no use for is refused, before its own fields are looked at.
  t.throws(() => assertChange({ op: 'create-group', group: 'g', user: 'no spaces', permission: 'doc:**' } as unknown as Change),
    { ...invalid('change'), message: 'Invalid change: create-group takes group only, not "user"' })
})

// The property tests last: a mutant that an example above catches is caught in milliseconds (Stryker stops
// a file at its first failure), not after 40 000 generated strings.
test('isPermission agrees with PERMISSION_PATTERN on permission-like strings', async (t) => {
  fc.assert(fc.property(fc.stringMatching(/^[a-cA9:._*\- \n\u00e9]{0,12}$/), (s) => isPermission(s) === byPattern(s)), { numRuns: 20000 })
  t.pass()
})

test('isPermission agrees with PERMISSION_PATTERN on arbitrary strings', async (t) => {
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 16 }), (s) => isPermission(s) === byPattern(s)), { numRuns: 20000 })
  t.pass()
})
