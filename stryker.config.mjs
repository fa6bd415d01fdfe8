/**
 * Mutation testing (`npm run mutation`; not part of `npm test` or .ci/run): StrykerJS mutates the
 * modules where a surviving bug is a security hole or a wrong answer, and runs the unit-level test
 * files against each mutant. See docs/testing.md for how to run it on one module and for the figures.
 *
 * The tap runner runs each test file as one test, in its own `node --import tsx` process; coverage is
 * per test file, so a mutant runs only the files that reach its code (in the order Stryker picks,
 * stopping at the first that fails).
 * @type {import('@stryker-mutator/api/core').PartialStrykerOptions}
 */
export default {
  testRunner: 'tap',
  coverageAnalysis: 'perTest',
  // A glob for lib/broadcast/: every file of the layer (notice, signature, peer, delivery, broadcaster, receiver, …).
  mutate: [
    'lib/broadcast/**/*.ts',
    'lib/cache/**/*.ts',
    'lib/store/kysely-store.ts',
    'lib/guard.ts',
    'lib/options.ts',
    'lib/model.ts'
  ],
  tap: {
    // Only the unit tests of those modules, each module's own first and the fastest first: Stryker runs
    // the files that reach a mutant in this order and stops at the first that fails. (The route,
    // system and example tests register the whole plugin and take seconds to minutes each: they would
    // run for nearly every mutant that survives.) Named one by one: a glob's order is not defined.
    testFiles: [
      'test/broadcast/signature.test.ts',
      'test/model.test.ts',
      'test/broadcast/notice.test.ts',
      'test/broadcast/peer-list.test.ts',
      'test/broadcast/peer.test.ts',
      'test/broadcast/delivery.test.ts',
      'test/cache/anti-entropy.test.ts',
      'test/cache/tenant-state.test.ts',
      'test/cache/tenant-cache.test.ts',
      'test/options.test.ts',
      'test/broadcast/receiver.test.ts',
      'test/broadcast/observe.test.ts',
      'test/guard.test.ts',
      'test/peer-urls.test.ts',
      'test/broadcast/broadcaster.test.ts',
      'test/store/sqlite.test.ts',
      'test/store/postgres.test.ts',
      'test/store/mysql.test.ts'
    ],
    nodeArgs: ['--import', 'tsx'],
    forceBail: true
  },
  // A mutant that does not compile is not worth a test run.
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.build.json',
  concurrency: 2,
  timeoutMS: 10000,
  incremental: true,
  incrementalFile: 'reports/mutation/stryker-incremental.json',
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  ignorePatterns: ['.tap', 'data', 'dist', 'coverage', 'reports'],
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always'
}
