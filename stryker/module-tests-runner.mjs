/**
 * A Stryker test runner (`testRunner: 'tap-module-tests'` in stryker.config.mjs): Stryker's tap runner,
 * but a mutant runs only the test files `TESTS` lists for its module (stryker/scope.mjs), its own unit
 * test first, one file at a time, each stopped once it runs past its own time. In a run of the whole
 * scope, Stryker's own choice would be every test file whose process executed the mutant — for a
 * static mutant, every file of the run — so a mutant of `options.ts`, which every plugin-level test
 * calls, would run the transport and database tests too before it could survive; and the run order,
 * one for all modules, would put other modules' tests before its own.
 */
import childProcess from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { commonTokens, declareFactoryPlugin, PluginKind, tokens } from '@stryker-mutator/api/plugin'
import { DryRunStatus, MutantRunStatus, TestStatus } from '@stryker-mutator/api/test-runner'
import { createTapTestRunnerFactory } from '@stryker-mutator/tap-runner'
import { listedCoverage, placedMutants, TESTS, testsFor } from './scope.mjs'

const createTapTestRunner = createTapTestRunnerFactory()

/** Where the initial run leaves each file's time for the test runner processes (in the sandbox, their working directory). */
export const FILE_TIMES = 'stryker-file-times.json'

const TIMED_OUT = Symbol('timed out')

/**
 * The test process the tap runner started last. It runs a mutant's files one at a time, each in a
 * `node` process it spawns, and keeps no handle to it: `watchSpawn` wraps this worker process's
 * `child_process.spawn` (which the tap runner calls through the module's default export) to remember
 * it, so that a file running past its time can be stopped.
 */
let running
let watching = false
function watchSpawn () {
  if (watching) return
  watching = true
  const spawn = childProcess.spawn
  childProcess.spawn = function (...args) {
    running = spawn.apply(this, args)
    return running
  }
}

/**
 * Stops the last test process: SIGTERM, which the tap runner's hook turns into an exit (so a test's
 * exit handlers run: test/helpers/brokers.ts stops the servers it started), then SIGKILL if it is
 * still there a second later (a synchronous loop never reads its signals). The hook writes its
 * coverage file on the way out; nobody reads it.
 */
async function stopRunning () {
  const child = running
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const kill = setTimeout(() => child.kill('SIGKILL'), 1000)
  await exited
  clearTimeout(kill)
  rmSync(`stryker-output-${child.pid}.json`, { force: true })
}

export class ModuleTestsRunner {
  #tap
  #timeoutFactor
  #timeoutMS
  #stop
  #timesFile
  #times

  /**
   * `options`: Stryker's `timeoutFactor` and `timeoutMS`, which bound each file as Stryker bounds a
   * whole mutant run; and, for a test of this class, `stop` (what stops the running test process) and
   * `timesFile` (where the files' times are kept).
   */
  constructor (tap, { timeoutFactor = 1.5, timeoutMS = 5000, stop = stopRunning, timesFile = FILE_TIMES } = {}) {
    this.#tap = tap
    this.#timeoutFactor = timeoutFactor
    this.#timeoutMS = timeoutMS
    this.#stop = stop
    this.#timesFile = timesFile
  }

  capabilities () { return this.#tap.capabilities() }

  init () {
    if (this.#stop === stopRunning) watchSpawn()
    return this.#tap.init?.()
  }

  /**
   * The initial run, one test file at a time, each timed from the start of its process to its end,
   * and its coverage cut to each module's listed files. Stryker gives a mutant
   * `1.5 × (the time its covering files took) + timeoutMS + the run's overhead` before timing it out,
   * where the overhead is the initial run's time not counted in any test. The tap runner counts a
   * file's time from tap's first line, so a whole run's overhead was every file's start-up (43 s of
   * 128) and a hung mutant of `broadcaster.ts`, whose four files take 8 s, waited 50 s; and with
   * every file of the run that reached it counted, longer still. Timed whole, the overhead is
   * Stryker's own, and the covering files are those the mutant will run. The instrumented modules,
   * in the sandbox this runs in, say which mutant is whose. Each file's time is left in `FILE_TIMES`
   * for `mutantRun`, in whichever process runs it.
   */
  async dryRun (options) {
    const files = options.testFiles?.length > 0 ? options.testFiles : this.#tap.testFiles
    const tests = []
    const perTest = {}
    for (const file of files) {
      const started = performance.now()
      const result = await this.#tap.dryRun({ ...options, testFiles: [file] })
      if (result.status !== DryRunStatus.Complete) return result
      const took = performance.now() - started
      tests.push(...result.tests.map((test) => ({ ...test, timeSpentMs: took })))
      Object.assign(perTest, result.mutantCoverage?.perTest)
      if (!options.disableBail && result.tests.some((test) => test.status !== TestStatus.Success)) break
    }
    writeFileSync(this.#timesFile, JSON.stringify(Object.fromEntries(tests.map((test) => [test.id, test.timeSpentMs]))))
    const moduleOf = new Map()
    for (const module of Object.keys(TESTS)) {
      for (const id of placedMutants(readFileSync(module, 'utf8'))) moduleOf.set(id, module)
    }
    return { status: DryRunStatus.Complete, tests, mutantCoverage: { static: {}, perTest: listedCoverage(perTest, moduleOf) } }
  }

  dispose () { return this.#tap.dispose?.() }

  /**
   * A mutant's files (`testsFor`), one at a time until one fails, each given `timeoutFactor × its time
   * in the initial run + timeoutMS` before it is stopped and the mutant timed out. Stryker bounds the
   * whole run by the sum of its files' times, so a mutant that hangs the first of a module's six
   * files (the store's: SQLite, PostgreSQL, MariaDB, 20 s in all) waited 35 s rather than 11.
   */
  async mutantRun (options) {
    const files = testsFor(options.activeMutant.fileName, options.testFilter) ?? this.#tap.testFiles
    if (options.disableBail) return this.#tap.mutantRun({ ...options, testFilter: files })
    this.#times ??= JSON.parse(readFileSync(this.#timesFile, 'utf8'))
    let nrOfTests = 0
    for (const file of files) {
      const result = await this.#runFile(options, file, this.#times[file])
      if (result.status !== MutantRunStatus.Survived) return result
      nrOfTests += result.nrOfTests
    }
    return { status: MutantRunStatus.Survived, nrOfTests }
  }

  async #runFile (options, file, took) {
    const run = this.#tap.mutantRun({ ...options, testFilter: [file] })
    if (took === undefined) return await run
    const limit = this.#timeoutFactor * took + this.#timeoutMS
    let timer
    const late = new Promise((resolve) => { timer = setTimeout(resolve, limit, TIMED_OUT) })
    const result = await Promise.race([run, late])
    clearTimeout(timer)
    if (result !== TIMED_OUT) return result
    await this.#stop()
    // The tap runner settles once its process is gone (unless a child of the test holds its output open).
    await Promise.race([run, new Promise((resolve) => setTimeout(resolve, 2000).unref())])
    return { status: MutantRunStatus.Timeout, reason: `${file} ran past ${Math.round(limit)} ms` }
  }
}

function createModuleTestsRunner (injector, options) {
  return new ModuleTestsRunner(injector.injectFunction(createTapTestRunner), options)
}
createModuleTestsRunner.inject = tokens(commonTokens.injector, commonTokens.options)

export const strykerPlugins = [declareFactoryPlugin(PluginKind.TestRunner, 'tap-module-tests', createModuleTestsRunner)]
