import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'tap'
import { cdfSvg, lineSvg, writeReport } from '../../bench/report.js'
import { median, percentile, ratio, type SectionResult } from '../../bench/stats.js'
import { tempDir } from '../helpers/app.js'

test('median and nearest-rank percentiles', async (t) => {
  t.equal(median([3, 1, 2]), 2)
  t.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90), 9)
  t.equal(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99), 10)
  t.ok(Number.isNaN(median([])))
  t.equal(ratio(3, 2), '1.5×')
  t.equal(ratio(1, 0), '—')
})

const section: SectionResult = {
  id: 'propagation',
  title: '3. Propagation',
  tables: [{ caption: 'latency', rows: [['system', 'p50 ms'], ['plugin', '1.2'], ['a | b', '2']] }],
  targets: [
    { name: 'p50', target: '≤ 1.5 ms', measured: '1.2 ms', met: true },
    { name: 'p99', target: '≤ 5 ms', measured: '7 ms', met: false }
  ],
  notes: ['Method: explained.'],
  samples: { plugin: [0.5, 1, 2, 4], floor: [0.2, 0.3] }
}

test('writeReport writes the markdown report and the propagation plot', async (t) => {
  const dir = tempDir(t)
  const files = await writeReport([section], { quick: true, seconds: 12, args: ['--quick'], dir, conditions: 'Load was high.' })
  t.same(files.map((f) => f.slice(dir.length + 1)).sort(), ['benchmarks-propagation.svg', 'benchmarks.md'])
  const md = readFileSync(join(dir, 'benchmarks.md'), 'utf8')
  for (const heading of ['# Benchmarks', '## Machine', '## How to reproduce', '## Targets', '## 3. Propagation']) t.match(md, heading)
  t.match(md, /\| CPU \| .+ × \d+ \|/, 'machine info names the CPU and its cores')
  t.match(md, `| Node.js | ${process.version} |`)
  t.match(md, '| p50 | ≤ 1.5 ms | 1.2 ms | met |')
  t.match(md, '| p99 | ≤ 5 ms | 7 ms | **missed** |')
  t.match(md, '| a \\| b | 2 |', 'pipes in cells are escaped')
  t.match(md, '![propagation latency CDF](benchmarks-propagation.svg)')
  t.match(md, 'Load was high.')
  t.match(md, '--quick')
  const svg = readFileSync(join(dir, 'benchmarks-propagation.svg'), 'utf8')
  t.match(svg, /^<svg /)
  t.equal(svg.match(/<polyline /g)?.length, 2, 'one line per series')
  t.match(svg, 'plugin (n=4)')
  t.match(svg, 'floor (n=2)')
})

test('cdfSvg spans whole decades around the samples and ends each line at 100 %', async (t) => {
  const svg = cdfSvg('t', { a: [0.3, 30] })
  t.match(svg, '>0.1 ms<')
  t.match(svg, '>100 ms<')
  const points = /points="([^"]+)"/.exec(svg)![1].trim().split(' ')
  t.equal(points.length, 3, 'a start at 0 and one point per sample')
  t.equal(Number(points.at(-1)!.split(',')[1]), 40, 'the last point is at the top (fraction 1)')
})

const fleet: SectionResult = {
  id: 'fleet',
  title: '10. Large fleets',
  tables: [{ rows: [['system', 'instances'], ['nats', '100']] }],
  targets: [{ name: 'nats: writer CPU per write, 100 ÷ 3 instances', target: '≤ 1.2×', measured: '1.1×', met: true }],
  notes: [],
  curves: [
    { file: 'benchmarks-fleet-propagation.svg', title: 'Visible on all', xLabel: 'instances', yLabel: 'p99 (ms)', series: { webhook: [[3, 4], [100, 250]], nats: [[3, 2], [100, 30]], none: [] } },
    { file: 'benchmarks-fleet-cpu.svg', title: 'Writer CPU', xLabel: 'instances', yLabel: 'ms', series: { redis: [[3, 0.5], [10, 0.6]] } }
  ]
}

test('writeReport writes each curve of a section to its SVG and shows it in the section', async (t) => {
  const dir = tempDir(t)
  const files = await writeReport([section, fleet], { quick: false, seconds: 1, args: [], dir })
  t.same(files.map((f) => f.slice(dir.length + 1)).sort(), ['benchmarks-fleet-cpu.svg', 'benchmarks-fleet-propagation.svg', 'benchmarks-propagation.svg', 'benchmarks.md'])
  const md = readFileSync(join(dir, 'benchmarks.md'), 'utf8')
  t.match(md, '| nats: writer CPU per write, 100 ÷ 3 instances | ≤ 1.2× | 1.1× | met |')
  const fleetPart = md.slice(md.indexOf('## 10. Large fleets'))
  t.match(fleetPart, '![Visible on all](benchmarks-fleet-propagation.svg)')
  t.match(fleetPart, '![Writer CPU](benchmarks-fleet-cpu.svg)')
  t.notMatch(fleetPart, 'benchmarks-propagation.svg', 'the CDF is shown only in the section that has samples')
  const svg = readFileSync(join(dir, 'benchmarks-fleet-propagation.svg'), 'utf8')
  t.equal(svg.match(/<polyline /g)?.length, 2, 'one line per series with points; an empty series is left out')
  t.equal(svg.match(/<circle /g)?.length, 4, 'a marker on each point')
  t.match(svg, '>webhook<')
  t.notMatch(svg, '>none<')
})

test('lineSvg: log–log axes over whole decades of y, x ticks at the points\' x values', async (t) => {
  const svg = lineSvg({ file: 'x.svg', title: 't', xLabel: 'instances', yLabel: 'ms', series: { a: [[3, 0.5], [10, 2], [100, 40]] } })
  for (const label of ['>0.1<', '>1<', '>10<', '>100<']) t.match(svg, label, `y decade ${label}`)
  for (const label of ['>3<', '>10<', '>100<']) t.match(svg, label, `x tick ${label}`)
  t.match(svg, 'instances (log scale)')
  const points = /points="([^"]+)"/.exec(svg)![1].split(' ').map((p) => p.split(',').map(Number))
  t.equal(points.length, 3)
  t.equal(points[0][0], 60, 'the smallest x at the left edge')
  t.equal(points[2][0], 700, 'the largest x at the right edge')
  t.ok(points[0][1] > points[1][1] && points[1][1] > points[2][1], 'larger values are drawn higher')
  const skipped = lineSvg({ file: 'x.svg', title: 't', xLabel: 'n', yLabel: 'ms', series: { a: [[3, 1], [10, NaN], [30, 10]] } })
  t.equal(/points="([^"]+)"/.exec(skipped)![1].split(' ').length, 2, 'a point without a value (not measured) is left out')
})
