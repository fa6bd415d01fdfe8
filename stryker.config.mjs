/**
 * Mutation testing (`npm run mutation`; not part of `npm test` or .ci/run): StrykerJS mutates the
 * modules where a surviving bug is a security hole or a wrong answer, and runs the unit-level test
 * files against each mutant. See docs/testing.md for how to run it on one module and for the figures.
 *
 * The tap runner runs each test file as one test, in its own `node` process; coverage is per test
 * file. A mutant runs the files its module's `TESTS` list names (stryker/scope.mjs) that reach its code,
 * in that list's order, stopping at the first that fails (stryker/module-tests-runner.mjs); a static
 * mutant, whose code runs while its module loads, runs every file of its list. A survivor therefore
 * costs every listed file that reaches it.
 *
 * The test files run as JavaScript: once Stryker has written the mutants into the sandbox's copy of
 * `lib/`, `buildCommand` compiles `lib/` and `test/` there, each `.js` beside its `.ts`
 * (`stryker/tsconfig.tests.json`, types not checked: the checker does that per mutant). A process that
 * loads plain JavaScript starts in about half the CPU time of one that compiles TypeScript through
 * tsx's loader hooks, and starting is most of what a mutant costs.
 */
import { writeFileSync } from 'node:fs'
import { MUTATE, ORDER, TESTS } from './stryker/scope.mjs'

export { MUTATE, ORDER, TESTS }

/** The paths and globs of `--mutate` on the command line, line ranges dropped; undefined without it. */
function mutatePatterns () {
  const at = process.argv.findIndex((arg) => arg === '--mutate' || arg === '-m' || arg.startsWith('--mutate='))
  const value = at === -1 ? undefined : process.argv[at].startsWith('--mutate=') ? process.argv[at].slice(9) : process.argv[at + 1]
  return value?.split(',').map((pattern) => pattern.replace(/:[0-9:-]+$/, ''))
}

/**
 * The tsconfig the TypeScript checker compiles each mutant with: one holding only the modules to
 * mutate (those `--mutate` names, else the whole `MUTATE` scope) and what they import, written to
 * `tsconfig.mutation.json`. The checker re-checks the mutated file and every file of its program that
 * depends on it, and with the whole of `lib/` in the program that is most of `lib/` for a module such
 * as `options.ts` (about 2 s a mutant, more than the tests that follow); without the plugin, the
 * routes and the examples it is only the scope's modules that import it. A mutant that compiles in
 * the scope but breaks the types of a caller outside it is then run against the tests instead of
 * being discarded.
 */
function checkerTsconfig () {
  const patterns = mutatePatterns() ?? MUTATE
  writeFileSync('tsconfig.mutation.json', JSON.stringify({ extends: './tsconfig.build.json', include: patterns }, null, 2) + '\n')
  return 'tsconfig.mutation.json'
}

/**
 * `--mutate` on the command line (a path, a glob, a `path:lines` range; several comma-separated)
 * selects the modules it names, and only their test files run — the initial run included, which would
 * otherwise run all of them, the database-server ones too. Without it, every module and every file.
 */
function selectedTests () {
  const patterns = mutatePatterns()
  if (patterns === undefined) return ORDER
  // A glob selects the modules under the path before its first wildcard.
  const selects = (module) => patterns.some((pattern) =>
    pattern.includes('*') ? module.startsWith(pattern.slice(0, pattern.indexOf('*'))) : module === pattern)
  const wanted = new Set(Object.entries(TESTS).filter(([module]) => selects(module)).flatMap(([, files]) => files))
  return ORDER.filter((file) => wanted.has(file))
}

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  // Stryker's tap runner, each mutant limited to its module's TESTS (stryker/module-tests-runner.mjs).
  testRunner: 'tap-module-tests',
  coverageAnalysis: 'perTest',
  mutate: MUTATE,
  buildCommand: 'tsc -p stryker/tsconfig.tests.json',
  tap: {
    testFiles: selectedTests().map((file) => file.replace(/\.ts$/, '.js')),
    nodeArgs: [],
    forceBail: true
  },
  // A mutant that does not compile is not worth a test run: the TypeScript checker, one incremental
  // program kept between mutants (stryker/typescript-checker.mjs).
  checkers: ['typescript-program'],
  // Log lines are not contracts (stryker/log-ignorer.mjs).
  plugins: ['@stryker-mutator/*', './stryker/log-ignorer.mjs', './stryker/module-tests-runner.mjs', './stryker/typescript-checker.mjs'],
  ignorers: ['log-calls'],
  tsconfigFile: checkerTsconfig(),
  concurrency: 2,
  timeoutMS: 5000,
  incremental: true,
  incrementalFile: 'reports/mutation/stryker-incremental.json',
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  ignorePatterns: ['.tap', 'data', 'dist', 'coverage', 'reports'],
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always'
}
