/**
 * better-sqlite3 and prom-client are optional peer dependencies: importing the plugin loads neither,
 * and a feature that needs a missing one fails with a coded error naming the package to install.
 * (The consumer test, test/package/consumer.test.ts, runs both without them really installed.)
 */
import { createRequire } from 'node:module'
import { test } from 'tap'
import { requireOptional } from '../lib/optional-dependency.js'

const loaded = (name: string): boolean =>
  Object.keys(createRequire(import.meta.url).cache).some((file) => file.includes(`/node_modules/${name}/`))

test('importing the plugin loads neither better-sqlite3 nor prom-client; the default store and metrics load them', async (t) => {
  // This file imports nothing else that could load them first.
  const { default: policyCache } = await import('../lib/plugin.js')
  const { default: Fastify } = await import('fastify')
  t.notOk(loaded('better-sqlite3'), 'better-sqlite3 not loaded by the import')
  t.notOk(loaded('prom-client'), 'prom-client not loaded by the import')
  t.notOk(loaded('pg'), 'pg not loaded by the import (only the pg-notify transport needs it)')
  t.notOk(loaded('@nats-io/transport-node'), '@nats-io/transport-node not loaded by the import (only the nats transport needs it)')
  t.notOk(loaded('ioredis'), 'ioredis not loaded by the import (only the redis transport needs it)')

  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(policyCache, { syncIntervalMs: 0, metrics: true })
  t.ok(loaded('better-sqlite3'), 'loaded for the default store')
  t.ok(loaded('prom-client'), 'loaded for metrics')
})

test('a missing optional dependency is FST_POLICY_CACHE_MISSING_DEPENDENCY naming the package to install', async (t) => {
  const name = 'fastify-policy-cache-no-such-package'
  const err = t.throws(() => requireOptional(name, 'a test')) as Error & { code: string, cause: Error & { code: string } }
  t.equal(err.code, 'FST_POLICY_CACHE_MISSING_DEPENDENCY')
  t.match(err.message, `The package "${name}" is needed for a test but is not installed: npm install ${name}`)
  t.equal(err.cause.code, 'MODULE_NOT_FOUND')
  t.equal(requireOptional('prom-client', 'a test'), createRequire(import.meta.url)('prom-client'), 'an installed one is returned')
})
