import fc from 'fast-check'
import { test } from 'tap'
import {
  ACTOR_MAX_LENGTH, assertActor, assertBatch, assertChange, assertGrant, assertGroups, assertIdentifier, assertIfRevision,
  assertPermission, atIndex, checkRevision, IDENTIFIER_PATTERN, isGrant, isIdentifier, isPermission, loggedBatch, OPERATIONS,
  PERMISSION_MAX_LENGTH, PERMISSION_PATTERN, replaceChanges, revisionConflict, type Change, type GroupData
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
  for (const value of [null, 'create-group', 7]) {
    t.throws(() => assertChange(value as unknown as Change), { ...invalid('change'), message: 'Invalid change: must be an object' }, String(value))
  }
  t.throws(() => assertChange({ op: 'exclude-group', group: 'g', includes: '-h' }), invalid('includes'), 'exclude-group: includes')
  t.throws(() => assertChange({ op: 'include-group', group: 'g', includes: '-h' }), invalid('includes'), 'include-group: includes')
  t.throws(() => assertChange({ op: 'add-permission', group: 'g', permission: 'doc', user: 'u' } as unknown as Change),
    { ...invalid('change'), message: 'Invalid change: add-permission takes group and permission only, not "user"' })
  // A field the operation has no use for is refused, before its own fields are looked at.
  t.throws(() => assertChange({ op: 'create-group', group: 'g', user: 'no spaces', permission: 'doc:**' } as unknown as Change),
    { ...invalid('change'), message: 'Invalid change: create-group takes group only, not "user"' })
})

const invalidInput = (message: string | RegExp) => ({ code: 'FST_POLICY_CACHE_INVALID_INPUT', statusCode: 400, message })

test('assertBatch: an array of valid changes; a bad one is named by its place', async (t) => {
  t.doesNotThrow(() => assertBatch([]))
  t.doesNotThrow(() => assertBatch([{ op: 'create-group', group: 'g' }, { op: 'include-group', group: 'g', includes: 'h' }]))
  for (const value of [null, 'create-group', { op: 'create-group', group: 'g' }]) {
    t.throws(() => assertBatch(value as unknown as Change[]), invalidInput('Invalid changes: must be an array of changes'), JSON.stringify(value))
  }
  const bad = [{ op: 'create-group', group: 'g' }, { op: 'assign-user', group: 'g', user: 'no spaces' }] as Change[]
  t.throws(() => assertBatch(bad), { ...invalidInput(/^changes\[1\]: Invalid user: /), index: 1 })
  t.throws(() => assertBatch([bad[1], bad[0]]), { ...invalidInput(/^changes\[0\]: Invalid user: /), index: 0 })
})

test('atIndex prefixes the place and sets index on the same error', async (t) => {
  const err = new Error('Invalid group: bad')
  const out = atIndex(err, 7)
  t.equal(out, err)
  t.equal(out.message, 'changes[7]: Invalid group: bad')
  t.equal((out as Error & { index: number }).index, 7)
})

test('assertIfRevision: absent, or a non-negative safe integer', async (t) => {
  for (const value of [undefined, 0, 1, Number.MAX_SAFE_INTEGER]) t.doesNotThrow(() => assertIfRevision(value), String(value))
  for (const value of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1, Number.NaN, Infinity, '3', null]) {
    t.throws(() => assertIfRevision(value), invalidInput('Invalid ifRevision: must be a non-negative integer (0: the tenant was never written)'), String(value))
  }
})

test('assertActor: absent, or 1 to 255 characters, no control character, no lone surrogate', async (t) => {
  t.equal(ACTOR_MAX_LENGTH, 255)
  for (const value of [undefined, 'a', 'alice@example.com', 'a'.repeat(255), 'Zoë 😀', '\u00a0x']) t.doesNotThrow(() => assertActor(value), String(value).slice(0, 20))
  const message = 'Invalid actor: must be 1 to 255 characters without control characters'
  for (const value of ['', 'a'.repeat(256), 'a\nb', '\u0000', '\u001f', '\u007f', '\u0080', '\u009f', '\u2028', '\u2029', 'x\uD800', '\uDC00x', '\uDE00\uD83D', 42, null]) {
    // The code points name the case (a raw line separator would break the TAP stream).
    const name = typeof value === 'string' ? Array.from(value.slice(0, 4), (c) => c.charCodeAt(0).toString(16)).join(' ') : String(value)
    t.throws(() => assertActor(value), invalidInput(message), name)
  }
})

test('checkRevision: a 409 with the current revision when ifRevision is given and differs', async (t) => {
  t.doesNotThrow(() => checkRevision('t1', 4, undefined))
  t.doesNotThrow(() => checkRevision('t1', 4, 4))
  t.doesNotThrow(() => checkRevision('t1', 0, 0))
  const conflict = {
    code: 'FST_POLICY_CACHE_REVISION_CONFLICT',
    statusCode: 409,
    currentRevision: 4,
    message: 'Tenant "t1" is at revision 4, not at ifRevision 3: nothing was written; read the tenant again and retry'
  }
  t.throws(() => checkRevision('t1', 4, 3), conflict)
  t.throws(() => checkRevision('t1', 4, 5), { ...conflict, message: /not at ifRevision 5/ })
  t.match(revisionConflict('t2', 0, 9), { ...conflict, currentRevision: 0, message: /^Tenant "t2" is at revision 0, not at ifRevision 9/ })
})

test('assertGroups names the first bad place of a document', async (t) => {
  const g = (name: string, more: Partial<GroupData> = {}): GroupData => ({ name, permissions: [], users: [], ...more })
  t.doesNotThrow(() => assertGroups([], 't1'))
  t.doesNotThrow(() => assertGroups([g('a', { permissions: ['*', 'doc:*'], users: ['u'], includes: ['b'] }), g('b')], 't1'))
  const bad: Array<[unknown, string]> = [
    [{ name: 'a' }, 'Invalid groups: must be an array of { name, permissions, users }'],
    [[null], 'Invalid groups[0]: must be { name, permissions, users }'],
    [[g('a'), 'b'], 'Invalid groups[1]: must be { name, permissions, users }'],
    [[[]], 'Invalid groups[0]: must be { name, permissions, users }'],
    [[{ ...g('a'), extra: 1 }], 'Invalid groups[0]: takes name, permissions, users and includes only, not "extra"'],
    [[g('bad name')], `Invalid groups[0].name: must match ${IDENTIFIER_PATTERN}`],
    [[{ permissions: [], users: [] }], `Invalid groups[0].name: must match ${IDENTIFIER_PATTERN}`],
    [[g('a'), g('a')], 'Invalid groups[1].name: "a" is named twice'],
    [[{ name: 'a', users: [] }], 'Invalid groups[0].permissions: must be an array'],
    [[g('a', { permissions: ['doc:**'] })], 'Invalid groups[0].permissions[0]: must be a grant (segment(:segment)* with an optional final *, at most 256 characters)'],
    [[g('a', { permissions: ['doc', 'doc'] })], 'Invalid groups[0].permissions[1]: "doc" is listed twice'],
    [[{ name: 'a', permissions: [] }], 'Invalid groups[0].users: must be an array'],
    [[g('a', { users: ['u', 'no spaces'] })], `Invalid groups[0].users[1]: must be a user id matching ${IDENTIFIER_PATTERN}`],
    [[g('a', { users: ['u', 'u'] })], 'Invalid groups[0].users[1]: "u" is listed twice'],
    [[g('a', { includes: 'b' as unknown as string[] })], 'Invalid groups[0].includes: must be an array'],
    [[g('a', { includes: ['-b'] })], `Invalid groups[0].includes[0]: must be a group id matching ${IDENTIFIER_PATTERN}`],
    [[g('a'), g('b', { includes: ['a', 'c'] })], 'Invalid groups[1].includes[1]: "c" is no group of the document']
  ]
  for (const [groups, message] of bad) t.throws(() => assertGroups(groups, 't1'), invalidInput(message), message)
  t.throws(() => assertGroups([g('a', { includes: ['b'] }), g('b', { includes: ['c'] }), g('c', { includes: ['a'] })], 't1'), {
    code: 'FST_POLICY_CACHE_INCLUSION_CYCLE',
    statusCode: 409,
    path: ['c', 'a', 'b', 'c'],
    message: /^Group "c" cannot include "a" in tenant "t1"/
  })
  t.throws(() => assertGroups([g('a', { includes: ['a'] })], 't1'), { code: 'FST_POLICY_CACHE_INCLUSION_CYCLE', path: ['a', 'a'] }, 'a group including itself')
})

test('replaceChanges: deletions first, then each group by name, inclusions last; none when equal', async (t) => {
  const g = (name: string, permissions: string[] = [], users: string[] = [], includes?: string[]): GroupData =>
    ({ name, permissions, users, ...(includes === undefined ? {} : { includes }) })
  t.same(replaceChanges([], []), [])
  const doc = [g('a', ['x', 'y'], ['u'], ['b']), g('b')]
  t.same(replaceChanges(doc, doc), [], 'the same document')
  t.same(replaceChanges([g('a', ['y', 'x'], ['u'], ['b']), g('b', [], [], [])], doc), [], 'order and an empty includes do not matter')
  t.same(replaceChanges(
    [g('z', ['p']), g('c'), g('a', ['x', 'q'], ['u', 'v'], ['c', 'z']), g('b')],
    [g('d', ['p'], ['w'], ['a']), g('a', ['y', 'x', 'b:*'], ['w', 'u'], ['b']), g('b', [], [], [])]
  ), [
    { op: 'delete-group', group: 'c' },
    { op: 'delete-group', group: 'z' },
    { op: 'remove-permission', group: 'a', permission: 'q' },
    { op: 'add-permission', group: 'a', permission: 'b:*' },
    { op: 'add-permission', group: 'a', permission: 'y' },
    { op: 'unassign-user', group: 'a', user: 'v' },
    { op: 'assign-user', group: 'a', user: 'w' },
    { op: 'create-group', group: 'd' },
    { op: 'add-permission', group: 'd', permission: 'p' },
    { op: 'assign-user', group: 'd', user: 'w' },
    { op: 'include-group', group: 'a', includes: 'b' },
    { op: 'include-group', group: 'd', includes: 'a' }
  ], 'the inclusions of deleted groups go with them; an inclusion kept is no change')
  t.same(replaceChanges([g('a', ['z', 'q'], ['v', 'u'])], [g('a'), g('c', ['p']), g('b', ['p'])]), [
    { op: 'remove-permission', group: 'a', permission: 'q' },
    { op: 'remove-permission', group: 'a', permission: 'z' },
    { op: 'unassign-user', group: 'a', user: 'u' },
    { op: 'unassign-user', group: 'a', user: 'v' },
    { op: 'create-group', group: 'b' },
    { op: 'add-permission', group: 'b', permission: 'p' },
    { op: 'create-group', group: 'c' },
    { op: 'add-permission', group: 'c', permission: 'p' }
  ], 'the groups by name and what differs sorted, whatever the order given')
  t.same(replaceChanges([g('a', [], [], ['b', 'c']), g('b'), g('c')], [g('a', [], [], ['c']), g('b'), g('c')]),
    [{ op: 'exclude-group', group: 'a', includes: 'b' }], 'an exclusion')
})

test('loggedBatch: null for no effect, the change itself for one, a batch for several', async (t) => {
  const one: Change = { op: 'create-group', group: 'g' }
  const two: Change = { op: 'delete-group', group: 'h' }
  t.equal(loggedBatch([]), null)
  t.equal(loggedBatch([one]), one)
  t.same(loggedBatch([one, two]), { op: 'batch', changes: [one, two] })
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

/** A document as a map of group → its sets, for comparing and applying. */
type Tenant = Map<string, { permissions: Set<string>, users: Set<string>, includes: Set<string> }>
const toTenant = (groups: readonly GroupData[]): Tenant =>
  new Map(groups.map((group) => [group.name, { permissions: new Set(group.permissions), users: new Set(group.users), includes: new Set(group.includes ?? []) }]))

/** A tenant's text, its groups and each set sorted: equal texts, equal tenants. */
const normal = (tenant: Tenant): string => JSON.stringify([...tenant].sort(([a], [b]) => a < b ? -1 : 1)
  .map(([name, { permissions, users, includes }]) => [name, [...permissions].sort(), [...users].sort(), [...includes].sort()]))

/** Applies one change the way a batch does, failing on a change that has no effect or names a missing group. */
function apply (tenant: Tenant, change: Change): void {
  const group = tenant.get(change.group)
  if (change.op === 'create-group') {
    if (group !== undefined) throw new Error(`create of existing ${change.group}`)
    tenant.set(change.group, { permissions: new Set(), users: new Set(), includes: new Set() })
    return
  }
  if (group === undefined) throw new Error(`${change.op} of missing ${change.group}`)
  const toggle = (set: Set<string>, value: string, add: boolean): void => {
    if (set.has(value) === add) throw new Error(`${change.op} ${value} has no effect`)
    if (add) set.add(value)
    else set.delete(value)
  }
  switch (change.op) {
    case 'delete-group':
      tenant.delete(change.group)
      for (const other of tenant.values()) other.includes.delete(change.group)
      return
    case 'add-permission': return toggle(group.permissions, change.permission, true)
    case 'remove-permission': return toggle(group.permissions, change.permission, false)
    case 'assign-user': return toggle(group.users, change.user, true)
    case 'unassign-user': return toggle(group.users, change.user, false)
    case 'include-group':
      if (!tenant.has(change.includes)) throw new Error(`include of missing ${change.includes}`)
      return toggle(group.includes, change.includes, true)
    case 'exclude-group': return toggle(group.includes, change.includes, false)
  }
}

test('replaceChanges applied in order turns any document into any other, every change having an effect', async (t) => {
  // Inclusions only of later names: every generated document is acyclic.
  const documents = fc.uniqueArray(fc.constantFrom('a', 'b', 'c', 'd')).chain((chosen) => fc.tuple(...chosen.map((name) => {
    const later = chosen.filter((other) => other > name)
    return fc.record({
      name: fc.constant(name),
      permissions: fc.uniqueArray(fc.constantFrom('*', 'doc:*', 'doc:read', 'x'), { maxLength: 3 }),
      users: fc.uniqueArray(fc.constantFrom('u1', 'u2', 'u3'), { maxLength: 3 }),
      includes: later.length === 0 ? fc.constant(undefined) : fc.option(fc.uniqueArray(fc.constantFrom(...later)), { nil: undefined })
    })
  })))
  fc.assert(fc.property(documents, documents, (current, target) => {
    const tenant = toTenant(current as GroupData[])
    const changes = replaceChanges(current as GroupData[], target as GroupData[])
    const firstInclusion = changes.findIndex((change) => change.op === 'include-group')
    if (firstInclusion !== -1 && changes.slice(firstInclusion).some((change) => change.op !== 'include-group')) return false
    for (const change of changes) apply(tenant, change)
    return normal(tenant) === normal(toTenant(target as GroupData[]))
  }), { numRuns: 500 })
  t.pass()
})
