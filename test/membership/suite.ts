/**
 * Membership between in-process instances on one database (docs/membership.md), run on SQLite,
 * PostgreSQL and MariaDB. Waits are positive (until a condition holds, with a deadline); nothing
 * asserts a duration (bench/ measures those).
 */
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import type { Test } from 'tap'
import policyCache, { type PolicyCacheOptions, type PeerStatus } from '../../lib/plugin.js'
import { KyselyPolicyStore } from '../../lib/store/index.js'
import type { MembershipStore } from '../../lib/store/types.js'
import { SECRET } from '../helpers/app.js'
import { freePort } from '../helpers/cluster.js'

/** How a suite reaches its database: a Kysely per instance (or one shared), under one table prefix. */
export interface MembershipDatabase {
  /** A Kysely for one instance; `release` is called after that instance closed. */
  open (): Promise<{ db: Kysely<any>, release: () => Promise<void> }>
  tablePrefix: string
}

export interface Member {
  app: FastifyInstance
  url: string
  serverId: string
  /** The membership store of the instance's database (a second handle on it). */
  membership: MembershipStore
  /** Log lines at warn and above, parsed. */
  logs: Array<{ level: number, msg: string, [key: string]: unknown }>
  close (): Promise<void>
}

/** Short periods; the ttl leaves a loaded machine room for a late heartbeat or two. */
export const FAST = { heartbeatMs: 200, ttlMs: 3000, pollMs: 50 }

/** Resolves with `fn()`'s first truthy value; fails after `timeoutMs` naming `what`. */
export async function until<T> (what: string, fn: () => T | Promise<T>, timeoutMs = 30000): Promise<NonNullable<Exclude<T, false>>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await fn()
    if (value !== undefined && value !== null && value !== false) return value as NonNullable<Exclude<T, false>>
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Starts one instance with membership on, listening on a free loopback port; closed at the end of the test. */
export async function startMember (t: Test, database: MembershipDatabase, serverId: string, options: PolicyCacheOptions = {}): Promise<Member> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const logs: Member['logs'] = []
  const stream = new Writable({
    write (chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line))
      done()
    }
  })
  const app = Fastify({ logger: { level: 'warn', stream } })
  const { db, release } = await database.open()
  let closed: Promise<void> | undefined
  const close = () => {
    closed ??= app.close().then(release)
    return closed
  }
  t.teardown(close)
  await app.register(policyCache, {
    db,
    tablePrefix: database.tablePrefix,
    serverId,
    publicUrl: url,
    webhookSecret: SECRET,
    syncIntervalMs: 0,
    // A write waits only until every live peer acknowledged: a long bound costs nothing here, and a
    // loaded machine's first request is never mistaken for a down peer.
    ackTimeoutMs: 60000,
    membership: FAST,
    ...options
  })
  await app.listen({ port, host: '127.0.0.1' })
  const membership = new KyselyPolicyStore({ db, tablePrefix: database.tablePrefix }).membership
  return { app, url, serverId, membership, logs, close }
}

/** The peers `member` sends to, by serverId (members) or URL (seeds not yet answered). */
function peerOf (member: Member, url: string): PeerStatus | undefined {
  return member.app.policyCache.peers().find((peer) => peer.url === url)
}

export function membershipSuite (t: Test, name: string, database: (t: Test) => Promise<MembershipDatabase>): void {
  const test = (title: string, fn: (t: Test, database: MembershipDatabase) => Promise<void>) =>
    t.test(`${name}: ${title}`, async (t) => fn(t, await database(t)))

  test('a new instance is in every writer\'s set with no peer list, the next write reaches it, and a graceful close takes it out', async (t, database) => {
    const a = await startMember(t, database, 'a')
    const b = await startMember(t, database, 'b')
    await until('a and b see each other', () => peerOf(a, b.url) !== undefined && peerOf(b, a.url) !== undefined)
    const c = await startMember(t, database, 'c')
    for (const writer of [a, b]) {
      const peer = await until(`${writer.serverId} sees c`, () => peerOf(writer, c.url))
      t.match(peer, { serverId: 'c', source: 'membership', incarnation: String }, `${writer.serverId} lists c from the membership, by its serverId before c ever answered`)
      t.ok(peer.heartbeatAgeMs !== null && peer.heartbeatAgeMs >= 0)
    }
    await a.app.policyCache.createGroup('t1', 'g')
    t.match(await a.app.policyCache.assignUser('t1', 'g', 'alice'), { peers: { acked: 2, total: 2 } }, 'the next write is acknowledged by both others')
    t.equal(await c.app.policyCache.revision('t1'), 2)

    await c.close()
    await until('a and b drop c', () => peerOf(a, c.url) === undefined && peerOf(b, c.url) === undefined)
    const after = await a.app.policyCache.createGroup('t1', 'h')
    t.match(after, { peers: { acked: 1, total: 1 } })
    const health = await a.app.inject({ url: '/health' })
    t.match(health.json(), { status: 'ok', membership: 'ok', peers: { total: 1 } })
  })

  test('drain (the start of a graceful shutdown) leaves the membership while the instance still serves', async (t, database) => {
    const a = await startMember(t, database, 'a')
    const b = await startMember(t, database, 'b')
    await until('a sees b', () => peerOf(a, b.url))
    await b.app.policyCache.drain()
    t.match((await a.membership.members()).members.find((row) => row.serverId === 'b'), { status: 'leaving' }, 'b\'s row says leaving once drained')
    await until('a drops b', () => peerOf(a, b.url) === undefined)
    t.match((await b.app.inject({ url: '/health' })).json(), { status: 'closing' }, 'b still answers, as closing')
    t.match(await a.app.policyCache.createGroup('t1', 'g'), { peers: { acked: 0, total: 0 } }, 'a\'s writes no longer wait for b')
  })

  test('a member that stops heartbeating (a crash) costs writers an answered refusal, then expires', async (t, database) => {
    const a = await startMember(t, database, 'a')
    const deadPort = await freePort()
    const ghost = { serverId: 'ghost', url: `http://127.0.0.1:${deadPort}`, incarnation: 'crashed' }
    await a.membership.join(ghost, 1000)
    await until('a sees the ghost', () => peerOf(a, ghost.url))
    const write = await a.app.policyCache.createGroup('t1', 'g')
    t.match(write, { changed: true, peers: { acked: 0, total: 1 } }, 'a refused connection releases the write')
    t.match(peerOf(a, ghost.url), { state: 'down' })
    await until('the ghost expires out of a\'s set', () => peerOf(a, ghost.url) === undefined)
    t.match((await a.membership.members()).members.find((row) => row.serverId === 'ghost'), { status: 'expired' })
  })

  test('a restart with the same serverId replaces its row: a new incarnation, no duplicate', async (t, database) => {
    const a = await startMember(t, database, 'a')
    const b1 = await startMember(t, database, 'b')
    const first = (await until('a sees b', () => peerOf(a, b1.url))).incarnation
    await b1.close()
    const b2 = await startMember(t, database, 'b')
    const second = await until('a sees b again', () => peerOf(a, b2.url)?.incarnation)
    t.not(second, first)
    const rows = (await a.membership.members()).members.filter((row) => row.serverId === 'b')
    t.equal(rows.length, 1)
    t.equal(rows[0].incarnation, second)
  })

  test('two instances claiming one serverId: reported, and the row does not flap', async (t, database) => {
    const first = await startMember(t, database, 'dup')
    const second = await startMember(t, database, 'dup')
    await until('the first reports the conflict', async () => (await first.app.inject({ url: '/health' })).json().membership === 'degraded')
    t.ok(first.logs.some((line) => line.level === 50 && /another instance registered with this serverId/.test(line.msg)), 'logged as an error')
    t.ok(second.logs.some((line) => line.level === 40 && /still live under another incarnation/.test(line.msg)), 'the newer one warns it replaced a live row')
    const [row] = (await first.membership.members()).members
    // Three heartbeats of the second later (the first beats as often), the row is still the second's.
    let heartbeatAt = row.heartbeatAt
    for (let beat = 0; beat < 3; beat++) {
      heartbeatAt = await until('the second renews its row', async () => {
        const [now] = (await second.membership.members()).members
        t.equal(now.incarnation, row.incarnation, 'never taken back by the first')
        return now.heartbeatAt > heartbeatAt && now.heartbeatAt
      })
    }
    t.equal(first.logs.filter((line) => line.level === 50).length, 1, 'reported once')
    t.match((await second.app.inject({ url: '/health' })).json(), { membership: 'ok' })
    await first.close()
    t.equal((await second.membership.members()).members.length, 1, 'the first\'s close leaves the second\'s row alone')
  })

  test('malformed rows are ignored with one warning and never sent to', async (t, database) => {
    const a = await startMember(t, database, 'a')
    await a.membership.join({ serverId: 'bad-url', url: 'ftp://127.0.0.1:1', incarnation: 'x' }, 60000)
    await a.membership.join({ serverId: 'creds', url: 'http://user:pw@127.0.0.1:1', incarnation: 'x' }, 60000)
    await a.membership.join({ serverId: 'not a url', url: 'not a url', incarnation: 'x' }, 60000)
    const b = await startMember(t, database, 'b')
    await until('a sees b', () => peerOf(a, b.url))
    t.strictSame(a.app.policyCache.peers().map((peer) => peer.url), [b.url])
    const warned = a.logs.filter((line) => /membership row is malformed/.test(line.msg)).map((line) => line.serverId).sort()
    t.strictSame(warned, ['bad-url', 'creds', 'not a url'], 'one warning per bad row')
    t.match(await a.app.policyCache.createGroup('t1', 'g'), { peers: { acked: 1, total: 1 } })
  })

  test('static peers are seeds: the set is seeds ∪ members, each with its source', async (t, database) => {
    const b = await startMember(t, database, 'b')
    const seedOnlyPort = await freePort()
    const seedOnly = `http://127.0.0.1:${seedOnlyPort}`
    const a = await startMember(t, database, 'a', { peers: [b.url, seedOnly] })
    const both = await until('a lists b from both', () => peerOf(a, b.url)?.source === 'both' && peerOf(a, b.url))
    t.equal(both.incarnation !== null, true)
    t.match(peerOf(a, seedOnly), { source: 'static', incarnation: null, heartbeatAgeMs: null })
    const servers = await a.app.inject({ url: '/servers' })
    t.equal(servers.statusCode, 200)
    t.match(servers.json().peers.map((peer: PeerStatus) => peer.source).sort(), ['both', 'static'])
  })

  test('a joiner that a writer has not seen yet still catches up (the pass after joining)', async (t, database) => {
    // The writer never polls again: it cannot send to the joiner.
    const writer = await startMember(t, database, 'writer', { membership: { ...FAST, pollMs: 3600000, heartbeatMs: 1800000, ttlMs: 3600000 } })
    await writer.app.policyCache.createGroup('t1', 'g')
    // Cached at startup, after joining; the pass after joining runs 2.2 × pollMs later.
    const joiner = await startMember(t, database, 'joiner', { preload: ['t1'], membership: { ...FAST, pollMs: 2000 } })
    t.strictSame(joiner.app.policyCache.cachedRevisions(), [['t1', 1]], 'cached at revision 1')
    const write = await writer.app.policyCache.createGroup('t1', 'h')
    t.match(write, { revision: 2, peers: { total: 0 } }, 'not sent to the joiner')
    await until('the joiner catches up without a notice', () => joiner.app.policyCache.cachedRevisions().find(([tenant]) => tenant === 't1')?.[1] === 2)
    t.pass('caught up by the pass after joining')
  })
}
