/**
 * The report: a plain-text table on stdout, and docs/benchmarks.md with machine info, how to
 * reproduce, every section's medians and ratios, the targets, and an SVG plot of the propagation
 * latency distribution (hand-written, no dependency).
 */
import { cpus, loadavg, totalmem } from 'node:os'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Curve, SectionResult } from './stats.js'

function pad (cells: string[], widths: number[]): string {
  return cells.map((cell, i) => cell.padEnd(widths[i])).join('  ')
}

function textTable (rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows.map((r, i) => pad(r, widths) + (i === 0 ? '\n' + widths.map((w) => '-'.repeat(w)).join('  ') : '')).join('\n')
}

function mdTable (rows: string[][]): string {
  const line = (r: string[]): string => `| ${r.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`
  return [line(rows[0]), line(rows[0].map(() => '---')), ...rows.slice(1).map(line)].join('\n')
}

export function printReport (results: readonly SectionResult[]): void {
  const out: string[] = []
  for (const section of results) {
    out.push(`\n== ${section.title} ==`)
    for (const table of section.tables) {
      if (table.caption !== undefined) out.push(`(${table.caption})`)
      out.push(textTable(table.rows))
    }
    for (const t of section.targets) out.push(`${t.met ? 'MET   ' : 'MISSED'} ${t.name}: ${t.measured} (target ${t.target})`)
  }
  process.stdout.write(out.join('\n') + '\n')
}

export function machine (): Record<string, string> {
  const cpu = cpus()
  return {
    CPU: `${cpu[0]?.model ?? 'unknown'} × ${cpu.length}`,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    'Node.js': process.version,
    platform: `${process.platform} ${process.arch}`,
    'load average at the end (1/5/15 min)': loadavg().map((l) => l.toFixed(2)).join(' / ')
  }
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b']
const W = 720
const H = 400
const MARGIN = { left: 60, right: 20, top: 40, bottom: 50 }

/**
 * A log scale onto [from, to] (rounded to 0.1 px) over the whole decades around the positive
 * `values`, or (`exact`) from their smallest to their largest.
 */
function logAxis (values: readonly number[], from: number, to: number, exact = false): { lo: number, hi: number, at: (v: number) => number } {
  const positive = values.filter((v) => v > 0)
  const lo = exact ? Math.min(...positive) : Math.pow(10, Math.floor(Math.log10(Math.min(...positive))))
  const hi = exact ? Math.max(...positive) : Math.pow(10, Math.ceil(Math.log10(Math.max(...positive))))
  const span = Math.log10(hi) - Math.log10(lo) || 1
  return { lo, hi, at: (v) => Math.round(10 * (from + (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / span * (to - from))) / 10 }
}

const decadeLabel = (d: number): string => d >= 1 ? String(d) : d.toPrecision(1)

/** The start of an SVG: background and title. */
function svgHead (title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${title}</text>`
  ]
}

/** The legend entry of series `i` of `count`, bottom right, where a CDF rarely runs. */
function legend (i: number, count: number, color: string, label: string): string[] {
  const ly = H - MARGIN.bottom - 16 - (count - 1 - i) * 18
  return [
    `<rect x="${W - MARGIN.right - 260}" y="${ly - 6}" width="14" height="4" fill="${color}"/>`,
    `<text x="${W - MARGIN.right - 240}" y="${ly}">${label}</text>`
  ]
}

/** A CDF plot of latency samples (ms), log-scaled x axis, one line per series. */
export function cdfSvg (title: string, series: Record<string, number[]>): string {
  const m = MARGIN
  const entries = Object.entries(series).filter(([, v]) => v.length > 0)
  const { lo, hi, at: x } = logAxis(entries.flatMap(([, v]) => v), m.left, W - m.right)
  const y = (f: number): number => Math.round(10 * (H - m.bottom - f * (H - m.top - m.bottom))) / 10
  const parts = svgHead(title)
  for (let d = lo; d <= hi; d *= 10) {
    parts.push(`<line x1="${x(d)}" y1="${y(0)}" x2="${x(d)}" y2="${y(1)}" stroke="#ddd"/>`)
    parts.push(`<text x="${x(d)}" y="${y(0) + 16}" text-anchor="middle">${decadeLabel(d)} ms</text>`)
  }
  for (const f of [0, 0.25, 0.5, 0.75, 0.99, 1]) {
    parts.push(`<line x1="${m.left}" y1="${y(f)}" x2="${W - m.right}" y2="${y(f)}" stroke="${f === 0.5 || f === 0.99 ? '#bbb' : '#eee'}"/>`)
    parts.push(`<text x="${m.left - 6}" y="${y(f) + 4}" text-anchor="end">${f === 0.99 ? 'p99' : f === 0.5 ? 'p50' : f}</text>`)
  }
  parts.push(`<text x="${W / 2}" y="${H - 12}" text-anchor="middle">latency, write start on A → change visible in B's check (log scale)</text>`)
  entries.forEach(([name, values], i) => {
    const sorted = [...values].sort((a, b) => a - b)
    const points = sorted.map((v, k) => `${x(v).toFixed(1)},${y((k + 1) / sorted.length).toFixed(1)}`)
    const color = COLORS[i % COLORS.length]
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${x(sorted[0]).toFixed(1)},${y(0)} ${points.join(' ')}"/>`)
    parts.push(...legend(i, entries.length, color, `${name} (n=${values.length})`))
  })
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

/** Lines through (x, y) points on log–log axes, a marker on each point, one line per series; the x ticks are the points' x values. */
export function lineSvg (curve: Curve): string {
  const m = MARGIN
  const entries = Object.entries(curve.series).filter(([, points]) => points.some(([, v]) => Number.isFinite(v) && v > 0))
  const xs = [...new Set(entries.flatMap(([, points]) => points.map(([v]) => v)))].sort((a, b) => a - b)
  const x = logAxis(xs, m.left, W - m.right, true).at
  const { lo, hi, at: y } = logAxis(entries.flatMap(([, points]) => points.map(([, v]) => v)).filter(Number.isFinite), H - m.bottom, m.top)
  const parts = svgHead(curve.title)
  for (let d = lo; d <= hi; d *= 10) {
    parts.push(`<line x1="${m.left}" y1="${y(d)}" x2="${W - m.right}" y2="${y(d)}" stroke="#ddd"/>`)
    parts.push(`<text x="${m.left - 6}" y="${y(d) + 4}" text-anchor="end">${decadeLabel(d)}</text>`)
  }
  for (const v of xs) {
    parts.push(`<line x1="${x(v)}" y1="${y(lo)}" x2="${x(v)}" y2="${y(hi)}" stroke="#eee"/>`)
    parts.push(`<text x="${x(v)}" y="${y(lo) + 16}" text-anchor="middle">${v}</text>`)
  }
  parts.push(`<text x="${W / 2}" y="${H - 12}" text-anchor="middle">${curve.xLabel} (log scale)</text>`)
  parts.push(`<text transform="translate(14 ${H / 2}) rotate(-90)" text-anchor="middle">${curve.yLabel} (log scale)</text>`)
  entries.forEach(([name, points], i) => {
    const color = COLORS[i % COLORS.length]
    const drawn = points.filter(([, v]) => Number.isFinite(v) && v > 0)
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${drawn.map(([a, b]) => `${x(a)},${y(b)}`).join(' ')}"/>`)
    for (const [a, b] of drawn) parts.push(`<circle cx="${x(a)}" cy="${y(b)}" r="3" fill="${color}"/>`)
    parts.push(...legend(i, entries.length, color, name))
  })
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

export interface ReportContext {
  quick: boolean
  seconds: number
  args: string[]
  /** Directory to write into (docs/ by default). */
  dir: string
  /** Text about the conditions of the run, e.g. other load on the machine. */
  conditions?: string
}

const PLOT = 'benchmarks-propagation.svg'

export async function writeReport (results: readonly SectionResult[], ctx: ReportContext): Promise<string[]> {
  await mkdir(ctx.dir, { recursive: true })
  const files: string[] = []
  const plotSeries = results.find((r) => r.samples !== undefined)?.samples
  if (plotSeries !== undefined) {
    const file = join(ctx.dir, PLOT)
    await writeFile(file, cdfSvg('Propagation latency CDF — 3 instances on loopback, small tenant', plotSeries))
    files.push(file)
  }
  for (const curve of results.flatMap((r) => r.curves ?? [])) {
    const file = join(ctx.dir, curve.file)
    await writeFile(file, lineSvg(curve))
    files.push(file)
  }
  const md: string[] = [
    '# Benchmarks',
    '',
    '<!-- Generated by `npm run bench` (bench/run.ts). Do not edit by hand: rerun it. -->',
    '',
    `Generated ${new Date().toISOString()} by \`npm run bench${ctx.args.length > 0 ? ' -- ' + ctx.args.join(' ') : ''}\` in ${Math.round(ctx.seconds)} s${ctx.quick ? ' (**--quick**: small counts, rough figures)' : ''}.`,
    '',
    '## Machine',
    '',
    mdTable([['', ''], ...Object.entries(machine())]),
    ''
  ]
  if (ctx.conditions !== undefined) md.push(ctx.conditions, '')
  md.push(
    '## How to reproduce',
    '',
    '```sh',
    'npm install',
    '# Redis on 127.0.0.1:6379 (BentoCache and casbin\'s watcher), PostgreSQL on 127.0.0.1:5432 db `test` (write section)',
    '# fleet section: initdb + pg_ctl, nats-server and redis-server on PATH (it runs servers of its own); as root, `ip` for its network namespaces',
    'npm run bench                      # everything, ~10 min on 2 cores plus ~30–40 min for the fleet section; rewrites this file and the plots',
    'npm run bench -- --quick           # smoke run, < 1 min',
    'npm run bench -- check propagation # some sections only (printed, not written unless --out DIR)',
    '```',
    '',
    'Every comparison in a section is measured in the same run, alternating or back to back, and',
    'reported as medians (or percentiles) and ratios: the machine is shared and noisy, so absolute',
    'figures vary from run to run while the ratios hold. No test asserts a speed.',
    '',
    '## Targets',
    '',
    mdTable([['target', 'goal', 'measured', ''], ...results.flatMap((r) => r.targets.map((t) => [t.name, t.target, t.measured, t.met ? 'met' : '**missed**']))]),
    '',
    'Where a target is missed, the section\'s notes say what limits it.',
    ''
  )
  for (const section of results) {
    md.push(`## ${section.title}`, '')
    for (const table of section.tables) {
      if (table.caption !== undefined) md.push(`*${table.caption}*`, '')
      md.push(mdTable(table.rows), '')
    }
    if (section.samples !== undefined) md.push(`![propagation latency CDF](${PLOT})`, '')
    for (const curve of section.curves ?? []) md.push(`![${curve.title}](${curve.file})`, '')
    for (const note of section.notes) md.push(note, '')
  }
  const file = join(ctx.dir, 'benchmarks.md')
  await writeFile(file, md.join('\n'))
  files.push(file)
  return files
}
