/** The wire format: what a sender encodes is what a receiver decodes, and a bad entry rejects the whole notice. */
import { test } from 'tap'
import { Compile } from 'typebox/compile'
import {
  CarriedChangeSchema, decodeEntry, decodeNotice, encodeNotice, MAX_CARRIED_BATCH, MAX_CARRIED_BATCH_BYTES, noticeChange,
  NoticeChangeSchema, NoticeReplySchema, NoticeSchema, type Notice, type NoticeChange
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
  t.equal(noticeChange('t1', { op: 'batch', changes: many.slice(0, MAX_CARRIED_BATCH), revision: 9 }, D).batch?.length, MAX_CARRIED_BATCH, 'exactly the most changes: carried')
})

test('a batch of exactly MAX_CARRIED_BATCH_BYTES is carried, one byte more is not', async (t) => {
  /** Changes whose carried form is `bytes` long as JSON (each character of a permission is one byte of it). */
  const batchOf = (bytes: number) => {
    const changes = Array.from({ length: 64 }, (_, i) => ({ op: 'add-permission' as const, group: 'g', permission: `${i}:`.padEnd(150, 'p') }))
    const carried = (): number => JSON.stringify(changes.map(({ op, ...fields }) => ({ operation: op, ...fields }))).length
    for (let i = 0, missing = bytes - carried(); missing > 0; i++) {
      const grow = Math.min(missing, 256 - changes[i].permission.length)
      changes[i].permission = changes[i].permission.padEnd(changes[i].permission.length + grow, 'q')
      missing -= grow
    }
    t.equal(carried(), bytes, `a batch of ${bytes} bytes`)
    return changes
  }
  t.ok(noticeChange('t1', { op: 'batch', changes: batchOf(MAX_CARRIED_BATCH_BYTES), revision: 9 }, D).batch, 'at the bound: carried')
  t.notOk(noticeChange('t1', { op: 'batch', changes: batchOf(MAX_CARRIED_BATCH_BYTES + 1), revision: 9 }, D).batch, 'over it: not')
})

test('a malformed carried batch rejects the notice', async (t) => {
  const check = Compile(NoticeChangeSchema)
  const base = { tenant: 't1', revision: 2, digest: D }
  t.notOk(check.Check({ ...base, batch: [] }), 'empty')
  t.notOk(check.Check({ ...base, batch: [{ operation: 'drop', group: 'g' }] }), 'an unknown operation')
  t.notOk(check.Check({ ...base, batch: [{ operation: 'create-group', group: 'g', extra: 1 }] }), 'an unknown field')
  t.notOk(check.Check({ ...base, batch: Array.from({ length: 101 }, () => ({ operation: 'create-group', group: 'g' })) }), 'too many')
  const batch = [{ operation: 'create-group' as const, group: 'h' }]
  // Any one field of a carried change beside a batch is refused.
  for (const beside of [{ operation: 'create-group' }, { group: 'g' }, { permission: 'doc:read' }, { user: 'u' }, { includes: 'h' }] as const) {
    t.throws(() => decodeEntry({ ...base, ...beside, batch }),
      { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: 'Invalid change: an entry carries one change or a batch, not both' }, `a batch and ${Object.keys(beside)[0]}`)
  }
  t.throws(() => decodeEntry({ ...base, batch: [{ operation: 'create-group', group: 'h' }, { operation: 'create-group', group: 'h', user: 'x' }] }),
    { code: 'FST_POLICY_CACHE_INVALID_INPUT', message: /^changes\[1\]: / }, 'a field its operation does not take')
  t.throws(() => decodeEntry({ ...base, batch: [{ operation: 'assign-user', group: 'h' }] }), { code: 'FST_POLICY_CACHE_INVALID_INPUT' }, 'a missing field')
})

test('the schemas check each carried field\'s pattern and bound, as decoding does', async (t) => {
  const carried = Compile(CarriedChangeSchema)
  t.ok(carried.Check({ operation: 'add-permission', group: 'g', permission: 'doc:*' }))
  t.ok(carried.Check({ operation: 'include-group', group: 'g', includes: 'h' }))
  t.ok(carried.Check({ operation: 'assign-user', group: 'g', user: 'alice@example.com' }))
  for (const [name, change] of Object.entries({
    'an unknown operation': { operation: 'rename-group', group: 'g' },
    'a group that is no identifier': { operation: 'create-group', group: 'no spaces' },
    'a grant that is none': { operation: 'add-permission', group: 'g', permission: 'doc:**' },
    'a grant over 256 characters': { operation: 'add-permission', group: 'g', permission: 'p'.repeat(257) },
    'a user that is no identifier': { operation: 'assign-user', group: 'g', user: '-u' },
    'an included group that is no identifier': { operation: 'include-group', group: 'g', includes: 'a/b' }
  })) t.notOk(carried.Check(change), `carried: ${name}`)

  const entry = Compile(NoticeChangeSchema)
  const base = { tenant: 't1', revision: 2 }
  t.ok(entry.Check({ ...base, operation: 'include-group', group: 'g', includes: 'h' }))
  t.ok(entry.Check({ ...base, actor: 'a newer sender\'s field' }), 'unknown fields are allowed')
  for (const [name, fields] of Object.entries({
    'a tenant that is no identifier': { tenant: 'a b' },
    'revision 0': { revision: 0 },
    'a revision past the safe integers': { revision: Number.MAX_SAFE_INTEGER + 1 },
    'an unknown operation': { operation: 'rename-group' },
    'a group that is no identifier': { group: 'no spaces' },
    'a grant that is none': { permission: 'doc:**' },
    'a grant over 256 characters': { permission: 'p'.repeat(257) },
    'a user that is no identifier': { user: '-u' },
    'an included group that is no identifier': { includes: 'a/b' }
  })) t.notOk(entry.Check({ ...base, ...fields }), `entry: ${name}`)

  const notice = Compile(NoticeSchema)
  t.notOk(notice.Check({ type: 'policy.changed', origin: 'a', url: 'u'.repeat(2049), changes: [] }), 'a URL over 2048 characters')
  t.notOk(notice.Check({ type: 'policy.changed', origin: 'no spaces', changes: [] }), 'an origin that is no identifier')
  t.ok(notice.Check({ type: 'policy.changed', origin: 'a', changes: [], sentAt: 1 }), 'unknown fields are allowed')
  const reply = Compile(NoticeReplySchema)
  t.ok(reply.Check({ serverId: 'b', revisions: { t1: 3, t2: null } }))
  t.notOk(reply.Check({ serverId: 'b', revisions: {}, extra: 1 }), 'the reply is closed')
})

test('the published schemas describe every field (the OpenAPI page) and say which objects are open', async (t) => {
  for (const [name, schema] of Object.entries({ CarriedChangeSchema, NoticeChangeSchema, NoticeSchema, NoticeReplySchema })) {
    for (const [field, property] of Object.entries(schema.properties)) {
      if (field === 'type') continue
      t.match(property, { description: /\w/ }, `${name}.${field}`)
    }
  }
  t.match(NoticeSchema, { additionalProperties: true, description: /Standard Webhooks/ }, 'a notice is open: newer senders can add fields')
  t.match(NoticeChangeSchema, { additionalProperties: true }, 'so is an entry')
  t.match(CarriedChangeSchema, { additionalProperties: false }, 'a carried change is closed')
  t.match(NoticeReplySchema, { additionalProperties: false }, 'so is the reply')
})
