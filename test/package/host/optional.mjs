// Run before better-sqlite3, prom-client, pg, @nats-io/transport-node and ioredis are installed: importing the package must work, and each
// feature that needs one fails registration with a coded error naming the package.
import Fastify from 'fastify'
import { Kysely, PostgresDialect } from 'kysely'
import policyCache from 'fastify-policy-cache'

async function registrationError (options) {
  const app = Fastify()
  try {
    await app.register(policyCache, options)
    return null
  } catch (err) {
    return { code: err.code, message: err.message }
  } finally {
    await app.close()
  }
}

console.log(JSON.stringify({
  sqlite: await registrationError({}),
  metrics: await registrationError({ metrics: true }),
  // A PostgreSQL Kysely whose pool is never used: the transport needs pg before anything connects.
  pgNotify: await registrationError({
    db: new Kysely({ dialect: new PostgresDialect({ pool: {} }) }),
    webhookSecret: 'a-secret-of-sixteen-bytes-or-more',
    transport: { type: 'pg-notify', connection: 'postgres://127.0.0.1:1/none' }
  }),
  // Built before the store and before anything connects.
  nats: await registrationError({
    webhookSecret: 'a-secret-of-sixteen-bytes-or-more',
    transport: { type: 'nats', servers: 'nats://127.0.0.1:1' }
  }),
  redis: await registrationError({
    webhookSecret: 'a-secret-of-sixteen-bytes-or-more',
    transport: { type: 'redis', connection: 'redis://127.0.0.1:1' }
  })
}))
