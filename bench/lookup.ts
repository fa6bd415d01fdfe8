/**
 * Section 9 — listing and reverse lookup on a 1 k and a 100 k-member tenant (the shapes of section 1):
 * what a page of `who` costs through the reverse grant index and the merge of the holding groups'
 * sorted members, against the scan a naive lookup would do (every member checked, then sorted), and
 * what the listings cost. Measured on TenantState, the structure the decorator and routes read, in CPU
 * time per call (so other load on the machine does not count against it).
 */
import { TenantState } from '../lib/cache/tenant-state.js'
import { SHAPES, snapshotOf, type TenantShape } from './fixtures.js'
import { fmt, median, ratio, type RunOptions, type SectionResult } from './stats.js'

/** CPU microseconds per call of `op`, the median of `rounds` rounds of `reps` calls. */
export function cpuMicros (op: () => unknown, reps: number, rounds: number): number {
  const samples: number[] = []
  for (let r = 0; r < rounds; r++) {
    const c0 = process.cpuUsage()
    for (let i = 0; i < reps; i++) op()
    const c = process.cpuUsage(c0)
    samples.push((c.user + c.system) / reps)
  }
  return median(samples)
}

interface Row { name: string, reps: number, op: (state: TenantState, shape: TenantShape) => () => unknown }

/** Every page of `who`, `limit` at a time; returns the number of holders. */
function walkWho (state: TenantState, permission: string, limit: number): number {
  let after: string | undefined
  let count = 0
  do {
    const page = state.holderPage(permission, after, limit)
    count += page.items.length
    after = page.last
  } while (after !== undefined)
  return count
}

/** The naive reverse lookup: every member checked, the holders sorted. */
function naive (state: TenantState, shape: TenantShape, permission: string): string[] {
  const out: string[] = []
  for (let u = 0; u < shape.members; u++) if (state.check(`u${u}`, permission)) out.push(`u${u}`)
  return out.sort()
}

// `res5:op0` is held by one group (an exact grant); `shared3:items:view` by the ~7 groups holding `shared3:*`.
const EXACT = 'res5:op0'
const WILDCARD = 'shared3:items:view'

const ROWS: Row[] = [
  { name: '`who` first page of 100, exact grant (1 holding group)', reps: 2000, op: (s) => () => s.holderPage(EXACT, undefined, 100) },
  { name: '`who` first page of 100, through a wildcard (7 holding groups)', reps: 2000, op: (s) => () => s.holderPage(WILDCARD, undefined, 100) },
  { name: '`who` page of 100 from a cursor mid-way, through a wildcard', reps: 2000, op: (s, shape) => () => s.holderPage(WILDCARD, `u${Math.floor(shape.members / 2)}`, 100) },
  {
    name: '`who` first page of 100 right after a holding group changed (its members re-sorted)',
    reps: 20,
    op: (s) => {
      let i = 0
      return () => {
        s.apply({ op: 'assign-user', group: 'g3', user: `new${i++}` })
        return s.holderPage(WILDCARD, undefined, 100)
      }
    }
  },
  { name: '`who` every page (limit 1000), through a wildcard', reps: 5, op: (s) => () => walkWho(s, WILDCARD, 1000) },
  { name: 'naive reverse lookup: check every member, sort the holders (any page)', reps: 5, op: (s, shape) => () => naive(s, shape, WILDCARD) },
  { name: '`groups` first page of 100 (50 groups)', reps: 5000, op: (s) => () => s.groupPage(undefined, 100) },
  { name: '`groupUsers` page of 100 from a cursor', reps: 5000, op: (s) => () => s.userPage('g3', 'u5', 100) }
]

export async function runLookup ({ quick, log }: RunOptions): Promise<SectionResult> {
  const rounds = quick ? 1 : 7
  const shapes: Array<[string, TenantShape]> = [['1 k', SHAPES.members1k], ['100 k', SHAPES.members100k]]
  const states = shapes.map(([, shape]) => new TenantState(snapshotOf(shape)))
  // The lookup answers what the check answers: checked before timing.
  for (let i = 0; i < shapes.length; i++) {
    const expected = naive(states[i], shapes[i][1], WILDCARD)
    const pages: string[] = []
    let after: string | undefined
    do {
      const page = states[i].holderPage(WILDCARD, after, 1000)
      pages.push(...page.items.map((h) => h.user))
      after = page.last
    } while (after !== undefined)
    if (JSON.stringify(pages) !== JSON.stringify(expected)) throw new Error('who and the naive lookup disagree')
  }
  const holders = shapes.map((_s, i) => walkWho(states[i], WILDCARD, 1000))
  const rows = [['operation', '1 k members (µs/call)', '100 k members (µs/call)', 'cost ratio 100k/1k']]
  for (const row of ROWS) {
    log(`lookup: ${row.name}`)
    const reps = quick ? Math.max(1, Math.ceil(row.reps / 10)) : row.reps
    const micros = shapes.map(([, shape], i) => cpuMicros(row.op(states[i], shape), reps, rounds))
    rows.push([row.name, fmt(micros[0]), fmt(micros[1]), ratio(micros[1], micros[0])])
  }
  return {
    id: 'lookup',
    title: '9. Listing and reverse lookup (1 k and 100 k members)',
    tables: [{ caption: 'CPU time per call, medians of rounds', rows }],
    targets: [],
    notes: [
      `The tenants of section 1 (50 groups, each user in two, each group 4 grants of which one is a wildcard \`shared<g mod 7>:*\`). \`${WILDCARD}\` is held by ${holders[0]} of the 1 k members and ${holders[1]} of the 100 k; \`who\` and the naive lookup answer the same users (checked before timing). Medians of ${rounds} rounds; measured on TenantState, which the decorator and the routes read after validating their input.`,
      'A page of `who` reads the reverse grant index for the grants that can hold the permission (the permission, each wildcard on a prefix of it, `*`), binary-searches the cursor in each holding group\'s sorted members and merges them: its cost grows with the holding groups and the page, not with the tenant. A group\'s sorted members are rebuilt by the first read after it changed — the "right after a change" row — and reused until its next change.'
    ]
  }
}
