/**
 * Section 8 — onboarding a tenant: 1 000 user assignments as one batch (`policyCache.batch`: one
 * transaction, one revision, one notice) vs 1 000 single writes (`assignUser`, one after another),
 * side by side through the decorator, on SQLite (a WAL file) and PostgreSQL; and the same tenant
 * written by one import (`policyCache.importTenant`: the difference computed in the transaction and
 * written as one batch).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import type { Kysely } from 'kysely'
import policyCache, { createSqliteDb, type Change } from '../lib/plugin.js'
import { dropPrefixed, postgresDb, POSTGRES_URL, randomPrefix } from '../test/helpers/databases.js'
import { fmt, median, now, ratio, type RunOptions, type SectionResult, type Target } from './stats.js'

/** The target: the batch at least this many times faster. */
const TARGET_RATIO = 20

interface Timings {
  /** Milliseconds for `count` single writes, per round. */
  single: number[]
  /** Milliseconds for one batch of `count` changes, per round. */
  batch: number[]
  /** Milliseconds for one import of a document holding the group and its `count` members, per round. */
  imported: number[]
}

async function measure (db: Kysely<any>, prefix: string, count: number, reps: number): Promise<Timings> {
  const app = Fastify()
  await app.register(policyCache, { db, tablePrefix: prefix, routes: false, syncIntervalMs: 0 })
  await app.ready()
  const engine = app.policyCache
  const users = Array.from({ length: count }, (_, i) => `user${i}@example.com`)
  const timings: Timings = { single: [], batch: [], imported: [] }
  try {
    // One warm-up round of each, not measured.
    for (let r = -1; r < reps; r++) {
      // Alternating which goes first, so that neither always runs on a warmer cache or a busier disk.
      const runs = [
        async () => {
          const tenant = `single-${r + 1}`
          await engine.createGroup(tenant, 'staff')
          const t0 = now()
          for (const user of users) await engine.assignUser(tenant, 'staff', user)
          return now() - t0
        },
        async () => {
          const tenant = `batch-${r + 1}`
          await engine.createGroup(tenant, 'staff')
          const changes = users.map((user): Change => ({ op: 'assign-user', group: 'staff', user }))
          const t0 = now()
          const outcome = await engine.batch(tenant, changes)
          const ms = now() - t0
          if (outcome.revision !== 2 || !outcome.effects.every(Boolean)) throw new Error('the batch did not assign every user at one revision')
          return ms
        }
      ]
      const [first, second] = r % 2 === 0 ? runs : [runs[1], runs[0]]
      const a = await first()
      const b = await second()
      // The import last: it reads the tenant (empty) and the same memberships, then writes group and members.
      const tenant = `import-${r + 1}`
      const t0 = now()
      const outcome = await engine.importTenant(tenant, { groups: [{ name: 'staff', permissions: [], users }], format: 1 })
      const imported = now() - t0
      if (outcome.revision !== 1) throw new Error('the import did not write the tenant at one revision')
      if (r < 0) continue
      timings.single.push(r % 2 === 0 ? a : b)
      timings.batch.push(r % 2 === 0 ? b : a)
      timings.imported.push(imported)
    }
  } finally {
    await app.close()
  }
  if (process.env.BENCH_VERBOSE !== undefined) process.stderr.write(`batch samples (ms): ${JSON.stringify(timings)}\n`)
  return timings
}

export async function runBatch ({ quick, log }: RunOptions): Promise<SectionResult> {
  const count = 1000
  const reps = quick ? 1 : 7
  const rows = [['database', `${count} single writes (ms)`, `one batch of ${count} (ms)`, 'batch speed-up', `one import of the group and its ${count} members (ms)`]]
  const targets: Target[] = []
  const notes: string[] = []
  const report = (name: string, short: string, { single, batch, imported }: Timings): void => {
    const s = median(single)
    const b = median(batch)
    rows.push([name, fmt(s), fmt(b), ratio(s, b), fmt(median(imported))])
    targets.push({ name: `batch of 1 000 assignments vs 1 000 single writes, ${short}`, target: `≥ ${TARGET_RATIO}×`, measured: ratio(s, b), met: s / b >= TARGET_RATIO })
  }

  log('batch: SQLite (WAL file)')
  const dir = mkdtempSync(join(tmpdir(), 'policy-cache-bench-'))
  const sqlite = createSqliteDb(join(dir, 'batch.db'))
  try {
    report('SQLite (better-sqlite3, WAL, synchronous=NORMAL)', 'SQLite', await measure(sqlite, 'bench_', count, reps))
  } finally {
    await sqlite.destroy()
    rmSync(dir, { recursive: true, force: true })
  }

  log('batch: PostgreSQL')
  const pg = await postgresDb()
  if (pg === undefined) {
    rows.push(['PostgreSQL', 'not reachable', '', '', ''])
    notes.push(`PostgreSQL was not reachable at ${new URL(POSTGRES_URL).host}; its row is empty.`)
  } else {
    const prefix = randomPrefix()
    try {
      report('PostgreSQL (pg pool of 10, local server)', 'PostgreSQL', await measure(pg, prefix, count, reps))
    } finally {
      await dropPrefixed(pg, prefix)
      await pg.destroy()
    }
  }
  notes.push(`Medians of ${reps} rounds after one warm-up round, single writes and the batch alternating which goes first; each round writes a fresh tenant with one group. A single write is a transaction (lock the tenant's row, check the group, insert the membership, bump the revision, log the change), the local apply and a notice; the batch is one transaction that reads the group and the existing memberships with a few set queries, inserts the memberships 300 rows per statement and logs one changelog entry, then one local apply and one notice (no peers here). The import (after both, same round) writes the same group and members into a fresh tenant from a document: it reads what the tenant holds, computes the difference (1 001 changes) and writes it as one batch.`)
  return { id: 'batch', title: '8. Batch writes (onboarding 1 000 users)', tables: [{ rows }], targets, notes }
}
