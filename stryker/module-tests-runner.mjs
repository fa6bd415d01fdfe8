/**
 * A Stryker test runner (`testRunner: 'tap-module-tests'` in stryker.config.mjs): Stryker's tap runner,
 * but a mutant runs only the test files `TESTS` lists for its module (stryker/scope.mjs), its own unit
 * test first. In a run of the whole scope, Stryker's own choice would be every test file whose process
 * executed the mutant — for a static mutant, every file of the run — so a mutant of `options.ts`, which
 * every plugin-level test calls, would run the transport and database tests too before it could
 * survive; and the run order, one for all modules, would put other modules' tests before its own.
 */
import { commonTokens, declareFactoryPlugin, PluginKind, tokens } from '@stryker-mutator/api/plugin'
import { createTapTestRunnerFactory } from '@stryker-mutator/tap-runner'
import { readFileSync } from 'node:fs'
import { listedCoverage, placedMutants, TESTS, testsFor } from './scope.mjs'

const createTapTestRunner = createTapTestRunnerFactory()

class ModuleTestsRunner {
  #tap

  constructor (tap) {
    this.#tap = tap
  }

  capabilities () { return this.#tap.capabilities() }
  init () { return this.#tap.init?.() }

  /**
   * The initial run, its coverage cut to each module's listed files: Stryker plans a mutant's tests
   * and its timeout from the coverage, and a file of another module, or of the whole plugin, would
   * otherwise count in both (a hung mutant of `broadcaster.ts` waited out 1.5× the time of every file
   * that reached it). The instrumented modules, in the sandbox this runs in, say which mutant is whose.
   */
  async dryRun (options) {
    const result = await this.#tap.dryRun(options)
    if (result.mutantCoverage === undefined) return result
    const moduleOf = new Map()
    for (const module of Object.keys(TESTS)) {
      for (const id of placedMutants(readFileSync(module, 'utf8'))) moduleOf.set(id, module)
    }
    return { ...result, mutantCoverage: { ...result.mutantCoverage, perTest: listedCoverage(result.mutantCoverage.perTest, moduleOf) } }
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
