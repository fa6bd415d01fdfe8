/**
 * Plugin options: one pure function that copies, validates, defaults and freezes. A bad value
 * throws FST_POLICY_CACHE_INVALID_OPTION naming the option; nothing is silently replaced and the
 * caller's object is never written to.
 */
import { randomUUID } from 'node:crypto'
import type { onRequestHookHandler, preHandlerHookHandler } from 'fastify'
import type { Kysely } from 'kysely'
import { normalizePeerUrl, resolvePeerList, type DroppedPeer } from './broadcast/peer-list.js'
import { parseSecret } from './broadcast/signature.js'
import { InvalidOptionError } from './errors.js'
import type { IdentifyFunction } from './guard.js'
import type { MetricsRegistry } from './metrics.js'
import { isIdentifier } from './model.js'
import { isPolicyStore, TABLE_PREFIX_PATTERN, type PolicyStore } from './store/index.js'

/** Peer URLs, or a function the plugin calls at startup and on every sync to re-resolve them. */
export type PeersOption = readonly string[] | (() => Promise<readonly string[]>)

export interface PolicyCacheOptions {
  /** A host-owned Kysely (SQLite, PostgreSQL, MySQL) or a custom PolicyStore. Default: built-in SQLite at `sqliteFile`. */
  db?: Kysely<any> | PolicyStore
  /** SQLite file used when `db` is absent. Default `:memory:` (one instance only). */
  sqliteFile?: string
  /** Prefix of the store's tables. Default `policy_`. */
  tablePrefix?: string
  /** Changelog entries kept per tenant for delta catch-up. Default 10000. */
  changelogRetention?: number
  /** Base URLs of the other instances, e.g. `http://10.0.0.2:3000`. Default none. */
  peers?: PeersOption
  /** Webhook signing secret(s); several while rotating (all sign, any verifies). Required with peers. */
  webhookSecret?: string | readonly string[]
  /** This instance's id in notices and `/servers`. Default: generated, stable for the process. */
  serverId?: string
  /** This instance's URL as peers see it; shown in `/servers` and dropped from the peer list. */
  publicUrl?: string
  /** How long a write waits for peers' acknowledgements; 0 = don't wait. Default 200. */
  ackTimeoutMs?: number
  /** Timeout of one webhook attempt. Default 2000. */
  requestTimeoutMs?: number
  /** Webhook retries with capped exponential backoff and full jitter; a peer's Retry-After (429/503) is honoured up to `maxRetryAfterMs`. */
  retry?: { retries?: number, minDelayMs?: number, maxDelayMs?: number, maxRetryAfterMs?: number }
  /** Per-peer circuit breaker: after `failureThreshold` consecutive failed attempts (default 10) nothing is sent to the peer for `cooldownMs` (default 30000), then one probe. */
  circuitBreaker?: { failureThreshold?: number, cooldownMs?: number }
  /** Anti-entropy interval (± 10 % jitter); 0 turns it off. Default 30000. */
  syncIntervalMs?: number
  /** Most tenants held in memory (LRU). Default 10000. */
  maxTenants?: number
  /** Longest a check with `minRevision` waits for the database. Default 2000. */
  catchUpTimeoutMs?: number
  /** Body limit of the webhook route, in bytes; at least 32 KiB (the largest notice a sender makes). Default 65536. */
  webhookBodyLimit?: number
  /** Register the HTTP routes (policy, check, ops, webhook). Default true. */
  routes?: boolean
  /** Host hooks run on the policy and check routes (not `/health`, not the signed webhook), e.g. auth. */
  routeHooks?: {
    onRequest?: onRequestHookHandler | onRequestHookHandler[]
    preHandler?: preHandlerHookHandler | preHandlerHookHandler[]
  }
  /**
   * Who a request is, for the route guard (`config: { policy }` on a host route, or
   * `app.policyCache.require(permission)`): `{ tenant, user }`, or `undefined` when it carries no
   * identity (401). Sync or async; required as soon as a route is guarded.
   */
  identify?: IdentifyFunction
  /**
   * Prometheus metrics at `path` (default `/metrics`, under the register prefix, not behind
   * routeHooks), in a new registry per instance unless the host passes its own. Default off.
   */
  metrics?: boolean | { registry?: MetricsRegistry, path?: string, prefix?: string }
}

export interface ResolvedOptions {
  readonly db: Kysely<any> | PolicyStore | undefined
  readonly sqliteFile: string
  readonly tablePrefix: string
  readonly changelogRetention: number
  readonly peers: PeersOption
  /** Entries of a static `peers` list left out (this instance, duplicates): the plugin warns. */
  readonly droppedPeers: readonly DroppedPeer[]
  readonly keys: readonly Buffer[]
  readonly serverId: string
  readonly publicUrl: string | undefined
  readonly ackTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly retry: Readonly<{ retries: number, minDelayMs: number, maxDelayMs: number, maxRetryAfterMs: number }>
  readonly circuitBreaker: Readonly<{ failureThreshold: number, cooldownMs: number }>
  readonly syncIntervalMs: number
  readonly maxTenants: number
  readonly catchUpTimeoutMs: number
  readonly webhookBodyLimit: number
  readonly routes: boolean
  readonly routeHooks: Readonly<{ onRequest: onRequestHookHandler[], preHandler: preHandlerHookHandler[] }>
  readonly identify: IdentifyFunction | undefined
  readonly metrics: Readonly<{ registry: MetricsRegistry | undefined, path: string, prefix: string }> | undefined
}

function integer (name: string, value: number | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(name, `must be an integer from ${min} to ${max}`)
  }
  return value
}

function hooks<T> (name: string, value: T | T[] | undefined): T[] {
  const list = value === undefined ? [] : Array.isArray(value) ? [...value] : [value]
  if (list.some((hook) => typeof hook !== 'function')) throw new InvalidOptionError(name, 'must be a function or an array of functions')
  return list
}

function resolveMetrics (value: PolicyCacheOptions['metrics']): ResolvedOptions['metrics'] {
  if (value === undefined || value === false) return undefined
  const given = value === true ? {} : value
  if (typeof given !== 'object' || given === null) throw new InvalidOptionError('metrics', 'must be a boolean or { registry, path, prefix }')
  const { registry, path = '/metrics', prefix = 'policy_cache_' } = given
  if (registry !== undefined && (typeof registry?.registerMetric !== 'function' || typeof registry.metrics !== 'function' ||
    typeof registry.getSingleMetric !== 'function' || typeof registry.removeSingleMetric !== 'function')) {
    throw new InvalidOptionError('metrics.registry', 'must be a prom-client Registry')
  }
  if (typeof path !== 'string' || !/^\/[A-Za-z0-9._~/-]*$/.test(path)) throw new InvalidOptionError('metrics.path', 'must be a URL path starting with "/"')
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) throw new InvalidOptionError('metrics.prefix', 'must be a Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)')
  return Object.freeze({ registry, path, prefix })
}

export function resolveOptions (input: PolicyCacheOptions = {}): ResolvedOptions {
  if (input === null || typeof input !== 'object') throw new InvalidOptionError('options', 'must be an object')
  const o = { ...input }

  const db = o.db
  if (db !== undefined && !isPolicyStore(db) && typeof (db as Kysely<any>).selectFrom !== 'function') {
    throw new InvalidOptionError('db', 'must be a Kysely instance or a PolicyStore')
  }
  const sqliteFile = o.sqliteFile ?? ':memory:'
  if (typeof sqliteFile !== 'string' || sqliteFile === '') throw new InvalidOptionError('sqliteFile', 'must be a non-empty path')
  const tablePrefix = o.tablePrefix ?? 'policy_'
  if (typeof tablePrefix !== 'string' || !new RegExp(TABLE_PREFIX_PATTERN).test(tablePrefix)) {
    throw new InvalidOptionError('tablePrefix', `must match ${TABLE_PREFIX_PATTERN}`)
  }

  const serverId = o.serverId ?? `srv-${randomUUID().slice(0, 8)}`
  if (!isIdentifier(serverId)) throw new InvalidOptionError('serverId', 'must match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$')
  const publicUrl = o.publicUrl === undefined ? undefined : normalizePeerUrl(o.publicUrl, 'publicUrl')

  let peers: PeersOption = o.peers ?? []
  let droppedPeers: DroppedPeer[] = []
  if (typeof peers !== 'function') {
    const resolved = resolvePeerList(peers, publicUrl)
    peers = Object.freeze(resolved.peers)
    droppedPeers = resolved.dropped
  }

  const secrets = o.webhookSecret === undefined ? [] : typeof o.webhookSecret === 'string' ? [o.webhookSecret] : o.webhookSecret
  if (!Array.isArray(secrets) || secrets.some((s) => typeof s !== 'string')) {
    throw new InvalidOptionError('webhookSecret', 'must be a string or an array of strings')
  }
  const keys = secrets.map((secret) => parseSecret(secret, 'webhookSecret'))
  const hasPeers = typeof peers === 'function' || peers.length > 0
  if (hasPeers && keys.length === 0) throw new InvalidOptionError('webhookSecret', 'is required when peers are configured')

  const retry = o.retry ?? {}
  const minDelayMs = integer('retry.minDelayMs', retry.minDelayMs, 50, 1)
  const resolvedRetry = Object.freeze({
    retries: integer('retry.retries', retry.retries, 5, 0, 100),
    minDelayMs,
    maxDelayMs: integer('retry.maxDelayMs', retry.maxDelayMs, Math.max(5000, minDelayMs), minDelayMs),
    maxRetryAfterMs: integer('retry.maxRetryAfterMs', retry.maxRetryAfterMs, 60000, 0, 3600000)
  })
  const breaker = o.circuitBreaker === undefined ? {} : o.circuitBreaker
  if (typeof breaker !== 'object' || breaker === null) throw new InvalidOptionError('circuitBreaker', 'must be an object')
  const circuitBreaker = Object.freeze({
    failureThreshold: integer('circuitBreaker.failureThreshold', breaker.failureThreshold, 10, 1, 1000),
    cooldownMs: integer('circuitBreaker.cooldownMs', breaker.cooldownMs, 30000, 1, 3600000)
  })

  const routes = o.routes ?? true
  if (typeof routes !== 'boolean') throw new InvalidOptionError('routes', 'must be a boolean')
  const routeHooks = o.routeHooks ?? {}
  if (typeof routeHooks !== 'object' || routeHooks === null) throw new InvalidOptionError('routeHooks', 'must be an object')
  if (o.identify !== undefined && typeof o.identify !== 'function') throw new InvalidOptionError('identify', 'must be a function (request) => { tenant, user } | undefined')

  return Object.freeze({
    db,
    sqliteFile,
    tablePrefix,
    changelogRetention: integer('changelogRetention', o.changelogRetention, 10000, 1),
    peers,
    droppedPeers: Object.freeze(droppedPeers),
    keys: Object.freeze(keys),
    serverId,
    publicUrl,
    ackTimeoutMs: integer('ackTimeoutMs', o.ackTimeoutMs, 200, 0, 60000),
    requestTimeoutMs: integer('requestTimeoutMs', o.requestTimeoutMs, 2000, 1, 60000),
    retry: resolvedRetry,
    circuitBreaker,
    syncIntervalMs: integer('syncIntervalMs', o.syncIntervalMs, 30000, 0, 86400000),
    maxTenants: integer('maxTenants', o.maxTenants, 10000, 1),
    catchUpTimeoutMs: integer('catchUpTimeoutMs', o.catchUpTimeoutMs, 2000, 1, 60000),
    webhookBodyLimit: integer('webhookBodyLimit', o.webhookBodyLimit, 65536, 32 * 1024, 16 * 1024 * 1024),
    routes,
    routeHooks: Object.freeze({
      onRequest: hooks('routeHooks.onRequest', routeHooks.onRequest),
      preHandler: hooks('routeHooks.preHandler', routeHooks.preHandler)
    }),
    identify: o.identify,
    metrics: resolveMetrics(o.metrics)
  })
}
