/**
 * `npm run mutation` runs, for a mutant, only the test files stryker.config.mjs lists for its module:
 * a module of the scope without an entry would have every mutant survive (or, with `--mutate`, no test
 * run at all), and a listed file missing from the run order would never run.
 */
import { existsSync, readdirSync } from 'node:fs'
import { test } from 'tap'
// @ts-expect-error -- the config is plain JavaScript without declarations
import config, { ORDER, TESTS } from '../stryker.config.mjs'

/** The files of the `mutate` scope: paths as they are, `dir/**\/*.ts` globs read from disk. */
function scope (): string[] {
  return (config.mutate as string[]).flatMap((pattern) => {
    if (!pattern.includes('*')) return [pattern]
    const dir = pattern.slice(0, pattern.indexOf('*'))
    return readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts'))
      .map((file) => dir + file)
  })
}

test('every module of the mutation scope lists its test files, and each is in the run order', async (t) => {
  const tests = TESTS as Record<string, string[]>
  const order = ORDER as string[]
  const modules = scope()
  t.ok(modules.length > 20, 'the scope is read')
  for (const module of modules) {
    t.ok(Object.hasOwn(tests, module), `${module} has an entry`)
  }
  for (const [module, files] of Object.entries(tests)) {
    t.ok(existsSync(module), `${module} exists`)
    for (const file of files) {
      t.ok(existsSync(file), `${file} (for ${module}) exists`)
      t.ok(order.includes(file), `${file} (for ${module}) is in the run order`)
    }
  }
  t.equal(new Set(order).size, order.length, 'no file twice in the run order')
})
