/**
 * A Stryker test runner (`testRunner: 'tap-module-tests'` in stryker.config.mjs): Stryker's tap runner,
 * but a mutant runs only the test files `TESTS` lists for its module (stryker/scope.mjs), its own unit
 * test first. In a run of the whole scope, Stryker's own choice would be every test file whose process
 * executed the mutant — for a static mutant, every file of the run — so a mutant of `options.ts`, which
 * every plugin-level test calls, would run the transport and database tests too before it could
 * survive; and the run order, one for all modules, would put other modules' tests before its own.
 */
import { commonTokens, declareFactoryPlugin, PluginKind, tokens } from '@stryker-mutator/api/plugin'
import { DryRunStatus, TestStatus } from '@stryker-mutator/api/test-runner'
import { createTapTestRunnerFactory } from '@stryker-mutator/tap-runner'
import { readFileSync } from 'node:fs'
import { listedCoverage, placedMutants, TESTS, testsFor } from './scope.mjs'

const createTapTestRunner = createTapTestRunnerFactory()

export class ModuleTestsRunner {
  #tap

  constructor (tap) {
    this.#tap = tap
  }

  capabilities () { return this.#tap.capabilities() }
  init () { return this.#tap.init?.() }

  /**
   * The initial run, one test file at a time, each timed from the start of its process to its end,
   * and its coverage cut to each module's listed files. Stryker gives a mutant
   * `1.5 × (the time its covering files took) + timeoutMS + the run's overhead` before timing it out,
   * where the overhead is the initial run's time not counted in any test. The tap runner counts a
   * file's time from tap's first line, so a whole run's overhead was every file's start-up (43 s of
   * 128) and a hung mutant of `broadcaster.ts`, whose four files take 8 s, waited 50 s; and with
   * every file of the run that reached it counted, longer still. Timed whole, the overhead is
   * Stryker's own, and the covering files are those the mutant will run. The instrumented modules,
   * in the sandbox this runs in, say which mutant is whose.
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
    const moduleOf = new Map()
    for (const module of Object.keys(TESTS)) {
      for (const id of placedMutants(readFileSync(module, 'utf8'))) moduleOf.set(id, module)
    }
    return { status: DryRunStatus.Complete, tests, mutantCoverage: { static: {}, perTest: listedCoverage(perTest, moduleOf) } }
  }

  dispose () { return this.#tap.dispose?.() }

  mutantRun (options) {
    return this.#tap.mutantRun({ ...options, testFilter: testsFor(options.activeMutant.fileName, options.testFilter) })
  }
}

function createModuleTestsRunner (injector) {
  return new ModuleTestsRunner(injector.injectFunction(createTapTestRunner))
}
createModuleTestsRunner.inject = tokens(commonTokens.injector)

export const strykerPlugins = [declareFactoryPlugin(PluginKind.TestRunner, 'tap-module-tests', createModuleTestsRunner)]
