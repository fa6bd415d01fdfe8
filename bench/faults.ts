/**
 * Section 4 — fault cost: a write's latency on an instance whose peers are all healthy, next to one
 * with a peer down (closed port) and one with a peer hanging (accepts TCP, never answers). Separate
 * processes on one shared SQLite file; the three writers take turns, so load drifts hit them alike.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSqliteDb } from '../lib/plugin.js'
import { freePort, hangingServer, SECRET, spawnAll, type Instance } from './cluster.js'
import { seedTenant, SHAPES, snapshotOf } from './fixtures.js'
import { fmt, median, percentile, ratio, type RunOptions, type SectionResult } from './stats.js'

interface WriteOut { start: number, end: number, acked: number, total: number }

export async function runFaults ({ quick, log }: RunOptions): Promise<SectionResult> {
  const count = quick ? 15 : 150
  const warmup = quick ? 5 : 20
  const dir = mkdtempSync(join(tmpdir(), 'policy-cache-bench-'))
  const hanging = await hangingServer()
  const kinds = ['healthy', 'down', 'hanging'] as const
  const firsts: Record<string, WriteOut> = {}
  const lat: Record<string, number[]> = { healthy: [], down: [], hanging: [] }
  const acks: Record<string, string> = {}
  let instances: Instance[] = []
  try {
    const file = join(dir, 'faults.db')
    const db = createSqliteDb(file)
    for (const kind of kinds) await seedTenant(db, 'policy_', kind, snapshotOf(SHAPES.small))
    await db.destroy()
    const [p1, p2, pa, pb, pc, closed] = await Promise.all(Array.from({ length: 6 }, freePort))
    const healthy = [`http://127.0.0.1:${p1}`, `http://127.0.0.1:${p2}`]
    log('faults: starting 2 healthy peers and 3 writers (healthy / one peer down / one peer hanging)')
    instances = await spawnAll([
      { mode: 'ours', port: p1, serverId: 'peer-1', sqliteFile: file, secret: SECRET },
      { mode: 'ours', port: p2, serverId: 'peer-2', sqliteFile: file, secret: SECRET },
      { mode: 'ours', port: pa, serverId: 'writer-healthy', sqliteFile: file, secret: SECRET, peers: healthy },
      { mode: 'ours', port: pb, serverId: 'writer-down', sqliteFile: file, secret: SECRET, peers: [...healthy, `http://127.0.0.1:${closed}`] },
      { mode: 'ours', port: pc, serverId: 'writer-hanging', sqliteFile: file, secret: SECRET, peers: [...healthy, hanging.url] }
    ])
    const writers = { healthy: instances[2], down: instances[3], hanging: instances[4] }
    for (const peer of instances.slice(0, 2)) for (const kind of kinds) await peer.call('load', { tenant: kind })
    for (const kind of kinds) await writers[kind].call('load', { tenant: kind })
    let seq = 1
    const write = (kind: typeof kinds[number]): Promise<WriteOut> => writers[kind].call<WriteOut>('write', { tenant: kind, seq: seq++ })
    for (const kind of kinds) firsts[kind] = await write(kind)
    log(`faults: ${warmup} warm-up and ${count} measured writes per writer, taking turns`)
    for (let k = 0; k < warmup; k++) for (const kind of kinds) await write(kind)
    for (let k = 0; k < count; k++) {
      for (const kind of kinds) {
        const out = await write(kind)
        lat[kind].push(out.end - out.start)
        acks[kind] = `${out.acked}/${out.total}`
      }
    }
  } finally {
    await Promise.all(instances.map((i) => i.close()))
    await hanging.close()
    rmSync(dir, { recursive: true, force: true })
  }
  const m = (kind: string): number => median(lat[kind])
  const rows = [['writer\'s peers', 'first write ms', 'median ms', 'p90 ms', 'ratio to healthy (median)', 'last write\'s peers acked/total']]
  for (const kind of kinds) {
    const first = firsts[kind].end - firsts[kind].start
    rows.push([
      kind === 'healthy' ? '2 healthy' : kind === 'down' ? '2 healthy + 1 down (closed port)' : '2 healthy + 1 hanging (accepts, never answers)',
      fmt(first), fmt(m(kind)), fmt(percentile(lat[kind], 90)), ratio(m(kind), m('healthy')), acks[kind]
    ])
  }
  const worst = Math.max(m('down'), m('hanging')) / m('healthy')
  return {
    id: 'faults',
    title: '4. Fault cost',
    tables: [{ caption: `write latency (addPermission through the decorator: transaction, local apply, notify, bounded wait for acknowledgements); ${count} writes per writer after ${warmup} warm-up writes`, rows }],
    targets: [
      { name: 'write latency with a peer down or hanging ÷ healthy (median)', target: '≤ 1.2×', measured: `${ratio(m('down'), m('healthy'))} down, ${ratio(m('hanging'), m('healthy'))} hanging`, met: worst <= 1.2 },
      { name: 'first write to a hanging peer is bounded by ackTimeoutMs (200 ms)', target: '≈ 200 ms once', measured: `${fmt(firsts.hanging.end - firsts.hanging.start)} ms`, met: firsts.hanging.end - firsts.hanging.start < 400 }
    ],
    notes: [
      'Five processes share one SQLite file: two healthy peers, and three writers whose peer lists differ only in the third peer. With the default `ackTimeoutMs` of 200, the first write to a hanging peer waits for it until the deadline and marks it down; later writes do not wait for it (it is retried in the background and comes back when it acknowledges). A closed port fails at once and is marked down on the first attempt. The "first write" column is each writer process\'s very first write: cold (JIT, first connections, the peers\' first webhook), so even the healthy writer\'s can approach the 200 ms deadline; compare the medians.'
    ]
  }
}
