/** The wire format: what a sender encodes is what a receiver decodes, and a bad entry rejects the whole notice. */
import { test } from 'tap'
import { Compile } from 'typebox/compile'
import {
  decodeEntry, decodeNotice, encodeNotice, noticeChange, NoticeSchema,
  type Notice, type NoticeChange
} from '../../lib/broadcast/notice.js'
import type { LoggedChange } from '../../lib/model.js'

const committed: LoggedChange[] = [
  { op: 'create-group', group: 'g', revision: 1 },
  { op: 'add-permission', group: 'g', permission: 'doc:*', revision: 2 },
  { op: 'remove-permission', group: 'g', permission: '*', revision: 3 },
  { op: 'assign-user', group: 'g', user: 'alice@example.com', revision: 4 },
  { op: 'unassign-user', group: 'g', user: 'bob', revision: 5 },
  { op: 'delete-group', group: 'g', revision: 6 }
]

test('noticeChange puts a committed change on the wire as one flat entry', async (t) => {
  t.same(noticeChange('t1', committed[1]), { tenant: 't1', revision: 2, operation: 'add-permission', group: 'g', permission: 'doc:*' })
  t.same(noticeChange('t1', committed[3]), { tenant: 't1', revision: 4, operation: 'assign-user', group: 'g', user: 'alice@example.com' })
  t.same(noticeChange('t1', committed[0]), { tenant: 't1', revision: 1, operation: 'create-group', group: 'g' })
})

test('encode → JSON → schema → decode gives back every committed change of every operation', async (t) => {
  const changes = committed.map((change, i) => noticeChange(`t${i}`, change))
  const body = encodeNotice('server-a', changes)
  const parsed = JSON.parse(body) as Notice
  t.same(parsed, { type: 'policy.changed', origin: 'server-a', changes }, 'the body')
  t.ok(Compile(NoticeSchema).Check(parsed), 'what a sender encodes passes the receiver\'s schema')
  t.same(decodeNotice(parsed), {
    origin: 'server-a',
    entries: committed.map((change, i) => ({ tenant: `t${i}`, revision: change.revision, carried: change }))
  })
})

test('an entry without data (an older sender) decodes with nothing carried', async (t) => {
  t.same(decodeEntry({ tenant: 't1', revision: 3 }), { tenant: 't1', revision: 3, carried: undefined })
  t.same(decodeEntry({ tenant: 't1', revision: 3, operation: 'assign-user' }), { tenant: 't1', revision: 3, carried: undefined })
  t.same(decodeEntry({ tenant: 't1', revision: 3, actor: 'alice' } as NoticeChange), { tenant: 't1', revision: 3, carried: undefined }, 'unknown fields are dropped')
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
    'a grant that is not one': [{ tenant: 't1', revision: 3, operation: 'add-permission', group: 'g', permission: 'doc:**' }, /^Invalid permission: /]
  }
  for (const [name, [entry, message]] of Object.entries(bad)) {
    t.throws(() => decodeEntry(entry), { statusCode: 400, code: 'FST_POLICY_CACHE_INVALID_INPUT', message }, name)
  }
  const removal = { tenant: 't1', revision: 3, operation: 'remove-permission', group: 'g', permission: 'doc:read' } as const
  t.same(decodeEntry(removal).carried, { op: 'remove-permission', group: 'g', permission: 'doc:read', revision: 3 })
  const unassign = { tenant: 't1', revision: 3, operation: 'unassign-user', group: 'g', user: 'u' } as const
  t.same(decodeEntry(unassign).carried, { op: 'unassign-user', group: 'g', user: 'u', revision: 3 })
})

test('decodeNotice decodes every entry first: one bad entry rejects the notice, whatever its position', async (t) => {
  const good = noticeChange('t1', committed[3])
  const bad: NoticeChange = { tenant: 't2', revision: 4, operation: 'create-group', group: 'g', user: 'alice' }
  for (const changes of [[good, bad], [bad, good]]) {
    t.throws(() => decodeNotice({ type: 'policy.changed', origin: 'a', changes }), { code: 'FST_POLICY_CACHE_INVALID_INPUT' })
  }
})
