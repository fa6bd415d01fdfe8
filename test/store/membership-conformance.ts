/**
 * The membership part of the conformance suite (PolicyStore.membership), for every store that has it.
 * Times are the database's: the tests read its clock through `version()`, never `Date.now()`.
 */
import type { Test } from 'tap'
import type { MemberIdentity, MembershipStore, PolicyStore } from '../../lib/store/types.js'
import type { StoreUnderTest } from './conformance.js'

const TTL = 15000
const PURGE = { afterMs: 60000, limit: 100 }

function identity (serverId: string, incarnation = `inc-${serverId}`, url = `http://127.0.0.1:1/${serverId}`): MemberIdentity {
  return { serverId, url, incarnation }
}

/** Resolves once the database's clock has passed `time` (a positive wait on the database, no fixed sleep). */
async function untilDbClockPasses (membership: MembershipStore, time: number): Promise<void> {
  while ((await membership.version()).now <= time) await new Promise((resolve) => setImmediate(resolve))
}

async function withMembership (t: Test, makeStore: () => Promise<StoreUnderTest>, fn: (membership: MembershipStore, store: PolicyStore) => Promise<void>): Promise<void> {
  const { store, cleanup } = await makeStore()
  t.teardown(async () => {
    await store.close()
    await cleanup()
  })
  await store.migrate()
  if (store.membership === undefined) throw new Error('the store has no membership')
  await fn(store.membership, store)
}

export function membershipConformance (t: Test, name: string, makeStore: () => Promise<StoreUnderTest>): void {
  const test = (title: string, fn: (t: Test, membership: MembershipStore, store: PolicyStore) => Promise<void>) =>
    t.test(`${name} membership: ${title}`, (t) => withMembership(t, makeStore, (membership, store) => fn(t, membership, store)))

  test('a fresh store has version 0 and no members', async (t, membership) => {
    const { version, nextExpiry, now } = await membership.version()
    t.equal(version, 0)
    t.equal(nextExpiry, null)
    t.ok(Number.isSafeInteger(now) && now > 0, 'the database clock is epoch ms')
    t.strictSame((await membership.members()).members, [])
  })

  test('join inserts an active row timed by the database clock and bumps the version', async (t, membership) => {
    const before = (await membership.version()).now
    t.strictSame(await membership.join(identity('a'), TTL), { replaced: undefined })
    const { version, now, members } = await membership.members()
    t.equal(version, 1)
    t.equal(members.length, 1)
    const [row] = members
    t.match(row, { serverId: 'a', url: 'http://127.0.0.1:1/a', incarnation: 'inc-a', status: 'active' })
    t.equal(row.startedAt, row.heartbeatAt)
    t.equal(row.expiresAt, row.heartbeatAt + TTL)
    t.ok(row.heartbeatAt >= before && row.heartbeatAt <= now, 'between two reads of the database clock')
    t.equal((await membership.version()).nextExpiry, row.expiresAt)
  })

  test('a restart (same serverId, new incarnation) replaces the row and reports the live one it replaced', async (t, membership) => {
    await membership.join(identity('a', 'one', 'http://127.0.0.1:1'), TTL)
    const { replaced } = await membership.join(identity('a', 'two', 'http://127.0.0.1:2'), TTL)
    t.match(replaced, { serverId: 'a', incarnation: 'one', status: 'active' })
    const { version, members } = await membership.members()
    t.equal(version, 2)
    t.match(members, [{ serverId: 'a', incarnation: 'two', url: 'http://127.0.0.1:2' }])
    t.equal(members.length, 1)
  })

  test('a heartbeat renews only its own incarnation and does not move the version', async (t, membership) => {
    await membership.join(identity('a'), TTL)
    const [joined] = (await membership.members()).members
    await untilDbClockPasses(membership, joined.heartbeatAt)
    t.equal(await membership.heartbeat(identity('a'), TTL, PURGE), 'renewed')
    const { version, members: [renewed] } = await membership.members()
    t.equal(version, 1, 'a renewal changes no live set')
    t.ok(renewed.heartbeatAt > joined.heartbeatAt)
    t.equal(renewed.expiresAt, renewed.heartbeatAt + TTL)
    t.equal(renewed.startedAt, joined.startedAt)

    t.equal(await membership.heartbeat(identity('a', 'other'), TTL, PURGE), 'replaced', 'another incarnation holds the id')
    t.match((await membership.members()).members, [{ incarnation: 'inc-a', heartbeatAt: renewed.heartbeatAt }], 'left alone')
  })

  test('rows past their expiry (database clock) are expired once, bumping the version once', async (t, membership) => {
    await membership.join(identity('a'), 1)
    await membership.join(identity('b'), 1)
    await membership.join(identity('c'), TTL)
    const { members } = await membership.members()
    await untilDbClockPasses(membership, Math.max(members[0].expiresAt, members[1].expiresAt))
    const { version, nextExpiry, now } = await membership.version()
    t.ok(nextExpiry !== null && nextExpiry <= now, 'version() shows an expiry is due')
    t.equal(await membership.expire(), 2)
    t.equal((await membership.version()).version, version + 1)
    t.strictSame((await membership.members()).members.map((row) => [row.serverId, row.status]), [['a', 'expired'], ['b', 'expired'], ['c', 'active']])
    t.equal(await membership.expire(), 0)
    t.equal((await membership.version()).version, version + 1, 'nothing more to expire: no bump')
  })

  test('a heartbeat expires others, and an instance whose own row expired rejoins', async (t, membership) => {
    await membership.join(identity('a'), 1)
    await membership.join(identity('b'), 1)
    const { members } = await membership.members()
    await untilDbClockPasses(membership, Math.max(...members.map((row) => row.expiresAt)))
    const { version } = await membership.version()
    t.equal(await membership.heartbeat(identity('a'), TTL, PURGE), 'rejoined')
    const after = await membership.members()
    t.strictSame(after.members.map((row) => [row.serverId, row.status]), [['a', 'active'], ['b', 'expired']])
    t.equal(after.version, version + 2, 'one bump for the rejoin, one for the expiry')
  })

  test('a heartbeat of a purged row inserts it again', async (t, membership) => {
    t.equal(await membership.heartbeat(identity('a'), TTL, PURGE), 'rejoined')
    t.match((await membership.members()).members, [{ serverId: 'a', status: 'active' }])
  })

  test('long-expired rows are deleted, at most `limit` per heartbeat', async (t, membership) => {
    for (const id of ['x', 'y', 'z']) await membership.join(identity(id), 1)
    await membership.join(identity('a'), TTL)
    const { members } = await membership.members()
    await untilDbClockPasses(membership, Math.max(...members.filter((row) => row.serverId !== 'a').map((row) => row.expiresAt)))
    await membership.expire()
    const { version } = await membership.version()
    await membership.heartbeat(identity('a'), TTL, { afterMs: 0, limit: 2 })
    t.equal((await membership.members()).members.length, 2, 'two of three purged, and a')
    await membership.heartbeat(identity('a'), TTL, { afterMs: 0, limit: 2 })
    t.strictSame((await membership.members()).members.map((row) => row.serverId), ['a'])
    t.equal((await membership.version()).version, version, 'purging expired rows changes no live set')
  })

  test('leave and remove touch only their own incarnation, and bump the version', async (t, membership) => {
    await membership.join(identity('a'), TTL)
    await membership.leave(identity('a', 'other'))
    await membership.remove(identity('a', 'other'))
    t.match(await membership.members(), { version: 1, members: [{ status: 'active' }] })
    await membership.leave(identity('a'))
    t.match(await membership.members(), { version: 2, members: [{ status: 'leaving' }] })
    t.equal((await membership.version()).nextExpiry, null, 'a leaving row is not an active one')
    await membership.leave(identity('a'))
    t.equal((await membership.version()).version, 2, 'already leaving: no bump')
    await membership.remove(identity('a'))
    t.match(await membership.members(), { version: 3, members: [] })
    await membership.remove(identity('a'))
    t.equal((await membership.version()).version, 3, 'already gone: no bump')
  })

  test('the caller\'s clock plays no part: a process minutes off neither expires others nor is expired', async (t, membership) => {
    const realNow = Date.now
    t.teardown(() => { Date.now = realNow })
    await membership.join(identity('a'), TTL)
    Date.now = () => realNow() + 10 * 60000
    await membership.join(identity('ahead'), TTL)
    t.equal(await membership.heartbeat(identity('ahead'), TTL, { afterMs: 0, limit: 100 }), 'renewed')
    t.equal(await membership.expire(), 0, 'a clock 10 minutes ahead expires nobody')
    Date.now = () => realNow() - 10 * 60000
    await membership.join(identity('behind'), TTL)
    t.equal(await membership.heartbeat(identity('behind'), TTL, PURGE), 'renewed')
    Date.now = realNow
    const { now, members } = await membership.members()
    t.strictSame(members.map((row) => row.status), ['active', 'active', 'active'])
    for (const row of members) t.ok(row.expiresAt > now && row.expiresAt <= now + TTL, `${row.serverId} expires ttlMs after the database's clock`)
  })

  test('concurrent joins and heartbeats lose no row and no bump', async (t, membership, store) => {
    const ids = Array.from({ length: 10 }, (_, i) => `s${i}`)
    await Promise.all(ids.map((id) => membership.join(identity(id), TTL)))
    await Promise.all(ids.map((id) => membership.heartbeat(identity(id), TTL, PURGE)))
    const { version, members } = await membership.members()
    t.equal(version, ids.length)
    t.strictSame(members.map((row) => row.serverId), ids)
    t.ok(store.membership === membership)
  })
}
