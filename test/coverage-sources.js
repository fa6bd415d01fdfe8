/**
 * Run by `npm test` between `tap` and `tap report`: makes the recorded coverage of lib/ measurable.
 *
 * tap records coverage through the inspector, and tsx embeds a module's TypeScript source in its
 * source map only when NODE_V8_COVERAGE is set; the source maps tap saves therefore carry
 * `sourcesContent: [null]`, which c8 takes as an empty source — every file then reports a false
 * 100 % (privatenumber/tsx#433, #558). Dropping the empty `sourcesContent` makes c8 read each source
 * from disk, so that `tap report` measures lib/ and checks it against package.json's thresholds.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = join(import.meta.dirname, '..', '.tap', 'coverage')
for (const name of readdirSync(dir)) {
  const file = join(dir, name)
  const coverage = JSON.parse(readFileSync(file, 'utf8'))
  for (const { data } of Object.values(coverage['source-map-cache'] ?? {})) {
    if (data?.sourcesContent?.every((content) => content === null)) delete data.sourcesContent
  }
  writeFileSync(file, JSON.stringify(coverage))
}
