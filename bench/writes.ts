/**
 * Section 6 — write throughput through the decorator (transaction + revision bump + changelog row
 * + local apply; no peers), on SQLite (a WAL file) and PostgreSQL: one writer at a time, and 16
 * writes in flight on 16 tenants.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import type { Kysely } from 'kysely'
import policyCache, { createSqliteDb } from '../lib/plugin.js'
import { dropPrefixed, postgresDb, POSTGRES_URL, randomPrefix } from '../test/helpers/databases.js'
import { fmt, median, now, ratio, type RunOptions, type SectionResult } from './stats.js'

const CONCURRENCY = 16

async function throughput (db: Kysely<any>, prefix: string, count: number, reps: number): Promise<{ sequential: number, concurrent: number }> {
  const app = Fastify()
  await app.register(policyCache, { db, tablePrefix: prefix, routes: false, syncIntervalMs: 0 })
  await app.ready()
  const engine = app.policyCache
  let n = 0
  for (let t = 0; t < CONCURRENCY; t++) await engine.createGroup(`t${t}`, 'g')
  const sequential: number[] = []
  const concurrent: number[] = []
  try {
    for (let r = 0; r < reps; r++) {
      let t0 = now()
      for (let k = 0; k < count; k++) await engine.addPermission('t0', 'g', `p:${n++}`)
      sequential.push(count / ((now() - t0) / 1000))
      t0 = now()
      await Promise.all(Array.from({ length: CONCURRENCY }, async (_, t) => {
        for (let k = 0; k < count / CONCURRENCY; k++) await engine.addPermission(`t${t}`, 'g', `p:${n++}`)
      }))
      concurrent.push(count / ((now() - t0) / 1000))
    }
  } finally {
    await app.close()
  }
  return { sequential: median(sequential), concurrent: median(concurrent) }
}

export async function runWrites ({ quick, log }: RunOptions): Promise<SectionResult> {
  const count = quick ? 160 : 800
  const reps = quick ? 1 : 3
  const rows = [['database', 'sequential writes/s', `${CONCURRENCY} in flight (16 tenants) writes/s`, 'concurrent ÷ sequential']]
  const notes: string[] = []

  log('writes: SQLite (WAL file)')
  const dir = mkdtempSync(join(tmpdir(), 'policy-cache-bench-'))
  const sqlite = createSqliteDb(join(dir, 'writes.db'))
  try {
    const r = await throughput(sqlite, 'bench_', count, reps)
    rows.push(['SQLite (better-sqlite3, WAL, synchronous=NORMAL)', fmt(r.sequential), fmt(r.concurrent), ratio(r.concurrent, r.sequential)])
  } finally {
    await sqlite.destroy()
    rmSync(dir, { recursive: true, force: true })
  }

  log('writes: PostgreSQL')
  const pg = await postgresDb()
  if (pg === undefined) {
    rows.push(['PostgreSQL', 'not reachable', '', ''])
    notes.push(`PostgreSQL was not reachable at ${new URL(POSTGRES_URL).host}; its row is empty.`)
  } else {
    const prefix = randomPrefix()
    try {
      const r = await throughput(pg, prefix, count, reps)
      rows.push(['PostgreSQL (pg pool of 10, local server)', fmt(r.sequential), fmt(r.concurrent), ratio(r.concurrent, r.sequential)])
    } finally {
      await dropPrefixed(pg, prefix)
      await pg.destroy()
    }
  }
  notes.push(`Each figure is the median of ${reps} rounds of ${count} effective writes (\`addPermission\` of a new grant). SQLite serialises writers (one \`BEGIN IMMEDIATE\` at a time); PostgreSQL locks only the tenant's row, so writes to different tenants overlap.`)
  return { id: 'writes', title: '6. Write throughput', tables: [{ rows }], targets: [], notes }
}
