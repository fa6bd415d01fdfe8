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
import { DEFAULTS } from './defaults.js'
import { InvalidOptionError } from './errors.js'
import type { IdentifyFunction } from './guard.js'
import type { MetricsRegistry } from './metrics.js'
import { isIdentifier } from './model.js'
import { dialectOf } from './store/dialect.js'
import { isPolicyStore, resolveRetention, TABLE_PREFIX_PATTERN, type ChangelogRetention, type PolicyStore } from './store/index.js'

/** What a PostgreSQL `LISTEN`/`pg_notify` channel name must match (an identifier of at most 63 bytes). */
export const CHANNEL_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,62}$'

/**
 * The `pg-notify` transport (docs/transports.md): each write's notice is sent with `pg_notify`
 * inside the write's transaction; every instance listens on a dedicated connection.
 */
export interface PgNotifyTransportOption {
  type: 'pg-notify'
  /**
   * The listening connection (one per instance, held open): a PostgreSQL connection string, or a
   * `pg` client configuration object. Required; it must reach the primary the store writes to.
   */
  connection: string | Readonly<Record<string, unknown>>
  /** The channel. Default: the table prefix followed by `notify` (`policy_notify`). */
  channel?: string | undefined
  /** How often the listening connection is probed (`select 1`). Default 5000. */
  probeIntervalMs?: number | undefined
  /** A probe unanswered this long drops the connection (it is re-established). Default 2000. */
  probeTimeoutMs?: number | undefined
  /** Backoff of re-establishing a lost listening connection (full jitter). Default 100 … 5000 ms. */
  reconnect?: { minDelayMs?: number | undefined, maxDelayMs?: number | undefined } | undefined
  /** A message larger than this carries only tenant + revision (receivers read the changelog). 512 … 7900, default 7900. */
  maxPayloadBytes?: number | undefined
}

/** What a NATS subject given as `transport.subject` must match: tokens of letters, digits, `_` and `-`, dot-separated, at most 200 characters. */
export const SUBJECT_PATTERN = '^(?=.{1,200}$)[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$'

/**
 * The `nats` transport (docs/transports.md): each write's notice is published once on a core NATS
 * subject with a reply subject; every other instance applies it and answers with its revisions; the
 * write waits up to `ackTimeoutMs` for the live instances' answers.
 */
export interface NatsTransportOption {
  type: 'nats'
  /** The NATS server(s): `nats://host:port`, one or a list. Required. */
  servers: string | readonly string[]
  /** The subject. Default: the table prefix followed by `notify` (`policy_notify`); probes use `<subject>.presence`. */
  subject?: string | undefined
  /** How often the subscription is probed (a presence message this instance must receive), and nats.js pings. Default 5000. */
  probeIntervalMs?: number | undefined
  /** A probe not received back within this marks the subscription down (resynced once it delivers again). Default 2000. */
  probeTimeoutMs?: number | undefined
  /** A notice larger than this (or than the server's max_payload) carries only tenant + revision. 512 … 8 MiB, default 65536. */
  maxPayloadBytes?: number | undefined
  /** Further nats.js connection options (`user`, `pass`, `token`, `tls`, …), passed as given. */
  connection?: Readonly<Record<string, unknown>> | undefined
}

/**
 * The `redis` transport (docs/transports.md): each write's notice is PUBLISHed once on a Redis
 * channel; every instance subscribes on a dedicated connection. No acknowledgements.
 */
export interface RedisTransportOption {
  type: 'redis'
  /** A Redis URL (`redis://host:port/db`) or an ioredis options object. Required. */
  connection: string | Readonly<Record<string, unknown>>
  /** The channel. Default: the table prefix followed by `notify` (`policy_notify`). */
  channel?: string | undefined
  /** How often the subscriber is probed (PING). Default 5000. */
  probeIntervalMs?: number | undefined
  /** A probe unanswered this long drops the subscriber (it is re-established and resyncs). Default 2000. */
  probeTimeoutMs?: number | undefined
  /** A notice larger than this carries only tenant + revision. 512 … 8 MiB, default 65536. */
  maxPayloadBytes?: number | undefined
}

/** How notices reach the other instances: `'webhook'` (the default) or a transport object. */
export type TransportOption = 'webhook' | { type: 'webhook' } | PgNotifyTransportOption | NatsTransportOption | RedisTransportOption

/** The transport option, resolved. */
export type ResolvedTransport =
  | Readonly<{ type: 'webhook' }>
  | Readonly<{
    type: 'pg-notify'
    connection: string | Readonly<Record<string, unknown>>
    channel: string
    probeIntervalMs: number
    probeTimeoutMs: number
    reconnect: Readonly<{ minDelayMs: number, maxDelayMs: number }>
    maxPayloadBytes: number
  }>
  | Readonly<{
    type: 'nats'
    servers: readonly string[]
    subject: string
    probeIntervalMs: number
    probeTimeoutMs: number
    maxPayloadBytes: number
    connection: Readonly<Record<string, unknown>>
  }>
  | Readonly<{
    type: 'redis'
    connection: string | Readonly<Record<string, unknown>>
    channel: string
    probeIntervalMs: number
    probeTimeoutMs: number
    maxPayloadBytes: number
  }>

/** Peer URLs, or a function the plugin calls at startup and again every `peerRefreshMs` (e.g. `dnsPeers`). */
export type PeersOption = readonly string[] | (() => Promise<readonly string[]>)

/** Where the policy and check routes are mounted: `prefix` goes under the register prefix. */
export interface PolicyRoutesOption {
  /** A path prefix (`/admin`) under the register prefix. Default none. */
  prefix?: string | undefined
}

/** The ops routes: each one renamed (a path) or dropped (`false`). */
export interface OpsRoutesOption {
  /** A path prefix under the register prefix for both. Default none. */
  prefix?: string | undefined
  /** The health route's path, or `false` for none. Default `/health`. */
  health?: string | false | undefined
  /** The peer status route's path, or `false` for none. Default `/servers`. */
  servers?: string | false | undefined
}

/**
 * Which routes the plugin mounts. `true` (the default) mounts them all; `false` mounts no policy
 * and no ops routes — the webhook receiver stays, since peers need it.
 */
export interface RoutesOption {
  /** The policy and check routes (writes, `/check-access`, the views, `/refresh-tenant`). Default true. */
  policy?: boolean | PolicyRoutesOption | undefined
  /** `/health` and `/servers`. Default true. */
  ops?: boolean | OpsRoutesOption | undefined
  /**
   * The signed receiver `POST /webhook/refresh`, under the register prefix (a peer URL is the base
   * it is mounted under). Default: mounted whenever `webhookSecret` is set; `true` without a secret
   * fails; `false` leaves this instance to catch up by the sync alone.
   */
  webhook?: boolean | undefined
}

/**
 * The plugin's options. Every key is optional and accepts `undefined` (same as absent); an unknown
 * key or a value of the wrong type fails registration with FST_POLICY_CACHE_INVALID_OPTION naming it.
 * Defaults: {@link DEFAULTS}.
 */
export interface PolicyCacheOptions {
  /** A host-owned Kysely (SQLite, PostgreSQL, MySQL) or a custom PolicyStore. Default: built-in SQLite at `sqliteFile`. */
  db?: Kysely<any> | PolicyStore | undefined
  /** SQLite file used when `db` is absent. Default `:memory:` (one instance only). */
  sqliteFile?: string | undefined
  /** Prefix of the store's tables. Default `policy_`. */
  tablePrefix?: string | undefined
  /**
   * Changelog rows kept per tenant: a row goes once it is beyond the newest `changes` (delta
   * catch-up) **and** older than `days` days by the database's clock (the audit feed). A number n
   * is `{ changes: n, days: 0 }`. Default `{ changes: 10000, days: 0 }`.
   */
  changelogRetention?: number | { changes: number, days?: number | undefined } | undefined
  /** Base URLs of the other instances, e.g. `http://10.0.0.2:3000` (with their register prefix, if any). Default none. */
  peers?: PeersOption | undefined
  /** Webhook signing secret(s); several while rotating (all sign, any verifies). Required with peers. */
  webhookSecret?: string | readonly string[] | undefined
  /** This instance's id in notices and `/servers`. Default: generated, stable for the process. */
  serverId?: string | undefined
  /** This instance's URL as peers see it; shown in `/servers` and dropped from the peer list. */
  publicUrl?: string | undefined
  /** How long a write waits for peers' acknowledgements; 0 = don't wait. Default 200. */
  ackTimeoutMs?: number | undefined
  /** Timeout of one webhook attempt. Default 2000. */
  requestTimeoutMs?: number | undefined
  /** Webhook retries with capped exponential backoff and full jitter; a peer's Retry-After (429/503) is honoured up to `maxRetryAfterMs`. */
  retry?: {
    retries?: number | undefined
    minDelayMs?: number | undefined
    maxDelayMs?: number | undefined
    maxRetryAfterMs?: number | undefined
  } | undefined
  /** Per-peer circuit breaker: after `failureThreshold` consecutive failed attempts (default 10) nothing is sent to the peer for `cooldownMs` (default 30000), then one probe. */
  circuitBreaker?: { failureThreshold?: number | undefined, cooldownMs?: number | undefined } | undefined
  /** Anti-entropy interval (± 10 % jitter); 0 turns it off. Default 30000. */
  syncIntervalMs?: number | undefined
  /** Most tenants held in memory (LRU). Default 10000. */
  maxTenants?: number | undefined
  /** Longest a check with `minRevision` waits for the database. Default 2000. */
  catchUpTimeoutMs?: number | undefined
  /**
   * Longest a write waits for the database's commit: past it the write answers 503
   * FST_POLICY_CACHE_WRITE_OUTCOME_UNKNOWN (it may still commit; if it does, it is applied and sent to
   * the peers then). Default 10000.
   */
  writeTimeoutMs?: number | undefined
  /**
   * Longest registration waits for the database (migrations, then `preload`): past it, or when the
   * database refuses, registration fails with FST_POLICY_CACHE_STORE_UNAVAILABLE carrying the cause.
   * Default 5000, or half of Fastify's `pluginTimeout` when that is shorter.
   */
  startupTimeoutMs?: number | undefined
  /** Tenants loaded into memory at startup, so that `checkSync` answers them from the first request. Default none. */
  preload?: readonly string[] | undefined
  /** Body limit of the webhook route, in bytes; at least 32 KiB (the largest notice a sender makes). Default 65536. */
  webhookBodyLimit?: number | undefined
  /**
   * Body limit of the policy routes (the writes, `/refresh-tenant`), in bytes: a larger body answers
   * 413 FST_ERR_CTP_BODY_TOO_LARGE before it is parsed. At least 1024 (a valid body is under 1 KiB). Default 4096.
   */
  policyBodyLimit?: number | undefined
  /**
   * Most changes one batch write (`POST /batch`, `policyCache.batch`) may hold: more answer 413
   * FST_POLICY_CACHE_BATCH_TOO_LARGE. `POST /batch`'s body limit is raised to fit a batch this large
   * (512 bytes per change and 1 KiB). From 1 to 100000. Default 1000.
   */
  maxBatchChanges?: number | undefined
  /**
   * Most checks one batch check (`POST /check-batch`, `policyCache.checkBatch`) may hold: more answer
   * 413 FST_POLICY_CACHE_CHECK_BATCH_TOO_LARGE. `POST /check-batch`'s body limit is raised to fit
   * (512 bytes per check and 1 KiB). From 1 to 100000. Default 1000.
   */
  maxBatchChecks?: number | undefined
  /**
   * Most facts — groups, grants and memberships — one imported document (`PUT /tenants/:tenant/import`,
   * `importTenant`) may hold: more answer 413 FST_POLICY_CACHE_IMPORT_TOO_LARGE, nothing written. The
   * import route's body limit is raised to fit (300 bytes per fact and 1 KiB). From 1 to 1000000.
   * Default 10000.
   */
  maxImportFacts?: number | undefined
  /**
   * The watch streams (`GET /tenants/:tenant/watch`, `policyCache.watch`): `maxWatchers` open on this
   * instance at once (more are refused with 503 FST_POLICY_CACHE_TOO_MANY_WATCHERS; 1 to 100000,
   * default 100); `maxBuffered` events waiting for one slow client before its stream is closed (1 to
   * 100000, default 100); `heartbeatMs` between the SSE comments that keep idle streams open through
   * proxies (10 to 3600000, default 15000).
   */
  watch?: { maxWatchers?: number | undefined, maxBuffered?: number | undefined, heartbeatMs?: number | undefined } | undefined
  /** Which routes to mount, and where (see {@link RoutesOption}). Default true: all of them. */
  routes?: boolean | RoutesOption | undefined
  /** Host hooks run on the policy and check routes and on `/servers` (not `/health`, `/metrics` or the signed webhook), e.g. auth. */
  routeHooks?: {
    onRequest?: onRequestHookHandler | onRequestHookHandler[] | undefined
    preHandler?: preHandlerHookHandler | preHandlerHookHandler[] | undefined
  } | undefined
  /**
   * Who a request is, for the route guard (`config: { policy }` on a host route, or
   * `app.policyCache.require(permission)`): `{ tenant, user }`, or `undefined` when it carries no
   * identity (401). Sync or async; required as soon as a route is guarded.
   */
  identify?: IdentifyFunction | undefined
  /**
   * Prometheus metrics at `path` (default `/metrics`, under the register prefix, not behind
   * routeHooks), in a new registry per instance unless the host passes its own. Default off.
   */
  metrics?: boolean | { registry?: MetricsRegistry | undefined, path?: string | undefined, prefix?: string | undefined } | undefined
  /**
   * Instances find each other through the shared database (docs/membership.md): each registers
   * itself (`publicUrl`, required) and sends to every live member besides the static `peers`
   * (seeds). `heartbeatMs` (± 10 %, default 5000) renews this instance's row; a row not renewed for
   * `ttlMs` (default 15000, at least twice `heartbeatMs`) expires; every `pollMs` (± 10 %, default
   * 1000) one row read tells whether the set changed. Needs `webhookSecret` and a store with
   * `membership` (the built-in one has it). Default off.
   */
  membership?: boolean | {
    heartbeatMs?: number | undefined
    ttlMs?: number | undefined
    pollMs?: number | undefined
  } | undefined
  /**
   * How often a function-valued `peers` is resolved again (± 10 %), on its own schedule — not the
   * sync's. 0: resolved once, at startup. Default 5000.
   */
  peerRefreshMs?: number | undefined
  /**
   * How notices reach the other instances (docs/transports.md): `'webhook'` (default: one signed
   * request per peer, acknowledged), `{ type: 'pg-notify', connection, … }` (PostgreSQL stores
   * only: `pg_notify` inside each write's transaction, no acknowledgements) or `{ type: 'nats',
   * servers, … }` (one publish per write, acknowledged by the live instances' replies) or
   * `{ type: 'redis', connection, … }` (one PUBLISH per write, no acknowledgements). Every
   * transport signs with `webhookSecret`.
   */
  transport?: TransportOption | undefined
  /**
   * The policy board (README "Policy board"): a page at `path` (default `/policy-board`, under the
   * register prefix) showing the cluster's members and a tenant's policy, updated live; behind
   * `routeHooks` like the policy routes. At most `maxStreams` (default 16) browsers follow it at once.
   * Default off.
   */
  board?: boolean | BoardOption | undefined
}

/** The policy board's settings. */
export interface BoardOption {
  /** Where the page is served, under the register prefix: `/segment(/segment)*`. Default `/policy-board`. */
  path?: string | undefined
  /** Most browsers following the board live at once (more answer 503 FST_POLICY_CACHE_BOARD_BUSY). 1 … 1000, default 16. */
  maxStreams?: number | undefined
}

/** The board option, resolved. */
export interface ResolvedBoard {
  readonly path: string
  readonly maxStreams: number
  /** How often the live streams get a snapshot. */
  readonly intervalMs: number
}

/** The membership option, resolved. */
export interface ResolvedMembership {
  readonly heartbeatMs: number
  readonly ttlMs: number
  readonly pollMs: number
}

/** The watch option, resolved. */
export interface ResolvedWatch {
  readonly maxWatchers: number
  readonly maxBuffered: number
  readonly heartbeatMs: number
}

/** The routes to mount, resolved: a group left `undefined` is not mounted. */
export interface ResolvedRoutes {
  readonly policy: Readonly<{ prefix: string }> | undefined
  readonly ops: Readonly<{ prefix: string, health: string | undefined, servers: string | undefined }> | undefined
  readonly webhook: boolean
}

export interface ResolvedOptions {
  readonly db: Kysely<any> | PolicyStore | undefined
  readonly sqliteFile: string
  readonly tablePrefix: string
  readonly changelogRetention: Readonly<ChangelogRetention>
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
  readonly writeTimeoutMs: number
  readonly startupTimeoutMs: number
  readonly preload: readonly string[]
  readonly webhookBodyLimit: number
  readonly policyBodyLimit: number
  readonly maxBatchChanges: number
  readonly maxBatchChecks: number
  readonly maxImportFacts: number
  readonly watch: ResolvedWatch
  readonly routes: ResolvedRoutes
  readonly routeHooks: Readonly<{ onRequest: onRequestHookHandler[], preHandler: preHandlerHookHandler[] }>
  readonly identify: IdentifyFunction | undefined
  readonly metrics: Readonly<{ registry: MetricsRegistry | undefined, path: string, prefix: string }> | undefined
  /** Membership in the database; undefined when off. */
  readonly membership: ResolvedMembership | undefined
  readonly peerRefreshMs: number
  readonly transport: ResolvedTransport
  /** The policy board; undefined when off. */
  readonly board: ResolvedBoard | undefined
}

/**
 * The keys `app.register` accepts for this plugin: its own options and Fastify's register options,
 * which reach the plugin in the same object.
 */
const OPTION_KEYS: ReadonlyArray<keyof PolicyCacheOptions | 'prefix' | 'logLevel' | 'logSerializers'> = [
  'db', 'sqliteFile', 'tablePrefix', 'changelogRetention', 'peers', 'webhookSecret', 'serverId', 'publicUrl',
  'ackTimeoutMs', 'requestTimeoutMs', 'retry', 'circuitBreaker', 'syncIntervalMs', 'maxTenants', 'catchUpTimeoutMs',
  'writeTimeoutMs', 'startupTimeoutMs', 'preload', 'webhookBodyLimit', 'policyBodyLimit', 'maxBatchChanges', 'maxBatchChecks', 'maxImportFacts', 'watch', 'routes', 'routeHooks', 'identify', 'metrics',
  'membership', 'peerRefreshMs', 'transport', 'board', 'prefix', 'logLevel', 'logSerializers'
]

/** Edit distance between two strings (insertions, deletions, substitutions). */
function distance (a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]
}

/** The known key closest to a misspelled one (case ignored), if any is close enough to be meant. */
function closest (key: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1
  for (const candidate of known) {
    const d = distance(key.toLowerCase(), candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

/**
 * `value` as an object of known keys: throws naming `name` when it is not a plain object, and naming
 * the first unknown key (with the known key it most likely means).
 */
export function knownKeys<T extends object> (name: string | undefined, value: unknown, known: readonly string[]): T {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError(name ?? 'options', 'must be an object')
  }
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue
    const path = name === undefined ? key : `${name}.${key}`
    const meant = closest(key, known)
    throw new InvalidOptionError(path, meant === undefined
      ? `is not an option${name === undefined ? '' : ` of "${name}" (${known.join(', ')})`}`
      : `is not an option; did you mean "${name === undefined ? '' : `${name}.`}${meant}"?`)
  }
  return value as T
}

/** `value`, or `fallback` when it is absent — only `undefined` is absent: a `null` is checked like any value. */
function orDefault<T, F> (value: T | undefined, fallback: F): T | F {
  return value === undefined ? fallback : value
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
  if (value !== true && (typeof value !== 'object' || value === null)) throw new InvalidOptionError('metrics', 'must be a boolean or { registry, path, prefix }')
  const given = value === true ? {} : knownKeys<Exclude<typeof value, boolean>>('metrics', value, ['registry', 'path', 'prefix'])
  const { registry } = given
  const path = orDefault(given.path, DEFAULTS.metrics.path)
  const prefix = orDefault(given.prefix, DEFAULTS.metrics.prefix)
  if (registry !== undefined && (typeof registry?.registerMetric !== 'function' || typeof registry.metrics !== 'function' ||
    typeof registry.getSingleMetric !== 'function' || typeof registry.removeSingleMetric !== 'function')) {
    throw new InvalidOptionError('metrics.registry', 'must be a prom-client Registry')
  }
  if (typeof path !== 'string' || !ROUTE_PATH.test(path)) throw new InvalidOptionError('metrics.path', 'must be a URL path starting with "/"')
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) throw new InvalidOptionError('metrics.prefix', 'must be a Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)')
  return Object.freeze({ registry, path, prefix })
}

/** A route path the plugin mounts: `/` then URL path characters. */
const ROUTE_PATH = /^\/[A-Za-z0-9._~/-]*$/
/** A route prefix: empty, or `/segment(/segment)*` without a trailing slash. */
const ROUTE_PREFIX = /^(\/[A-Za-z0-9._~-]+)*$/

/** A route prefix option (`/admin`, no trailing slash) or `fallback` when absent; anything else throws naming `name`. */
export function routePrefix (name: string, value: unknown, fallback: string): string {
  if (value === undefined) return fallback
  if (typeof value !== 'string' || !ROUTE_PREFIX.test(value)) throw new InvalidOptionError(name, 'must be a path prefix like "/admin" (no trailing slash)')
  return value
}

function routePath (name: string, value: unknown, fallback: string): string | undefined {
  if (value === undefined) return fallback
  if (value === false) return undefined
  if (typeof value !== 'string' || !ROUTE_PATH.test(value)) throw new InvalidOptionError(name, 'must be a URL path starting with "/", or false')
  return value
}

/** A group of routes: `true`/absent → defaults, `false` → not mounted, an object → its known keys. */
function routeGroup<T extends object> (name: string, value: unknown, keys: readonly string[]): T | undefined {
  if (value === undefined || value === true) return {} as T
  if (value === false) return undefined
  if (typeof value !== 'object' || value === null) throw new InvalidOptionError(name, `must be a boolean or { ${keys.join(', ')} }`)
  return knownKeys<T>(name, value, keys)
}

function resolveRoutes (value: PolicyCacheOptions['routes'], hasSecret: boolean): ResolvedRoutes {
  if (value !== undefined && typeof value !== 'boolean' && (typeof value !== 'object' || value === null)) {
    throw new InvalidOptionError('routes', 'must be a boolean or { policy, ops, webhook }')
  }
  const given: RoutesOption = typeof value === 'object'
    ? knownKeys<RoutesOption>('routes', value, ['policy', 'ops', 'webhook'])
    : value === false ? { policy: false, ops: false } : {}

  const policyGiven = routeGroup<PolicyRoutesOption>('routes.policy', given.policy, ['prefix'])
  const policy = policyGiven === undefined
    ? undefined
    : Object.freeze({ prefix: routePrefix('routes.policy.prefix', policyGiven.prefix, DEFAULTS.routes.policy.prefix) })

  const opsGiven = routeGroup<OpsRoutesOption>('routes.ops', given.ops, ['prefix', 'health', 'servers'])
  const ops = opsGiven === undefined
    ? undefined
    : Object.freeze({
      prefix: routePrefix('routes.ops.prefix', opsGiven.prefix, DEFAULTS.routes.ops.prefix),
      health: routePath('routes.ops.health', opsGiven.health, DEFAULTS.routes.ops.health),
      servers: routePath('routes.ops.servers', opsGiven.servers, DEFAULTS.routes.ops.servers)
    })

  const webhook = orDefault(given.webhook, hasSecret)
  if (typeof webhook !== 'boolean') throw new InvalidOptionError('routes.webhook', 'must be a boolean')
  if (webhook && !hasSecret) throw new InvalidOptionError('routes.webhook', 'needs webhookSecret: the receiver accepts only signed notices')
  return Object.freeze({ policy, ops: ops?.health === undefined && ops?.servers === undefined ? undefined : ops, webhook })
}

function resolveWatch (value: PolicyCacheOptions['watch']): ResolvedWatch {
  const given = value === undefined ? {} : knownKeys<NonNullable<PolicyCacheOptions['watch']>>('watch', value, Object.keys(DEFAULTS.watch))
  return Object.freeze({
    maxWatchers: integer('watch.maxWatchers', given.maxWatchers, DEFAULTS.watch.maxWatchers, 1, 100000),
    maxBuffered: integer('watch.maxBuffered', given.maxBuffered, DEFAULTS.watch.maxBuffered, 1, 100000),
    heartbeatMs: integer('watch.heartbeatMs', given.heartbeatMs, DEFAULTS.watch.heartbeatMs, 10, 3600000)
  })
}

function resolveBoard (value: PolicyCacheOptions['board']): ResolvedBoard | undefined {
  if (value === undefined || value === false) return undefined
  if (value !== true && (typeof value !== 'object' || value === null)) throw new InvalidOptionError('board', 'must be a boolean or { path, maxStreams }')
  const given = value === true ? {} : knownKeys<BoardOption>('board', value, ['path', 'maxStreams'])
  const path = routePrefix('board.path', given.path, DEFAULTS.board.path)
  if (path === '') throw new InvalidOptionError('board.path', 'must be a path like "/policy-board", not empty')
  const maxStreams = integer('board.maxStreams', given.maxStreams, DEFAULTS.board.maxStreams, 1, 1000)
  return Object.freeze({ path, maxStreams, intervalMs: DEFAULTS.board.intervalMs })
}

function resolveMembership (value: PolicyCacheOptions['membership'], publicUrl: string | undefined, hasSecret: boolean, db: unknown): ResolvedMembership | undefined {
  if (value === undefined || value === false) return undefined
  if (value !== true && (typeof value !== 'object' || value === null)) throw new InvalidOptionError('membership', 'must be a boolean or { heartbeatMs, ttlMs, pollMs }')
  const given = value === true ? {} : knownKeys<Exclude<PolicyCacheOptions['membership'], boolean | undefined>>('membership', value, Object.keys(DEFAULTS.membership))
  const heartbeatMs = integer('membership.heartbeatMs', given.heartbeatMs, DEFAULTS.membership.heartbeatMs, 10, 3600000)
  const ttlMs = integer('membership.ttlMs', given.ttlMs, Math.max(DEFAULTS.membership.ttlMs, 3 * heartbeatMs), 2 * heartbeatMs, 86400000)
  const pollMs = integer('membership.pollMs', given.pollMs, DEFAULTS.membership.pollMs, 10, 3600000)
  if (publicUrl === undefined) throw new InvalidOptionError('membership', 'needs publicUrl: the URL peers send this instance\'s notices to')
  if (!hasSecret) throw new InvalidOptionError('membership', 'needs webhookSecret: members send each other signed notices')
  if (isPolicyStore(db) && db.membership === undefined) throw new InvalidOptionError('membership', 'the store given as db has no membership (PolicyStore.membership)')
  return Object.freeze({ heartbeatMs, ttlMs, pollMs })
}

/** What the pg-notify transport depends on besides its own settings. */
interface TransportContext {
  tablePrefix: string
  db: unknown
  hasSecret: boolean
  hasPeers: boolean
  membership: boolean
}

function resolveTransport (value: PolicyCacheOptions['transport'], context: TransportContext): ResolvedTransport {
  if (value === undefined || value === 'webhook') return Object.freeze({ type: 'webhook' as const })
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError('transport', 'must be "webhook" or an object { type: "webhook" | "pg-notify" | "nats" | "redis", … }')
  }
  const type = (value as { type?: unknown }).type
  if (type === 'webhook') {
    knownKeys('transport', value, ['type'])
    return Object.freeze({ type: 'webhook' as const })
  }
  if (type === 'nats') return resolveNats(value, context)
  if (type === 'redis') return resolveRedis(value, context)
  if (type !== 'pg-notify') throw new InvalidOptionError('transport.type', 'must be "webhook", "pg-notify", "nats" or "redis"')
  const given = knownKeys<PgNotifyTransportOption>('transport', value,
    ['type', 'connection', 'channel', 'probeIntervalMs', 'probeTimeoutMs', 'reconnect', 'maxPayloadBytes'])
  const { connection } = given
  if (typeof connection !== 'string' && (typeof connection !== 'object' || connection === null || Array.isArray(connection))) {
    throw new InvalidOptionError('transport.connection', 'is required: a PostgreSQL connection string or a pg client configuration object, for the listening connection')
  }
  if (typeof connection === 'string' && connection.trim() === '') throw new InvalidOptionError('transport.connection', 'must not be empty')
  const channel = orDefault(given.channel, context.tablePrefix + DEFAULTS.pgNotify.channelSuffix)
  if (typeof channel !== 'string' || !new RegExp(CHANNEL_PATTERN).test(channel)) {
    throw new InvalidOptionError('transport.channel', `must match ${CHANNEL_PATTERN}`)
  }
  const reconnect = given.reconnect === undefined
    ? {}
    : knownKeys<NonNullable<PgNotifyTransportOption['reconnect']>>('transport.reconnect', given.reconnect, ['minDelayMs', 'maxDelayMs'])
  const minDelayMs = integer('transport.reconnect.minDelayMs', reconnect.minDelayMs, DEFAULTS.pgNotify.reconnect.minDelayMs, 1, 600000)
  const maxDelayMs = integer('transport.reconnect.maxDelayMs', reconnect.maxDelayMs, Math.max(DEFAULTS.pgNotify.reconnect.maxDelayMs, minDelayMs), minDelayMs, 3600000)
  const probeIntervalMs = integer('transport.probeIntervalMs', given.probeIntervalMs, DEFAULTS.pgNotify.probeIntervalMs, 10, 3600000)
  const probeTimeoutMs = integer('transport.probeTimeoutMs', given.probeTimeoutMs, DEFAULTS.pgNotify.probeTimeoutMs, 10, 600000)
  const maxPayloadBytes = integer('transport.maxPayloadBytes', given.maxPayloadBytes, DEFAULTS.pgNotify.maxPayloadBytes, 512, DEFAULTS.pgNotify.maxPayloadBytes)

  // The store: PostgreSQL only (pg_notify runs in the write's transaction).
  const { db } = context
  const postgres = db === undefined
    ? false
    : isPolicyStore(db) ? db.notifies === true : dialectOf(db as Kysely<any>) === 'postgres'
  if (!postgres) {
    throw new InvalidOptionError('transport', db === undefined
      ? 'pg-notify needs a PostgreSQL store: pass db (a Kysely with PostgresDialect); the default store is SQLite'
      : 'pg-notify needs a PostgreSQL store: db must be a Kysely with PostgresDialect, or a PolicyStore whose notifies is true')
  }
  if (!context.hasSecret) throw new InvalidOptionError('webhookSecret', 'is required by the pg-notify transport: its messages are signed with it')
  if (context.hasPeers) throw new InvalidOptionError('peers', 'are for the webhook transport; with pg-notify every instance listening on the channel receives the notices')
  if (context.membership) throw new InvalidOptionError('membership', 'is for the webhook transport; with pg-notify every instance listening on the channel receives the notices')
  return Object.freeze({
    type: 'pg-notify' as const,
    connection: typeof connection === 'string' ? connection : Object.freeze({ ...connection }),
    channel,
    probeIntervalMs,
    probeTimeoutMs,
    reconnect: Object.freeze({ minDelayMs, maxDelayMs }),
    maxPayloadBytes
  })
}

/** `transport: { type: 'nats', … }`: any store; `membership` (when on) tells the writers whom to wait for. */
function resolveNats (value: object, context: TransportContext): ResolvedTransport {
  const given = knownKeys<NatsTransportOption>('transport', value,
    ['type', 'servers', 'subject', 'probeIntervalMs', 'probeTimeoutMs', 'maxPayloadBytes', 'connection'])
  const list: unknown[] = typeof given.servers === 'string' ? [given.servers] : Array.isArray(given.servers) ? [...given.servers] : []
  if (list.length === 0 || list.some((server) => typeof server !== 'string' || server.trim() === '')) {
    throw new InvalidOptionError('transport.servers', 'is required: a NATS server URL (nats://host:port) or a non-empty list of them')
  }
  const subject = orDefault(given.subject, context.tablePrefix + DEFAULTS.nats.subjectSuffix)
  if (typeof subject !== 'string' || !new RegExp(SUBJECT_PATTERN).test(subject)) {
    throw new InvalidOptionError('transport.subject', `must match ${SUBJECT_PATTERN} (no wildcards)`)
  }
  const probeIntervalMs = integer('transport.probeIntervalMs', given.probeIntervalMs, DEFAULTS.nats.probeIntervalMs, 10, 3600000)
  const probeTimeoutMs = integer('transport.probeTimeoutMs', given.probeTimeoutMs, DEFAULTS.nats.probeTimeoutMs, 10, 600000)
  const maxPayloadBytes = integer('transport.maxPayloadBytes', given.maxPayloadBytes, DEFAULTS.nats.maxPayloadBytes, 512, 8 * 1024 * 1024)
  const connection = given.connection === undefined ? {} : given.connection
  if (typeof connection !== 'object' || connection === null || Array.isArray(connection)) {
    throw new InvalidOptionError('transport.connection', 'must be an object of nats.js connection options')
  }
  if (!context.hasSecret) throw new InvalidOptionError('webhookSecret', 'is required by the nats transport: its messages are signed with it')
  if (context.hasPeers) throw new InvalidOptionError('peers', 'are for the webhook transport; with nats every instance subscribed to the subject receives the notices')
  return Object.freeze({
    type: 'nats' as const,
    servers: Object.freeze(list as string[]),
    subject,
    probeIntervalMs,
    probeTimeoutMs,
    maxPayloadBytes,
    connection: Object.freeze({ ...connection })
  })
}

/** `transport: { type: 'redis', … }`: any store; no peers (every subscriber receives the notices). */
function resolveRedis (value: object, context: TransportContext): ResolvedTransport {
  const given = knownKeys<RedisTransportOption>('transport', value,
    ['type', 'connection', 'channel', 'probeIntervalMs', 'probeTimeoutMs', 'maxPayloadBytes'])
  const { connection } = given
  if (typeof connection !== 'string' && (typeof connection !== 'object' || connection === null || Array.isArray(connection))) {
    throw new InvalidOptionError('transport.connection', 'is required: a Redis URL (redis://host:port) or an ioredis options object')
  }
  if (typeof connection === 'string' && connection.trim() === '') throw new InvalidOptionError('transport.connection', 'must not be empty')
  const channel = orDefault(given.channel, context.tablePrefix + DEFAULTS.redis.channelSuffix)
  if (typeof channel !== 'string' || !new RegExp(SUBJECT_PATTERN).test(channel)) {
    throw new InvalidOptionError('transport.channel', `must match ${SUBJECT_PATTERN}`)
  }
  const probeIntervalMs = integer('transport.probeIntervalMs', given.probeIntervalMs, DEFAULTS.redis.probeIntervalMs, 10, 3600000)
  const probeTimeoutMs = integer('transport.probeTimeoutMs', given.probeTimeoutMs, DEFAULTS.redis.probeTimeoutMs, 10, 600000)
  const maxPayloadBytes = integer('transport.maxPayloadBytes', given.maxPayloadBytes, DEFAULTS.redis.maxPayloadBytes, 512, 8 * 1024 * 1024)
  if (!context.hasSecret) throw new InvalidOptionError('webhookSecret', 'is required by the redis transport: its messages are signed with it')
  if (context.hasPeers) throw new InvalidOptionError('peers', 'are for the webhook transport; with redis every instance subscribed to the channel receives the notices')
  if (context.membership) throw new InvalidOptionError('membership', 'is for the webhook and nats transports; with redis every instance subscribed to the channel receives the notices')
  return Object.freeze({
    type: 'redis' as const,
    connection: typeof connection === 'string' ? connection : Object.freeze({ ...connection }),
    channel,
    probeIntervalMs,
    probeTimeoutMs,
    maxPayloadBytes
  })
}

function resolvePreload (value: unknown): readonly string[] {
  if (value === undefined) return Object.freeze([])
  if (!Array.isArray(value)) throw new InvalidOptionError('preload', 'must be an array of tenant ids')
  const bad = value.find((tenant) => !isIdentifier(tenant))
  if (bad !== undefined) throw new InvalidOptionError('preload', `${JSON.stringify(bad)} is not a tenant id (^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$)`)
  return Object.freeze([...new Set<string>(value)])
}

export function resolveOptions (input: PolicyCacheOptions = {}): ResolvedOptions {
  // knownKeys refuses anything but a plain object as "options".
  const o = { ...knownKeys<PolicyCacheOptions>(undefined, input, OPTION_KEYS) }

  const db = o.db
  if (db !== undefined && !isPolicyStore(db) && typeof (db as { selectFrom?: unknown } | null)?.selectFrom !== 'function') {
    throw new InvalidOptionError('db', 'must be a Kysely instance or a PolicyStore (methods migrate, databaseId, write, snapshot, changesSince, changes, revisions, tenants, importTenant, deleteTenant)')
  }
  const sqliteFile = orDefault(o.sqliteFile, DEFAULTS.sqliteFile)
  if (typeof sqliteFile !== 'string' || sqliteFile === '') throw new InvalidOptionError('sqliteFile', 'must be a non-empty path')
  const tablePrefix = orDefault(o.tablePrefix, DEFAULTS.tablePrefix)
  if (typeof tablePrefix !== 'string' || !new RegExp(TABLE_PREFIX_PATTERN).test(tablePrefix)) {
    throw new InvalidOptionError('tablePrefix', `must match ${TABLE_PREFIX_PATTERN}`)
  }

  const serverId = orDefault(o.serverId, `srv-${randomUUID().slice(0, 8)}`)
  if (!isIdentifier(serverId)) throw new InvalidOptionError('serverId', 'must match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$')
  if (o.publicUrl !== undefined && typeof o.publicUrl !== 'string') throw new InvalidOptionError('publicUrl', 'must be a URL string')
  const publicUrl = o.publicUrl === undefined ? undefined : normalizePeerUrl(o.publicUrl, 'publicUrl')

  let peers: PeersOption = orDefault(o.peers, [])
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

  const retry = o.retry === undefined ? {} : knownKeys<NonNullable<PolicyCacheOptions['retry']>>('retry', o.retry, Object.keys(DEFAULTS.retry))
  const minDelayMs = integer('retry.minDelayMs', retry.minDelayMs, DEFAULTS.retry.minDelayMs, 1)
  const resolvedRetry = Object.freeze({
    retries: integer('retry.retries', retry.retries, DEFAULTS.retry.retries, 0, 100),
    minDelayMs,
    maxDelayMs: integer('retry.maxDelayMs', retry.maxDelayMs, Math.max(DEFAULTS.retry.maxDelayMs, minDelayMs), minDelayMs),
    maxRetryAfterMs: integer('retry.maxRetryAfterMs', retry.maxRetryAfterMs, DEFAULTS.retry.maxRetryAfterMs, 0, 3600000)
  })
  const breaker = o.circuitBreaker === undefined
    ? {}
    : knownKeys<NonNullable<PolicyCacheOptions['circuitBreaker']>>('circuitBreaker', o.circuitBreaker, Object.keys(DEFAULTS.circuitBreaker))
  const circuitBreaker = Object.freeze({
    failureThreshold: integer('circuitBreaker.failureThreshold', breaker.failureThreshold, DEFAULTS.circuitBreaker.failureThreshold, 1, 1000),
    cooldownMs: integer('circuitBreaker.cooldownMs', breaker.cooldownMs, DEFAULTS.circuitBreaker.cooldownMs, 1, 3600000)
  })

  const routeHooks = o.routeHooks === undefined
    ? {}
    : knownKeys<NonNullable<PolicyCacheOptions['routeHooks']>>('routeHooks', o.routeHooks, ['onRequest', 'preHandler'])
  if (o.identify !== undefined && typeof o.identify !== 'function') throw new InvalidOptionError('identify', 'must be a function (request) => { tenant, user } | undefined')

  const membership = resolveMembership(o.membership, publicUrl, keys.length > 0, db)
  const transport = resolveTransport(o.transport, { tablePrefix, db, hasSecret: keys.length > 0, hasPeers, membership: membership !== undefined })

  return Object.freeze({
    db,
    sqliteFile,
    tablePrefix,
    changelogRetention: o.changelogRetention === undefined ? DEFAULTS.changelogRetention : resolveRetention(o.changelogRetention),
    peers,
    droppedPeers: Object.freeze(droppedPeers),
    keys: Object.freeze(keys),
    serverId,
    publicUrl,
    ackTimeoutMs: integer('ackTimeoutMs', o.ackTimeoutMs, DEFAULTS.ackTimeoutMs, 0, 60000),
    requestTimeoutMs: integer('requestTimeoutMs', o.requestTimeoutMs, DEFAULTS.requestTimeoutMs, 1, 60000),
    retry: resolvedRetry,
    circuitBreaker,
    syncIntervalMs: integer('syncIntervalMs', o.syncIntervalMs, DEFAULTS.syncIntervalMs, 0, 86400000),
    maxTenants: integer('maxTenants', o.maxTenants, DEFAULTS.maxTenants, 1),
    catchUpTimeoutMs: integer('catchUpTimeoutMs', o.catchUpTimeoutMs, DEFAULTS.catchUpTimeoutMs, 1, 60000),
    writeTimeoutMs: integer('writeTimeoutMs', o.writeTimeoutMs, DEFAULTS.writeTimeoutMs, 1, 600000),
    startupTimeoutMs: integer('startupTimeoutMs', o.startupTimeoutMs, DEFAULTS.startupTimeoutMs, 1, 600000),
    preload: resolvePreload(o.preload),
    webhookBodyLimit: integer('webhookBodyLimit', o.webhookBodyLimit, DEFAULTS.webhookBodyLimit, 32 * 1024, 16 * 1024 * 1024),
    policyBodyLimit: integer('policyBodyLimit', o.policyBodyLimit, DEFAULTS.policyBodyLimit, 1024, 16 * 1024 * 1024),
    maxBatchChanges: integer('maxBatchChanges', o.maxBatchChanges, DEFAULTS.maxBatchChanges, 1, 100000),
    maxBatchChecks: integer('maxBatchChecks', o.maxBatchChecks, DEFAULTS.maxBatchChecks, 1, 100000),
    maxImportFacts: integer('maxImportFacts', o.maxImportFacts, DEFAULTS.maxImportFacts, 1, 1000000),
    watch: resolveWatch(o.watch),
    routes: resolveRoutes(o.routes, keys.length > 0),
    routeHooks: Object.freeze({
      onRequest: hooks('routeHooks.onRequest', routeHooks.onRequest),
      preHandler: hooks('routeHooks.preHandler', routeHooks.preHandler)
    }),
    identify: o.identify,
    metrics: resolveMetrics(o.metrics),
    membership,
    peerRefreshMs: integer('peerRefreshMs', o.peerRefreshMs, DEFAULTS.peerRefreshMs, 0, 86400000),
    transport,
    board: resolveBoard(o.board)
  })
}
