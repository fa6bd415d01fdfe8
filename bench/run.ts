/**
 * `npm run bench [-- --quick] [section …]`: runs the benchmark sections side by side, prints a table
 * and writes docs/benchmarks.md (+ the propagation plot). Sections: check, http, propagation,
 * faults, catchup, writes, membership, batch, lookup, fleet, hierarchy. `--quick` is a fast smoke run (small counts; its figures are rough).
 * docs/ is rewritten only by a full run of every section; `--out DIR` writes the report there instead.
 */
import { loadavg } from 'node:os'
import { runBatch } from './batch.js'
import { runCatchUp } from './catchup.js'
import { runCheck } from './check.js'
import { runFaults } from './faults.js'
import { runFleet } from './fleet.js'
import { runHierarchy } from './hierarchy.js'
import { runHttp } from './http.js'
import { runLookup } from './lookup.js'
import { runMembership } from './membership.js'
import { runPropagation } from './propagation.js'
import { printReport, writeReport } from './report.js'
import { runWrites } from './writes.js'
import type { RunOptions, SectionResult } from './stats.js'

const SECTIONS: Record<string, (opts: RunOptions) => Promise<SectionResult>> = {
  check: runCheck,
  http: runHttp,
  propagation: runPropagation,
  faults: runFaults,
  catchup: runCatchUp,
  writes: runWrites,
  membership: runMembership,
  batch: runBatch,
  lookup: runLookup,
  fleet: runFleet,
  hierarchy: runHierarchy
}

/** The paragraph about the run's conditions: the machine's load, and any note passed in BENCH_CONDITIONS. */
function conditions (loadAtStart: string): string {
  return [
    `Load average (1/5/15 min) when the run started: ${loadAtStart}.`,
    process.env.BENCH_CONDITIONS ?? ''
  ].join(' ').trim()
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  const quick = args.includes('--quick')
  const outAt = args.indexOf('--out')
  const out = outAt === -1 ? undefined : args[outAt + 1]
  if (outAt !== -1 && (out === undefined || out.startsWith('--'))) throw new Error('--out needs a directory')
  const wanted = args.filter((a, i) => !a.startsWith('--') && (outAt === -1 || i !== outAt + 1))
  for (const name of wanted) if (!(name in SECTIONS)) throw new Error(`unknown section "${name}" (one of ${Object.keys(SECTIONS).join(', ')})`)
  const names = wanted.length > 0 ? wanted : Object.keys(SECTIONS)
  const started = Date.now()
  const loadAtStart = loadavg().map((l) => l.toFixed(2)).join(' / ')
  const opts: RunOptions = { quick, log: (line) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`) }
  const results: SectionResult[] = []
  for (const name of names) results.push(await SECTIONS[name](opts))
  const seconds = (Date.now() - started) / 1000
  printReport(results)
  const dir = out ?? (!quick && wanted.length === 0 ? 'docs' : undefined)
  if (dir !== undefined) {
    const files = await writeReport(results, { quick, seconds, args, dir, conditions: conditions(loadAtStart) })
    opts.log(`wrote ${files.join(', ')}`)
  }
}

main().catch((err) => {
  const cause = (err as Error)?.cause
  process.stderr.write(`bench: ${(err as Error)?.stack ?? String(err)}\n${cause === undefined ? '' : `cause: ${String(cause)}\n`}`)
  process.exit(1)
})
