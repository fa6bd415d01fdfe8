/**
 * Mutation testing (`npm run mutation`; not part of `npm test` or .ci/run): StrykerJS mutates the
 * modules where a surviving bug is a security hole or a wrong answer, and runs the unit-level test
 * files against each mutant. See docs/testing.md for how to run it on one module and for the figures.
 *
 * The tap runner runs each test file as one test, in its own `node` process; coverage is per test
 * file, so a mutant runs only the files that reach its code (in the order of `tap.testFiles`, stopping
 * at the first that fails). A survivor therefore costs every file that reaches it.
 *
 * The test files run as JavaScript: once Stryker has written the mutants into the sandbox's copy of
 * `lib/`, `buildCommand` compiles `lib/` and `test/` there, each `.js` beside its `.ts`
 * (`stryker/tsconfig.tests.json`, types not checked: the checker does that per mutant). A process that
 * loads plain JavaScript starts in about half the CPU time of one that compiles TypeScript through
 * tsx's loader hooks, and starting is most of what a mutant costs.
 */
import { writeFileSync } from 'node:fs'

/**
 * The test files that can catch a mutant of each module: its own unit test first, then the unit tests
 * of the modules that call it. (The route, system and example tests register the whole plugin and take
 * seconds to minutes each: they would run for nearly every mutant that survives.)
 */
export const TESTS = {
  'lib/model.ts': ['test/model.test.ts', 'test/broadcast/notice.test.ts', 'test/guard-hooks.test.ts', 'test/broadcast/receiver.test.ts', 'test/options.test.ts', 'test/guard.test.ts'],
  'lib/broadcast/signature.ts': ['test/broadcast/signature.test.ts', 'test/broadcast/delivery.test.ts', 'test/options.test.ts', 'test/broadcast/receiver.test.ts', 'test/broadcast/broadcaster.test.ts'],
  'lib/broadcast/notice.ts': ['test/broadcast/notice.test.ts', 'test/broadcast/peer.test.ts', 'test/broadcast/receiver.test.ts', 'test/broadcast/broadcaster.test.ts'],
  'lib/broadcast/peer-list.ts': ['test/broadcast/peer-list.test.ts', 'test/options.test.ts', 'test/peer-urls.test.ts'],
  'lib/broadcast/peer.ts': ['test/broadcast/peer.test.ts', 'test/broadcast/observe.test.ts', 'test/broadcast/broadcaster.test.ts'],
  'lib/broadcast/delivery.ts': ['test/broadcast/delivery.test.ts', 'test/broadcast/observe.test.ts', 'test/peer-urls.test.ts', 'test/broadcast/broadcaster.test.ts'],
  'lib/broadcast/broadcaster.ts': ['test/broadcast/observe.test.ts', 'test/peer-urls.test.ts', 'test/broadcast/broadcaster.test.ts', 'test/broadcast/webhook-transport.test.ts'],
  'lib/broadcast/receiver.ts': ['test/broadcast/receiver.test.ts'],
  'lib/broadcast/subscription.ts': ['test/broadcast/subscription.test.ts'],
  'lib/broadcast/peer-set.ts': ['test/broadcast/peer-set.test.ts', 'test/membership/options.test.ts', 'test/membership/sqlite.test.ts'],
  'lib/broadcast/dns-peers.ts': ['test/broadcast/dns-peers.test.ts', 'test/broadcast/dns-peers-plugin.test.ts'],
  'lib/broadcast/envelope.ts': ['test/broadcast/envelope.test.ts', 'test/transport/pg-notify-forged.test.ts', 'test/transport/pg-notify-large-payload.test.ts'],
  'lib/broadcast/inbox.ts': ['test/broadcast/inbox.test.ts', 'test/transport/pg-notify-forged.test.ts'],
  'lib/broadcast/webhook-transport.ts': ['test/broadcast/webhook-transport.test.ts', 'test/transport/webhook-status.test.ts'],
  'lib/broadcast/pg-notify.ts': ['test/transport/pg-notify-client.test.ts', 'test/transport/pg-notify-connection.test.ts', 'test/transport/pg-notify-propagation.test.ts', 'test/transport/pg-notify-reconnect.test.ts', 'test/transport/pg-notify-forged.test.ts', 'test/transport/pg-notify-large-payload.test.ts', 'test/transport/pg-notify-crash.test.ts'],
  'lib/broadcast/nats.ts': ['test/transport/nats-client.test.ts', 'test/transport/nats-forged.test.ts', 'test/transport/nats-large-payload.test.ts', 'test/transport/nats-hung.test.ts', 'test/transport/nats-propagation.test.ts', 'test/transport/nats-reconnect.test.ts', 'test/transport/nats-membership.test.ts'],
  'lib/broadcast/redis.ts': ['test/transport/redis-client.test.ts', 'test/transport/redis-forged.test.ts', 'test/transport/redis-large-payload.test.ts', 'test/transport/redis-hung.test.ts', 'test/transport/redis-propagation.test.ts', 'test/transport/redis-reconnect.test.ts'],
  'lib/broadcast/brokers.ts': ['test/transport/pg-notify-forged.test.ts', 'test/transport/nats-forged.test.ts', 'test/transport/redis-forged.test.ts'],
  'lib/broadcast/transport.ts': [],
  'lib/broadcast/status.ts': [],
  'lib/cache/anti-entropy.ts': ['test/cache/anti-entropy.test.ts'],
  'lib/cache/tenant-state.ts': ['test/cache/tenant-state.test.ts', 'test/cache/tenant-state-hierarchy.test.ts', 'test/cache/tenant-state-lookup.test.ts', 'test/cache/tenant-cache.test.ts'],
  'lib/cache/watchers.ts': ['test/cache/watchers.test.ts', 'test/cache/watch.test.ts'],
  'lib/page.ts': ['test/page.test.ts'],
  'lib/cache/tenant-cache.ts': ['test/cache/tenant-cache.test.ts', 'test/cache/absent-tenants.test.ts'],
  'lib/store/kysely-store.ts': ['test/store/database-id.test.ts', 'test/options-resolve.test.ts', 'test/store/sqlite.test.ts', 'test/store/write-hooks.test.ts', 'test/store/postgres.test.ts', 'test/store/mysql.test.ts'],
  'lib/store/batch-plan.ts': ['test/store/sqlite.test.ts', 'test/store/postgres.test.ts', 'test/store/mysql.test.ts'],
  'lib/guard.ts': ['test/guard-hooks.test.ts', 'test/guard.test.ts'],
  'lib/options.ts': ['test/options-resolve.test.ts', 'test/options.test.ts', 'test/membership/options.test.ts', 'test/transport/options.test.ts', 'test/peer-urls.test.ts', 'test/guard.test.ts']
}

/** Every test file, fastest first (the order a mutant's covering files run in). */
export const ORDER = [
  'test/broadcast/signature.test.ts',
  'test/model.test.ts',
  'test/broadcast/peer-list.test.ts',
  'test/guard-hooks.test.ts',
  'test/options-resolve.test.ts',
  'test/cache/anti-entropy.test.ts',
  'test/broadcast/delivery.test.ts',
  'test/page.test.ts',
  'test/cache/watchers.test.ts',
  'test/cache/tenant-state-hierarchy.test.ts',
  'test/cache/tenant-state.test.ts',
  'test/cache/tenant-state-lookup.test.ts',
  'test/broadcast/subscription.test.ts',
  'test/broadcast/peer-set.test.ts',
  'test/broadcast/peer.test.ts',
  'test/broadcast/notice.test.ts',
  'test/broadcast/observe.test.ts',
  'test/cache/tenant-cache.test.ts',
  'test/cache/absent-tenants.test.ts',
  'test/cache/watch.test.ts',
  'test/broadcast/receiver.test.ts',
  'test/guard.test.ts',
  'test/options.test.ts',
  'test/membership/options.test.ts',
  'test/transport/options.test.ts',
  'test/peer-urls.test.ts',
  'test/broadcast/broadcaster.test.ts',
  'test/broadcast/envelope.test.ts',
  'test/broadcast/inbox.test.ts',
  'test/broadcast/webhook-transport.test.ts',
  'test/broadcast/dns-peers.test.ts',
  'test/broadcast/dns-peers-plugin.test.ts',
  'test/transport/webhook-status.test.ts',
  'test/transport/pg-notify-client.test.ts',
  'test/transport/nats-client.test.ts',
  'test/transport/redis-client.test.ts',
  'test/transport/pg-notify-connection.test.ts',
  'test/transport/pg-notify-propagation.test.ts',
  'test/transport/pg-notify-forged.test.ts',
  'test/transport/pg-notify-large-payload.test.ts',
  'test/transport/pg-notify-reconnect.test.ts',
  'test/transport/pg-notify-crash.test.ts',
  'test/transport/nats-forged.test.ts',
  'test/transport/nats-large-payload.test.ts',
  'test/transport/nats-hung.test.ts',
  'test/transport/nats-propagation.test.ts',
  'test/transport/nats-reconnect.test.ts',
  'test/transport/nats-membership.test.ts',
  'test/transport/redis-forged.test.ts',
  'test/transport/redis-large-payload.test.ts',
  'test/transport/redis-hung.test.ts',
  'test/transport/redis-propagation.test.ts',
  'test/transport/redis-reconnect.test.ts',
  'test/membership/sqlite.test.ts',
  'test/store/database-id.test.ts',
  'test/store/sqlite.test.ts',
  'test/store/write-hooks.test.ts',
  'test/store/postgres.test.ts',
  'test/store/mysql.test.ts'
]

/**
 * The scope: the modules where a surviving bug is a security hole or a wrong answer. A glob for
 * lib/broadcast/: every file of the layer (notice, signature, peer, delivery, broadcaster, receiver, …).
 */
export const MUTATE = [
  'lib/broadcast/**/*.ts',
  'lib/cache/**/*.ts',
  'lib/store/kysely-store.ts',
  'lib/store/batch-plan.ts',
  'lib/guard.ts',
  'lib/options.ts',
  'lib/model.ts',
  'lib/page.ts'
]

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
  testRunner: 'tap',
  coverageAnalysis: 'perTest',
  mutate: MUTATE,
  buildCommand: 'tsc -p stryker/tsconfig.tests.json',
  tap: {
    testFiles: selectedTests().map((file) => file.replace(/\.ts$/, '.js')),
    nodeArgs: [],
    forceBail: true
  },
  // A mutant that does not compile is not worth a test run.
  checkers: ['typescript'],
  // Log lines are not contracts (stryker/log-ignorer.mjs).
  plugins: ['@stryker-mutator/*', './stryker/log-ignorer.mjs'],
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
