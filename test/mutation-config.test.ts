/**
 * `npm run mutation` runs, for a mutant, only the test files stryker/scope.mjs lists for its module:
 * a module of the scope without an entry would have every mutant survive (or, with `--mutate`, no test
 * run at all), and a listed file missing from the run order would never run. The files run as the
 * JavaScript that `buildCommand` compiles in the sandbox: one left out of its tsconfig would not exist.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, posix } from 'node:path'
import { test } from 'tap'
// @ts-expect-error -- the config is plain JavaScript without declarations
import config, { ORDER, TESTS } from '../stryker.config.mjs'
// @ts-expect-error -- plain JavaScript without declarations
import { listedCoverage, placedMutants, testsFor } from '../stryker/scope.mjs'
// @ts-expect-error -- plain JavaScript without declarations
import { ModuleTestsRunner } from '../stryker/module-tests-runner.mjs'

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

test('every file of the run order is compiled for the run, and runs as its .js', async (t) => {
  const order = ORDER as string[]
  const tsconfig = JSON.parse(readFileSync('stryker/tsconfig.tests.json', 'utf8')) as { include: string[], exclude: string[] }
  // The tsconfig's paths are relative to its folder; these are relative to the root, as the order's are.
  const fromRoot = (path: string) => posix.normalize(posix.join('stryker', path)) + '/'
  const include = tsconfig.include.map(fromRoot)
  const exclude = tsconfig.exclude.map(fromRoot)
  t.ok(exclude.length > 0, 'the tsconfig is read')
  for (const file of order) {
    t.ok(include.some((dir) => file.startsWith(dir)) && !exclude.some((dir) => file.startsWith(dir)),
      `${file} is compiled by stryker/tsconfig.tests.json`)
  }
  t.same(config.tap.testFiles, order.map((file) => file.replace(/\.ts$/, '.js')), 'tap runs the compiled files, in the order')
  t.notOk((config.tap.nodeArgs as string[]).some((arg) => arg.includes('tsx')), 'without the TypeScript loader')
})

test('a mutant runs the files its module lists, in the list\'s order, among those that reach it', async (t) => {
  const tests = TESTS as Record<string, string[]>
  const js = (file: string) => file.replace(/\.ts$/, '.js')
  const listed = tests['lib/model.ts'].map(js)
  t.ok(listed.length > 2, 'the module lists several files')
  const absolute = '/work/sandbox-1/lib/model.ts'
  // Coverage in the run order, and a file of another module: the module's order, the other dropped.
  const covering = [listed[2], 'test/store/mysql.test.js', listed[0]]
  t.same(testsFor(absolute, covering), [listed[0], listed[2]], 'listed and covering, in the list\'s order')
  t.same(testsFor('lib/model.ts', covering), [listed[0], listed[2]], 'a relative path too')
  t.same(testsFor('C:\\sandbox\\lib\\model.ts', covering), [listed[0], listed[2]], 'a Windows path too')
  t.same(testsFor(absolute, undefined), listed, 'a static mutant: every listed file')
  t.same(testsFor(absolute, ['test/store/mysql.test.js']), [], 'reached by unlisted files only: none')
  t.same(testsFor('/work/sandbox-1/lib/models.ts', covering), covering, 'a file outside the scope: as it was')
  t.same(testsFor('/work/sandbox-1/lib/other/model.ts', covering), covering, 'the name must end at a folder')
  t.equal(config.testRunner, 'tap-module-tests', 'the run uses it')
  t.ok((config.plugins as string[]).includes('./stryker/module-tests-runner.mjs'), 'and loads it')
})

test('the initial run\'s coverage keeps, for each mutant, only the files its module lists', async (t) => {
  const tests = TESTS as Record<string, string[]>
  const js = (file: string) => file.replace(/\.ts$/, '.js')
  const model = tests['lib/model.ts'].map(js)
  const guard = tests['lib/guard.ts'].map(js)
  const other = 'test/store/mysql.test.js'
  t.notOk(model.includes(other) || guard.includes(other), 'a file neither lists')
  const instrumented = 'if (stryMutAct_9fa48("12") ? false : (stryCov_9fa48("12", "13"), x)) stryMutAct_9fa48("13") ? {} : stryMutAct_9fa48("140")'
  t.same([...placedMutants(instrumented)], ['12', '13', '140'], 'the placed mutants of an instrumented text')
  const moduleOf = new Map([['1', 'lib/model.ts'], ['2', 'lib/guard.ts']])
  const perTest = {
    [model[0]]: { 1: 3, 2: 1, 9: 1 },
    [guard[0]]: { 1: 1, 2: 5 },
    [other]: { 1: 1, 2: 1, 9: 2 }
  }
  const expected = {
    [model[0]]: { 1: 3, 9: 1, ...(guard.includes(model[0]) ? { 2: 1 } : {}) },
    [guard[0]]: { 2: 5, ...(model.includes(guard[0]) ? { 1: 1 } : {}) },
    [other]: { 9: 2 }
  }
  t.same(listedCoverage(perTest, moduleOf), expected, 'each file keeps its own modules\' mutants, and those of no module')
  t.same(perTest[other], { 1: 1, 2: 1, 9: 2 }, 'the coverage given is left as it was')
})

test('the runner times each file of the initial run whole, and hands a mutant its module\'s files', async (t) => {
  const tests = TESTS as Record<string, string[]>
  const listed = tests['lib/model.ts'].map((file) => file.replace(/\.ts$/, '.js'))
  const calls: unknown[] = []
  const failing = new Set<string>()
  // The tap runner as the wrapper sees it: a file's own time is tap's, without its process start-up.
  const tap = {
    testFiles: [listed[1], listed[0], 'test/store/mysql.test.js'],
    async dryRun (options: { testFiles: string[] }) {
      calls.push(options.testFiles)
      await new Promise((resolve) => setTimeout(resolve, 40))
      const [file] = options.testFiles
      return {
        status: 'complete',
        tests: [{ id: file, name: file, timeSpentMs: 1, status: failing.has(file) ? 1 : 0 }],
        mutantCoverage: { static: {}, perTest: { [file]: { 7: 1 } } }
      }
    },
    async mutantRun (options: { testFilter: string[] }) {
      calls.push(options)
      const [file] = options.testFilter
      if (hanging.has(file)) return await new Promise((resolve) => { stopHanging = () => resolve({ status: 'error', errorMessage: 'stopped' }) })
      return failing.has(file) ? { status: 'killed', killedBy: [file], failureMessage: 'failed', nrOfTests: 1 } : { status: 'survived', nrOfTests: 1 }
    }
  }
  const hanging = new Set<string>()
  let stopHanging = () => {}
  let stops = 0
  const timesFile = join(t.testdir(), 'times.json')
  const runner = new ModuleTestsRunner(tap, { timeoutFactor: 1, timeoutMS: 60, timesFile, stop: async () => { stops++; stopHanging() } })
  const result = await runner.dryRun({ coverageAnalysis: 'perTest' })
  t.same(calls, [[listed[1]], [listed[0]], ['test/store/mysql.test.js']], 'one file at a time, in the run\'s order')
  t.equal(result.status, 'complete')
  t.same(result.tests.map((test: { id: string }) => test.id), tap.testFiles)
  t.ok(result.tests.every((test: { timeSpentMs: number }) => test.timeSpentMs >= 35), 'each file timed whole, not as tap counts it')
  t.same(Object.keys(result.mutantCoverage.perTest), tap.testFiles, 'the coverage of every file')
  const times = JSON.parse(readFileSync(timesFile, 'utf8'))
  t.same(Object.keys(times), tap.testFiles, 'each file\'s time is kept for the test runner processes')
  t.ok(Object.values(times).every((took) => (took as number) >= 35))

  calls.length = 0
  failing.add(listed[0])
  const failed = await runner.dryRun({ coverageAnalysis: 'perTest' })
  t.same(calls, [[listed[1]], [listed[0]]], 'a failing file ends the run')
  t.equal(failed.tests.length, 2)
  calls.length = 0
  await runner.dryRun({ coverageAnalysis: 'perTest', disableBail: true })
  t.equal(calls.length, 3, 'unless bail is off')
  calls.length = 0
  await runner.dryRun({ coverageAnalysis: 'perTest', testFiles: [listed[0]] })
  t.same(calls, [[listed[0]]], 'the files Stryker names, when it names them')

  calls.length = 0
  failing.clear()
  const activeMutant = { id: '7', fileName: '/sandbox/lib/model.ts' }
  const covering = ['test/store/mysql.test.js', listed[1], listed[0]]
  t.same(await runner.mutantRun({ activeMutant, testFilter: covering }), { status: 'survived', nrOfTests: 2 })
  t.same(calls, [{ activeMutant, testFilter: [listed[0]] }, { activeMutant, testFilter: [listed[1]] }], 'a mutant: its module\'s files, one at a time, in its list\'s order')

  calls.length = 0
  failing.add(listed[0])
  t.match(await runner.mutantRun({ activeMutant, testFilter: covering }), { status: 'killed', killedBy: [listed[0]] })
  t.equal(calls.length, 1, 'the first file that fails ends the run')

  calls.length = 0
  failing.clear()
  hanging.add(listed[0])
  const limit = Math.round(1 * JSON.parse(readFileSync(timesFile, 'utf8'))[listed[0]] + 60)
  t.same(await runner.mutantRun({ activeMutant, testFilter: covering }), { status: 'timeout', reason: `${listed[0]} ran past ${limit} ms` },
    'timed out after the file\'s own time × timeoutFactor + timeoutMS')
  t.equal(stops, 1, 'the file running past its time is stopped')
  t.equal(calls.length, 1, 'and the files after it are not run')
})
