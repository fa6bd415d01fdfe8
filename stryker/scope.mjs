/**
 * What `npm run mutation` mutates and which test files judge each module's mutants. Plain data and
 * one pure function, free of side effects: stryker.config.mjs reads it in Stryker's main process, and
 * the test runner (stryker/module-tests-runner.mjs) in each of its worker processes.
 */

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
  'lib/store/kysely-store.ts': ['test/store/sqlite-memory.test.ts', 'test/store/database-id.test.ts', 'test/options-resolve.test.ts', 'test/store/sqlite.test.ts', 'test/store/write-hooks.test.ts', 'test/store/postgres.test.ts', 'test/store/mysql.test.ts'],
  'lib/store/batch-plan.ts': ['test/store/sqlite-memory.test.ts', 'test/store/sqlite.test.ts', 'test/store/postgres.test.ts', 'test/store/mysql.test.ts'],
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
  'test/store/sqlite-memory.test.ts',
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

/**
 * The test files to run against a mutant of `fileName` (a path ending in one of the scope's modules),
 * in the order of its module's `TESTS` list: the listed files among `covering` — the files Stryker's
 * coverage says reach the mutant — or, for a static mutant (`covering` undefined: its code runs while
 * the module loads, so coverage cannot tell), every listed file. A mutant that only unlisted files
 * reach gets none: no test of its module reaches it, and it survives. A file outside the scope keeps
 * `covering` as it is.
 */
export function testsFor (fileName, covering) {
  const path = fileName.replaceAll('\\', '/')
  const module = Object.keys(TESTS).find((candidate) => path === candidate || path.endsWith('/' + candidate))
  if (module === undefined) return covering
  const listed = TESTS[module].map((file) => file.replace(/\.ts$/, '.js'))
  return covering === undefined ? listed : listed.filter((file) => covering.includes(file))
}

/** The ids of the mutants Stryker placed in an instrumented module's text. */
export function placedMutants (text) {
  return new Set(Array.from(text.matchAll(/stryMutAct_9fa48\("(\d+)"\)/g), (match) => match[1]))
}

/**
 * The initial run's coverage (`perTest`: test file → the ids of the mutants its process reached),
 * cut to what each module's `TESTS` list allows: a file keeps a mutant only when the mutant's module
 * lists the file. `moduleOf` maps a mutant id to its module; a mutant of no module keeps every file.
 * Stryker then plans each mutant with its listed files only — which to run, and how long they may take
 * before it is timed out — and a mutant no listed file reaches has no coverage.
 */
export function listedCoverage (perTest, moduleOf) {
  const listed = new Map(Object.entries(TESTS).map(([module, files]) => [module, new Set(files.map((file) => file.replace(/\.ts$/, '.js')))]))
  return Object.fromEntries(Object.entries(perTest).map(([file, hits]) => [file, Object.fromEntries(
    Object.entries(hits).filter(([id]) => {
      const module = moduleOf.get(id)
      return module === undefined || listed.get(module).has(file)
    }))]))
}
