/** Small statistics and formatting helpers shared by every benchmark section. */

/** A wall-clock timestamp in milliseconds that is comparable across processes on one host. */
export function now (): number {
  return performance.timeOrigin + performance.now()
}

export function median (values: readonly number[]): number {
  return percentile(values, 50)
}

/** Nearest-rank percentile (p in 0..100) of the values; NaN when empty. */
export function percentile (values: readonly number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

/** A number for a table: 3 significant digits, thousands separated; `—` for NaN. */
export function fmt (value: number, digits = 3): string {
  if (!Number.isFinite(value)) return '—'
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US')
  return Number(value.toPrecision(digits)).toString()
}

export function ratio (a: number, b: number): string {
  return Number.isFinite(a / b) ? `${fmt(a / b)}×` : '—'
}

/** One target of the issue and whether this run met it. */
export interface Target {
  name: string
  target: string
  measured: string
  met: boolean
}

/** A plot of values against a variable (e.g. the number of instances), drawn by the report on log–log axes. */
export interface Curve {
  /** The SVG's file name, next to benchmarks.md. */
  file: string
  title: string
  xLabel: string
  yLabel: string
  /** Per series name, its (x, y) points. */
  series: Record<string, Array<[number, number]>>
}

/** What a section hands to the report: tables (first row is the header), targets, notes. */
export interface SectionResult {
  id: string
  title: string
  tables: Array<{ caption?: string, rows: string[][] }>
  targets: Target[]
  notes: string[]
  /** Raw latency samples (ms) by series name, for plots. */
  samples?: Record<string, number[]>
  /** Plots against a variable, each written to its own SVG and shown in the section. */
  curves?: Curve[]
}

export interface RunOptions {
  quick: boolean
  /** Progress lines go to stderr so stdout keeps the table. */
  log: (line: string) => void
}

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
