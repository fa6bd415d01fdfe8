/**
 * The example server: one instance of the seed's deployment, a Fastify app hosting the plugin.
 *
 *   npm run server -- 3001
 *   WEBHOOK_SECRET=whsec_… SERVER_ID=server-1 npm run server -- 3001   (finds the others through POLICY_DB)
 *   WEBHOOK_SECRET=whsec_… OTHER_SERVERS=http://127.0.0.1:3002,http://127.0.0.1:3003 SERVER_ID=server-1 npm run server -- 3001
 *   TRANSPORT=pg-notify POLICY_DB=postgres://… WEBHOOK_SECRET=whsec_… SERVER_ID=server-1 npm run server -- 3001
 *   TRANSPORT=nats://127.0.0.1:4222 POLICY_DB=… WEBHOOK_SECRET=whsec_… npm run server -- 3001
 *   TRANSPORT=redis://127.0.0.1:6379 POLICY_DB=… WEBHOOK_SECRET=whsec_… npm run server -- 3001
 *
 * Environment: PORT, HOST, SERVER_ID, WEBHOOK_SECRET (comma-separated while rotating),
 * OTHER_SERVERS, PEERS_DNS (`[http(s)://]name:port[/prefix]` of a Kubernetes headless Service,
 * instead of OTHER_SERVERS), PEERS_DNS_SERVER (DNS servers to ask; default the system's),
 * POLICY_DB (SQLite file, postgres://… or mysql://…), POLICY_TABLE_PREFIX,
 * PUBLIC_URL, SYNC_INTERVAL_MS, ACK_TIMEOUT_MS, LOG_LEVEL, ADMIN_TOKEN (bearer token required on
 * the policy routes and the board; a browser gives it as the password of HTTP Basic), BOARD (the
 * policy board's path, default /policy-board; 0 turns it off), METRICS (0 turns /metrics off), MEMBERSHIP (0 turns it off; default on with a
 * WEBHOOK_SECRET), MEMBERSHIP_HEARTBEAT_MS, MEMBERSHIP_TTL_MS, MEMBERSHIP_POLL_MS, SHUTDOWN_DELAY_MS, TRANSPORT (`webhook`, the
 * default, `pg-notify` with a postgres:// POLICY_DB, `nats://host:port` or `redis://host:port`). A bad configuration exits 1 with one line on
 * stderr. OpenAPI: the docs at /docs, the document at /docs/json.
 *
 * The app owns its database connection (a Kysely it creates and destroys); the plugin only uses it.
 * SIGTERM or SIGINT closes it gracefully (exit 0), however it was started: `npm run server` execs
 * node itself, so the signal npm forwards reaches this process (README, "Start and stop"). First the
 * plugin drains (writes refused with a coded 503, `/health` 503 `closing`, the membership left,
 * writes in flight answered), then SHUTDOWN_DELAY_MS passes, then the server closes.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { realpathSync } from 'node:fs'
import { setTimeout as delay } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import Fastify, { type FastifyInstance, type FastifyServerOptions, type onRequestHookHandler } from 'fastify'
import { CompiledQuery, Kysely, MysqlDialect, PostgresDialect, type MysqlPool, type MysqlPoolConnection } from 'kysely'
import type { Pool as Mysql2Pool, PoolConnection as Mysql2PoolConnection } from 'mysql2'
import policyCache, { createSqliteDb, errors } from '../lib/plugin.js'
import { ConfigError, describeStartupError, parseConfig, pluginOptions, type DbConfig, type ServerConfig } from './config.js'

export { ConfigError, parseConfig, type ServerConfig } from './config.js'

/**
 * How long the example's pools wait for the database, in milliseconds: with the database slow, locked
 * or gone silent, a query fails (and its request answers 503) instead of hanging. See
 * docs/databases.md, "Timeouts".
 */
export const DB_TIMEOUTS = {
  /** Opening a connection (pg `connectionTimeoutMillis`, mysql2 `connectTimeout`). */
  connect: 5000,
  /**
   * A statement, enforced by the server, which cancels it and keeps the connection usable
   * (PostgreSQL `statement_timeout`; MySQL/MariaDB `innodb_lock_wait_timeout`, the wait a write can meet).
   */
  statement: 5000,
  /**
   * A query, enforced by the client: an answer that never comes (the database blackholed) fails the
   * query (pg `query_timeout`, mysql2's per-query `timeout`). Above `statement`, so that a merely slow
   * statement is cancelled by the server first.
   */
  query: 6000,
  /**
   * A transaction left idle on the server, its client gone silent, is ended there and its row locks
   * released, so other instances can write that tenant again (PostgreSQL `idle_in_transaction_session_timeout`).
   */
  idleInTransaction: 10000
} as const

/** Opens the configured database as a Kysely; the drivers for PostgreSQL and MySQL load on demand. */
export async function openDatabase (db: DbConfig): Promise<Kysely<any>> {
  try {
    switch (db.kind) {
      case 'sqlite':
        return createSqliteDb(db.file)
      case 'postgres': {
        const { default: pg } = await import('pg')
        const pool = new pg.Pool({
          connectionString: db.url,
          max: 10,
          connectionTimeoutMillis: DB_TIMEOUTS.connect,
          statement_timeout: DB_TIMEOUTS.statement,
          query_timeout: DB_TIMEOUTS.query,
          idle_in_transaction_session_timeout: DB_TIMEOUTS.idleInTransaction,
          keepAlive: true
        })
        // A client losing its connection, idle in the pool or checked out by kysely, must not crash
        // the process: pg emits 'error' on it, the query in flight fails and the pool discards it.
        pool.on('error', () => {})
        pool.on('connect', (client) => client.on('error', () => {}))
        // A transaction cut by query_timeout is never continued by the client's next user: its
        // ROLLBACK times out too, and Kysely destroys a client whose ROLLBACK failed.
        return new Kysely<any>({ dialect: new PostgresDialect({ pool }) })
      }
      case 'mysql': {
        const { createPool } = await import('mysql2')
        const pool = createPool({ uri: db.url, connectionLimit: 10, connectTimeout: DB_TIMEOUTS.connect, enableKeepAlive: true })
        return new Kysely<any>({
          dialect: new MysqlDialect({
            pool: withQueryTimeout(pool, DB_TIMEOUTS.query),
            onCreateConnection: async (connection) => {
              await connection.executeQuery(CompiledQuery.raw(`SET SESSION innodb_lock_wait_timeout = ${DB_TIMEOUTS.statement / 1000}`))
            }
          })
        })
      }
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new ConfigError('POLICY_DB', `cannot open the ${db.kind} database: ${(err as Error).message}`)
  }
}

/**
 * The mysql2 pool as Kysely sees it, with `timeoutMs` on every query: mysql2 has a per-query
 * `timeout` but no pool-wide one. A connection whose query timed out still owes that answer, and
 * mysql2 sends (and starts timing) its next query only after it: such a connection is destroyed
 * instead of going back to the pool, where that next query would wait forever.
 */
export function withQueryTimeout (pool: Mysql2Pool, timeoutMs: number): MysqlPool {
  // One wrapper per connection: Kysely knows a connection (and runs onCreateConnection) by identity.
  const wrappers = new WeakMap<Mysql2PoolConnection, MysqlPoolConnection>()
  const wrap = (connection: Mysql2PoolConnection): MysqlPoolConnection => ({
    query: (sql: string, parameters: unknown[], callback?: (error: unknown, result: any) => void): any =>
      connection.query({ sql, timeout: timeoutMs }, parameters, callback === undefined
        ? undefined
        : (error, result) => {
            if ((error as { code?: unknown } | null)?.code === 'PROTOCOL_SEQUENCE_TIMEOUT') connection.destroy()
            callback(error, result)
          }),
    release: () => connection.release()
  })
  return {
    getConnection (callback) {
      pool.getConnection((error, connection) => {
        if (error !== null) return callback(error, connection as never)
        let wrapper = wrappers.get(connection)
        if (wrapper === undefined) wrappers.set(connection, wrapper = wrap(connection))
        callback(null, wrapper)
      })
    },
    end: (callback) => pool.end(callback)
  }
}

/** The routes ADMIN_TOKEN leaves open (with /docs). */
const OPEN_ROUTES = new Set(['/health', '/metrics', '/webhook/refresh'])

/** The token an `Authorization` header carries: `Bearer <token>`, or the password of `Basic` (what a browser sends). */
function presentedToken (header: string | undefined): string {
  if (typeof header !== 'string') return ''
  if (header.startsWith('Bearer ')) return header.slice(7)
  if (!header.startsWith('Basic ')) return ''
  const credentials = Buffer.from(header.slice(6), 'base64').toString('utf8')
  const colon = credentials.indexOf(':')
  return colon === -1 ? '' : credentials.slice(colon + 1)
}

/**
 * An onRequest hook admitting only `Authorization: Bearer <token>`, or HTTP Basic with the token as
 * the password (any user name: how a browser opening the policy board sends it). Both sides are
 * hashed first, so the comparison is constant-time whatever the lengths; any other header is 401
 * FST_POLICY_CACHE_UNIDENTIFIED with both challenges (a browser asks for the Basic credentials).
 */
export function bearerToken (token: string): onRequestHookHandler {
  const digest = (value: string): Buffer => createHash('sha256').update(value).digest()
  const expected = digest(token)
  return async (request, reply) => {
    const given = presentedToken(request.headers.authorization)
    if (given !== '' && timingSafeEqual(digest(given), expected)) return
    reply.header('www-authenticate', ['Bearer realm="policy-cache"', 'Basic realm="policy-cache", charset="UTF-8"'])
    throw new errors.UnidentifiedError()
  }
}

/**
 * How long the example server waits for its clients, in milliseconds (Fastify's server options): a
 * slow or stalled client is cut off whatever route it calls, the signed webhook included, whose body
 * must arrive whole before its signature can be checked.
 */
export const HTTP_TIMEOUTS = {
  /** Receiving a whole request, headers and body, from its first byte: then 408 and the connection closed. */
  requestTimeout: 10000,
  /**
   * A connection with no traffic while a request is open (e.g. a client not reading its answer) is
   * destroyed. Longer than any answer takes (a write: connect, queries, the peers' acknowledgements).
   */
  connectionTimeout: 60000,
  /**
   * An idle keep-alive connection is closed. Above a load balancer's idle timeout (AWS ALB: 60 s), so
   * that it never sends a request on a connection this server is closing.
   */
  keepAliveTimeout: 72000
} as const

/**
 * Builds the app (not listening yet): Fastify with pino logging, the host-owned Kysely, the plugin.
 * The database is destroyed on close, after the plugin has closed. On a failure everything opened
 * is released before the error is rethrown.
 */
export async function buildServer (
  config: ServerConfig,
  overrides: { logger?: FastifyServerOptions['logger'] } = {}
): Promise<FastifyInstance> {
  const db = await openDatabase(config.db)
  let destroyed = false
  const destroyDb = async (): Promise<void> => {
    if (destroyed) return
    destroyed = true
    await db.destroy()
  }
  const app = Fastify({
    logger: overrides.logger ?? { level: config.logLevel },
    ...HTTP_TIMEOUTS,
    // Node's side of requestTimeout: headers are bounded by it too (left at Node's default, 60 s,
    // headersTimeout keeps Node 20 from enforcing a shorter requestTimeout at all), and requests are
    // checked every second (by default every 30 s, letting one overrun by as much).
    http: { headersTimeout: HTTP_TIMEOUTS.requestTimeout, connectionsCheckingInterval: 1000 }
  })
  // onClose hooks run last-added first: added before the plugin, this one runs after the plugin's.
  app.addHook('onClose', destroyDb)
  try {
    // OpenAPI: registered first, so it sees every route the plugin adds.
    await app.register(swagger, {
      openapi: {
        info: { title: 'fastify-policy-cache example server', version: '0.1.0', description: 'Multi-tenant RBAC policy routes, kept consistent across instances by signed webhooks' },
        components: { securitySchemes: { adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN, when the server sets one' } } }
      },
      // The token's requirement is shown on the routes it guards: everything but the open ones.
      transform: ({ schema, url }) => ({
        url,
        schema: config.adminToken === undefined || OPEN_ROUTES.has(url) || url.startsWith('/docs')
          ? schema
          : { ...schema, security: [{ adminToken: [] }] } as typeof schema
      })
    })
    await app.register(swaggerUi, { routePrefix: '/docs' })
    await app.register(policyCache, {
      ...pluginOptions(config),
      db,
      // ADMIN_TOKEN guards every policy route, reads and writes alike (a tenant's groups and users are
      // confidential too), and /servers (tenant ids, peer addresses); /health, /metrics, /docs and the
      // signed webhook stay open.
      ...(config.adminToken === undefined ? {} : { routeHooks: { onRequest: bearerToken(config.adminToken) } })
    })
    await app.ready()
  } catch (err) {
    await app.close().catch(() => {})
    await destroyDb().catch(() => {})
    throw err
  }
  return app
}

/** Builds the app and listens; logs one line describing the instance. Closes everything on failure. */
export async function startServer (
  config: ServerConfig,
  overrides: { logger?: FastifyServerOptions['logger'] } = {}
): Promise<{ app: FastifyInstance, url: string }> {
  const app = await buildServer(config, overrides)
  let address: string
  try {
    address = await app.listen({ port: config.port, host: config.host })
  } catch (err) {
    await app.close().catch(() => {})
    throw err
  }
  const url = config.publicUrl ?? address
  app.log.info({
    serverId: app.policyCache.serverId,
    url,
    listening: address,
    peers: app.policyCache.peers().length,
    ...(config.peersDns === undefined ? {} : { peersDns: config.peersDns.name }),
    db: config.db.kind,
    ...(config.db.kind === 'sqlite' ? { file: config.db.file } : {}),
    webhook: config.webhookSecrets.length > 0,
    syncIntervalMs: config.syncIntervalMs,
    adminToken: config.adminToken !== undefined,
    metrics: config.metrics,
    transport: config.transport
  }, 'policy-cache example server started')
  return { app, url }
}

function fail (line: string): never {
  process.stderr.write(`server: ${line}\n`)
  process.exit(1)
}

async function main (): Promise<void> {
  let app: FastifyInstance
  let config: ServerConfig
  try {
    config = parseConfig(process.argv.slice(2), process.env)
    app = (await startServer(config)).app
  } catch (err) {
    const line = describeStartupError(err)
    if (line !== undefined) fail(line)
    throw err
  }

  let closing = false
  const shutdown = (signal: NodeJS.Signals): void => {
    // A repeated signal (Ctrl-C reaches a whole process group, a supervisor may follow up with
    // SIGTERM) does not cut the graceful close short; the limit below bounds it.
    if (closing) return
    closing = true
    const { shutdownDelayMs } = config
    app.log.info({ signal, shutdownDelayMs }, 'shutting down')
    const limitMs = shutdownDelayMs + 10000
    const force = setTimeout(() => {
      app.log.error({ limitMs }, 'shutdown took too long; exiting')
      process.exit(1)
    }, limitMs)
    force.unref()
    // Drain first: while the load balancer still sends here, writes get a coded 503 it can retry
    // elsewhere and /health answers 503 `closing`; then the listener closes.
    app.policyCache.drain()
      .then(() => delay(shutdownDelayMs))
      .then(() => app.close())
      .then(() => process.exit(0), (err: unknown) => {
        app.log.error({ err }, 'shutdown failed')
        process.exit(1)
      })
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
}

/** Whether this module is the program being run (not imported by a test or the demo). */
function isMain (): boolean {
  const script = process.argv[1]
  if (script === undefined) return false
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href
  } catch {
    return false
  }
}

if (isMain()) {
  main().catch((err) => {
    process.stderr.write(`server: unexpected startup failure: ${(err as Error)?.stack ?? String(err)}\n`)
    process.exit(1)
  })
}
