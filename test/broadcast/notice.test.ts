/** The wire format: what a sender encodes is what a receiver decodes, and a bad entry rejects the whole notice. */
import { test } from 'tap'
import { Compile } from 'typebox/compile'
import {
  decodeEntry, decodeNotice, encodeNotice, noticeChange, NoticeSchema,
  type Notice, type NoticeChange
} from '../../lib/broadcast/notice.js'
import type { LoggedChange } from '../../lib/model.js'

/** A digest (the value does not matter to the wire format). */
const D = 'ab'.repeat(16)
const DATABASE = '3f0c1b9e-9d4e-4c2a-8f43-2b1d5c6e7a80'

const committed: LoggedChange[] = [
  { op: 'create-group', group: 'g', revision: 1 },
  { op: 'add-permission', group: 'g', permission: 'doc:*', revision: 2 },
  { op: 'remove-permission', group: 'g', permission: '*', revision: 3 },
  { op: 'assign-user', group: 'g', user: 'alice@example.com', revision: 4 },
  { op: 'unassign-user', group: 'g', user: 'bob', revision: 5 },
  { op: 'delete-group', group: 'g', revision: 6 },
  { op: 'include-group', group: 'admins', includes: 'editors', revision: 7 },
  { op: 'exclude-group', group: 'admins', includes: 'editors', revision: 8 }
]

test('noticeChange puts a committed change and the digest after it on the wire as one flat entry', async (t) => {
  t.same(noticeChange('t1', committed[1], D), { tenant: 't1', revision: 2, digest: D, operation: 'add-permission', group: 'g', permission: 'doc:*' })
  t.same(noticeChange('t1', committed[3], D), { tenant: 't1', revision: 4, digest: D, operation: 'assign-user', group: 'g', user: 'alice@example.com' })
  t.same(noticeChange('t1', committed[0], D), { tenant: 't1', revision: 1, digest: D, operation: 'create-group', group: 'g' })
})

test('encode → JSON → schema → decode gives back every committed change of every operation, the digests and the database', async (t) => {
  const changes = committed.map((change, i) => noticeChange(`t${i}`, change, D))
  const body = encodeNotice('server-a', changes, { database: DATABASE })
  const parsed = JSON.parse(body) as Notice
  t.same(parsed, { type: 'policy.changed', origin: 'server-a', database: DATABASE, changes }, 'the body')
  t.ok(Compile(NoticeSchema).Check(parsed), 'what a sender encodes passes the receiver\'s schema')
  t.same(decodeNotice(parsed), {
    origin: 'server-a',
    database: DATABASE,
    entries: committed.map((change, i) => ({ tenant: `t${i}`, revision: change.revision, digest: D, carried: change }))
  })
  t.same(JSON.parse(encodeNotice('server-a', changes)), { type: 'policy.changed', origin: 'server-a', changes }, 'no database known: none sent')
})

test('a digest or a database id that is not one is refused by the schema', async (t) => {
  const check = Compile(NoticeSchema)
  const notice = (database: string, digest: string) => ({ type: 'policy.changed', origin: 'a', database, changes: [{ tenant: 't1', revision: 1, digest }] })
  t.ok(check.Check(notice(DATABASE, D)))
  t.notOk(check.Check(notice(DATABASE, D.toUpperCase())), 'uppercase hex')
  t.notOk(check.Check(notice(DATABASE, D.slice(1))), '31 digits')
  t.notOk(check.Check(notice('', D)), 'an empty database id')
  t.notOk(check.Check(notice('a b', D)), 'a database id with a space')
})

test('an entry without data (an older sender) decodes with nothing carried', async (t) => {
  t.same(decodeEntry({ tenant: 't1', revision: 3 }), { tenant: 't1', revision: 3, digest: undefined, carried: undefined })
  t.same(decodeEntry({ tenant: 't1', revision: 3, operation: 'assign-user' }), { tenant: 't1', revision: 3, digest: undefined, carried: undefined })
  t.same(decodeEntry({ tenant: 't1', revision: 3, actor: 'alice' } as NoticeChange), { tenant: 't1', revision: 3, digest: undefined, carried: undefined }, 'unknown fields are dropped')
  t.same(decodeNotice({ type: 'policy.changed', origin: 'a', changes: [{ tenant: 't1', revision: 3 }] }).database, undefined, 'nor a database id')
})

test('carried data that is malformed or does not fit its operation is a coded 400 saying why', async (t) => {
  const bad: Record<string, [NoticeChange, string | RegExp]> = {
    'data without operation': [{ tenant: 't1', revision: 3, group: 'g' }, 'Invalid change: carried data needs an operation'],
    'a user without operation': [{ tenant: 't1', revision: 3, user: 'u' }, 'Invalid change: carried data needs an operation'],
    'permission without group': [{ tenant: 't1', revision: 3, operation: 'add-permission', permission: 'doc:read' }, /^Invalid group: /],
    'add-permission without permission': [{ tenant: 't1', revision: 3, operation: 'add-permission', group: 'g' }, /^Invalid permission: /],
    'remove-permission with a user': [{ tenant: 't1', revision: 3, operation: 'remove-permission', group: 'g', permission: 'doc:read', user: 'u' }, 'Invalid change: remove-permission carries group and permission only'],
    'assign-user without user': [{ tenant: 't1', revision: 3, operation: 'assign-user', group: 'g' }, /^Invalid user: /],
    'assign-user with a permission': [{ tenant: 't1', revision: 3, operation: 'assign-user', group: 'g', user: 'u', permission: 'doc:read' }, 'Invalid change: assign-user carries group and user only'],
    'unassign-user with a permission': [{ tenant: 't1', revision: 3, operation: 'unassign-user', group: 'g', user: 'u', permission: 'doc:read' }, 'Invalid change: unassign-user carries group and user only'],
    'create-group with a user': [{ tenant: 't1', revision: 3, operation: 'create-group', group: 'g', user: 'u' }, 'Invalid change: create-group carries only group'],
    'delete-group with a permission': [{ tenant: 't1', revision: 3, operation: 'delete-group', group: 'g', permission: 'doc:read' }, 'Invalid change: delete-group carries only group'],
    'a user that is not an identifier': [{ tenant: 't1', revision: 3, operation: 'assign-user', group: 'g', user: 'no spaces' }, /^Invalid user: /],
    'a grant that is not one': [{ tenant: 't1', revision: 3, operation: 'add-permission', group: 'g', permission: 'doc:**' }, /^Invalid permission: /],
    'include-group without includes': [{ tenant: 't1', revision: 3, operation: 'include-group', group: 'g' }, /^Invalid includes: /],
    'include-group with a user': [{ tenant: 't1', revision: 3, operation: 'include-group', group: 'g', includes: 'h', user: 'u' }, 'Invalid change: include-group carries group and includes only'],
    'assign-user with includes': [{ tenant: 't1', revision: 3, operation: 'assign-user', group: 'g', user: 'u', includes: 'h' }, 'Invalid change: assign-user carries group and user only'],
    'includes without operation': [{ tenant: 't1', revision: 3, includes: 'h' }, 'Invalid change: carried data needs an operation']
  }
  for (const [name, [entry, message]] of Object.entries(bad)) {
    t.throws(() => decodeEntry(entry), { statusCode: 400, code: 'FST_POLICY_CACHE_INVALID_INPUT', message }, name)
  }
  const removal = { tenant: 't1', revision: 3, operation: 'remove-permission', group: 'g', permission: 'doc:read' } as const
  t.same(decodeEntry(removal).carried, { op: 'remove-permission', group: 'g', permission: 'doc:read', revision: 3 })
  const unassign = { tenant: 't1', revision: 3, operation: 'unassign-user', group: 'g', user: 'u' } as const
  t.same(decodeEntry(unassign).carried, { op: 'unassign-user', group: 'g', user: 'u', revision: 3 })
  const exclusion = { tenant: 't1', revision: 3, operation: 'exclude-group', group: 'g', includes: 'h' } as const
  t.same(decodeEntry(exclusion).carried, { op: 'exclude-group', group: 'g', includes: 'h', revision: 3 })
})

test('decodeNotice decodes every entry first: one bad entry rejects the notice, whatever its position', async (t) => {
  const good = noticeChange('t1', committed[3], D)
  const bad: NoticeChange = { tenant: 't2', revision: 4, operation: 'create-group', group: 'g', user: 'alice' }
  for (const changes of [[good, bad], [bad, good]]) {
    t.throws(() => decodeNotice({ type: 'policy.changed', origin: 'a', changes }), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  }
})

test('a batch entry carries its changes (no operation beside them) within the bounds, else nothing', async (t) => {
  const { MAX_CARRIED_BATCH, NoticeChangeSchema } = await import('../../lib/broadcast/notice.js')
  const changes = committed.map(({ revision: _revision, ...change }) => change) as Array<Exclude<LoggedChange, { op: 'batch' }>>
  const entry = noticeChange('t1', { op: 'batch', changes, revision: 9 }, D)
  t.same(entry, {
    tenant: 't1',
    revision: 9,
    digest: D,
    batch: changes.map(({ op, ...fields }) => ({ operation: op, ...fields }))
  })
  t.ok(Compile(NoticeChangeSchema).Check(entry))
  t.same(decodeEntry(entry), { tenant: 't1', revision: 9, digest: D, carried: { op: 'batch', changes, revision: 9 } }, 'decoded back')

  const many = Array.from({ length: MAX_CARRIED_BATCH + 1 }, (_, i) => ({ op: 'create-group' as const, group: `g${i}` }))
  t.same(noticeChange('t1', { op: 'batch', changes: many, revision: 9 }, D), { tenant: 't1', revision: 9, digest: D }, 'too many: nothing carried')
  const wide = Array.from({ length: 60 }, (_, i) => ({ op: 'add-permission' as const, group: 'g'.repeat(128), permission: `${i}:`.padEnd(256, 'p') }))
  t.same(noticeChange('t1', { op: 'batch', changes: wide, revision: 9 }, D), { tenant: 't1', revision: 9, digest: D }, 'too many bytes: nothing carried')
  const body = encodeNotice('a', [noticeChange('t1', { op: 'batch', changes: many.slice(0, MAX_CARRIED_BATCH), revision: 9 }, D)])
  t.ok(body.length < 32 * 1024, 'a carried batch fits one notice')
})

test('a malformed carried batch rejects the notice', async (t) => {
  const { NoticeChangeSchema } = await import('../../lib/broadcast/notice.js')
  const check = Compile(NoticeChangeSchema)
  const base = { tenant: 't1', revision: 2, digest: D }
  t.notOk(check.Check({ ...base, batch: [] }), 'empty')
  t.notOk(check.Check({ ...base, batch: [{ operation: 'drop', group: 'g' }] }), 'an unknown operation')
  t.notOk(check.Check({ ...base, batch: [{ operation: 'create-group', group: 'g', extra: 1 }] }), 'an unknown field')
  t.notOk(check.Check({ ...base, batch: Array.from({ length: 101 }, () => ({ operation: 'create-group', group: 'g' })) }), 'too many')
  t.throws(() => decodeEntry({ ...base, operation: 'create-group', group: 'g', batch: [{ operation: 'create-group', group: 'h' }] }),
    { code: 'FST_POLICY_CACHE_INVALID_INPUT' }, 'a change and a batch')
  t.throws(() => decodeEntry({ ...base, batch: [{ operation: 'create-group', group: 'h' }, { operation: 'create-group', group: 'h', user: 'x' }] }),
    { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /^changes\[1\]: / }, 'a field its operation does not take')
  t.throws(() => decodeEntry({ ...base, batch: [{ operation: 'assign-user', group: 'h' }] }), { code: 'FST_POLICY_CACHE_INVALID_INPUT' }, 'a missing field')
})
