/**
 * The report: a plain-text table on stdout, and docs/benchmarks.md with machine info, how to
 * reproduce, every section's medians and ratios, the targets, and an SVG plot of the propagation
 * latency distribution (hand-written, no dependency).
 */
import { cpus, loadavg, totalmem } from 'node:os'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { SectionResult } from './stats.js'

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

/** A CDF plot of latency samples (ms), log-scaled x axis, one line per series. */
export function cdfSvg (title: string, series: Record<string, number[]>): string {
  const W = 720
  const H = 400
  const m = { left: 60, right: 20, top: 40, bottom: 50 }
  const entries = Object.entries(series).filter(([, v]) => v.length > 0)
  const all = entries.flatMap(([, v]) => v).filter((v) => v > 0)
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all))))
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all))))
  const x = (v: number): number => Math.round(10 * (m.left + (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * (W - m.left - m.right))) / 10
  const y = (f: number): number => Math.round(10 * (H - m.bottom - f * (H - m.top - m.bottom))) / 10
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${title}</text>`
  ]
  for (let d = lo; d <= hi; d *= 10) {
    parts.push(`<line x1="${x(d)}" y1="${y(0)}" x2="${x(d)}" y2="${y(1)}" stroke="#ddd"/>`)
    parts.push(`<text x="${x(d)}" y="${y(0) + 16}" text-anchor="middle">${d >= 1 ? d : d.toPrecision(1)} ms</text>`)
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
    // Legend bottom right, where a CDF rarely runs.
    const ly = H - m.bottom - 16 - (entries.length - 1 - i) * 18
    parts.push(`<rect x="${W - m.right - 260}" y="${ly - 6}" width="14" height="4" fill="${color}"/>`)
    parts.push(`<text x="${W - m.right - 240}" y="${ly}">${name} (n=${values.length})</text>`)
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
    'npm run bench                      # everything, a few minutes (≤ 10) on 2 cores; rewrites this file and the plot',
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
    for (const note of section.notes) md.push(note, '')
  }
  const file = join(ctx.dir, 'benchmarks.md')
  await writeFile(file, md.join('\n'))
  files.push(file)
  return files
}
