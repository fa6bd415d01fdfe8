/**
 * Section 7 — membership (docs/membership.md), with the default periods (heartbeat 5 s, ttl 15 s,
 * poll 1 s) on one SQLite file, instances in this process sharing one connection:
 * - join: from registering a new instance to the first write acknowledged by it;
 * - graceful close: from `close()` to out of every other instance's send set;
 * - crash: from a member's last heartbeat (a SIGKILL right after it, the worst case) to out of the set;
 * - cost: database statements per second that 100 members' heartbeats and polls take.
 */
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import { Kysely, SqliteDialect } from 'kysely'
import Database from 'better-sqlite3'
import policyCache, { DEFAULTS, KyselyPolicyStore } from '../lib/plugin.js'
import { Membership } from '../lib/membership/membership.js'
import { fmt, median, now, sleep, type RunOptions, type SectionResult } from './stats.js'
import { freePorts } from '../examples/demo.js'

const SECRET = 'whsec_' + Buffer.from('bench-secret-that-is-long-enough!').toString('base64')
const quiet = { info () {}, warn () {}, error () {} }

async function until (fn: () => boolean): Promise<void> {
  while (!fn()) await sleep(5)
}

export async function runMembership ({ quick, log }: RunOptions): Promise<SectionResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-membership-'))
  let statements = 0
  const sqlite = new Database(join(dir, 'm.db'))
  sqlite.pragma('journal_mode = WAL')
  const db = new Kysely<any>({ dialect: new SqliteDialect({ database: sqlite }), log: () => { statements++ } })
  const apps: FastifyInstance[] = []
  const start = async (serverId: string): Promise<{ app: FastifyInstance, url: string }> => {
    const [port] = await freePorts(1)
    const url = `http://127.0.0.1:${port}`
    const app = Fastify()
    await app.register(policyCache, { db, serverId, publicUrl: url, webhookSecret: SECRET, syncIntervalMs: 0, ackTimeoutMs: 60000, membership: true, routes: false })
    await app.listen({ port, host: '127.0.0.1' })
    apps.push(app)
    return { app, url }
  }
  const sendsTo = (app: FastifyInstance, url: string) => app.policyCache.peers().some((peer) => peer.url === url)
  try {
    const rounds = quick ? 2 : 5
    const a = await start('a')
    const b = await start('b')
    await until(() => sendsTo(a.app, b.url) && sendsTo(b.app, a.url))

    log(`membership: ${rounds} joins and graceful closes`)
    const joins: number[] = []
    const leaves: number[] = []
    for (let r = 0; r < rounds; r++) {
      const t0 = now()
      const joining = start(`c${r}`)
      // Writes on a until one is acknowledged by the new instance.
      let joined: { app: FastifyInstance, url: string } | undefined
      joining.then((c) => { joined = c }, () => {})
      for (let k = 0; ; k++) {
        const { peers } = await a.app.policyCache.createGroup('t', `g${r}-${k}`)
        if (joined !== undefined && peers.total === 2 && peers.acked === 2) break
        await sleep(10)
      }
      joins.push(now() - t0)
      const c = joined!
      const t1 = now()
      await c.app.close()
      apps.splice(apps.indexOf(c.app), 1)
      await until(() => !sendsTo(a.app, c.url) && !sendsTo(b.app, c.url))
      leaves.push(now() - t1)
    }

    log('membership: a crashed member (no heartbeat after its last) until it is out of the set')
    const crashes: number[] = []
    const store = new KyselyPolicyStore({ db })
    for (let r = 0; r < (quick ? 1 : 2); r++) {
      const [port] = await freePorts(1)
      const ghost = { serverId: `ghost${r}`, url: `http://127.0.0.1:${port}`, incarnation: randomUUID() }
      const t0 = now()
      await store.membership.join(ghost, DEFAULTS.membership.ttlMs)
      await until(() => sendsTo(a.app, ghost.url))
      await until(() => !sendsTo(a.app, ghost.url) && !sendsTo(b.app, ghost.url))
      crashes.push(now() - t0)
    }
    for (const app of apps.splice(0)) await app.close()

    log('membership: statements per second of 100 members')
    const members = Array.from({ length: 100 }, (_, i) => new Membership({
      store: store.membership,
      self: { serverId: `m${i}`, url: `http://10.0.${Math.floor(i / 250)}.${i % 250 + 1}:3000`, incarnation: randomUUID() },
      ...DEFAULTS.membership,
      onChange () {},
      onJoined () {},
      log: quiet
    }))
    for (const member of members) await member.join()
    for (const member of members) member.start()
    await sleep(2000)
    const windowMs = quick ? 10000 : 30000
    const before = statements
    const t0 = now()
    await sleep(windowMs)
    const perSecond = (statements - before) / ((now() - t0) / 1000)
    for (const member of members) await member.close()

    return {
      id: 'membership',
      title: '7. Membership (default periods: heartbeat 5 s, ttl 15 s, poll 1 s; SQLite)',
      tables: [{
        rows: [
          ['what', 'median', 'max', 'samples'],
          ['join: registration → first write acknowledged by the joiner', `${fmt(median(joins))} ms`, `${fmt(Math.max(...joins))} ms`, String(joins.length)],
          ['graceful close → out of every send set', `${fmt(median(leaves))} ms`, `${fmt(Math.max(...leaves))} ms`, String(leaves.length)],
          ['crash (last heartbeat) → out of every send set', `${fmt(median(crashes))} ms`, `${fmt(Math.max(...crashes))} ms`, String(crashes.length)],
          ['database statements per second, 100 members', fmt(perSecond), '', `${windowMs / 1000} s window`]
        ]
      }],
      targets: [],
      notes: [
        'Statements counted by Kysely\'s log hook (transaction begin/commit included). Instances share one process and one SQLite connection; a crash is a row whose heartbeats stop (a SIGKILL right after a heartbeat, the worst case).'
      ]
    }
  } finally {
    for (const app of apps) await app.close().catch(() => {})
    await db.destroy()
    rmSync(dir, { recursive: true, force: true })
  }
}
