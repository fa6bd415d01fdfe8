/**
 * The example server's configuration: command line and environment in, a typed config out.
 * Everything is checked before anything is created (no database file for a bad secret), and every
 * failure names the variable to fix, so the server can exit with one line instead of a stack trace.
 */
import { normalizePeerUrl, resolvePeerList } from '../lib/broadcast/peer-list.js'
import { resolveOptions } from '../lib/options.js'
import { DEFAULTS, dnsPeers, type DnsPeersOptions, type PolicyCacheOptions } from '../lib/plugin.js'

/** Where the policies live: a SQLite file, or a PostgreSQL / MySQL server. */
export type DbConfig =
  | { kind: 'sqlite', file: string }
  | { kind: 'postgres', url: string }
  | { kind: 'mysql', url: string }

export interface ServerConfig {
  port: number
  host: string
  /** `undefined`: the plugin generates one. */
  serverId: string | undefined
  /** Empty: no webhook route, no peers allowed. Several while rotating (all sign, any verifies). */
  webhookSecrets: string[]
  peers: string[]
  /**
   * Peers from a headless Service's DNS name (PEERS_DNS `[http(s)://]name:port[/prefix]`, asking
   * PEERS_DNS_SERVER if set), resolved again every 5 s; `undefined`: none.
   */
  peersDns: DnsPeersOptions | undefined
  db: DbConfig
  /** This instance's URL as the peers see it; `undefined` only when listening on port 0. */
  publicUrl: string | undefined
  syncIntervalMs: number
  /** `undefined`: the plugin's default (200 ms). */
  ackTimeoutMs: number | undefined
  /** `undefined`: the plugin's default (`policy_`). */
  tablePrefix: string | undefined
  logLevel: string
  /** Bearer token required on the policy routes; `undefined`: they are open (private network only). */
  adminToken: string | undefined
  /** Serve Prometheus metrics at /metrics (METRICS, default on; `0` turns it off). */
  metrics: boolean
  /**
   * Membership in the database (MEMBERSHIP, default on whenever WEBHOOK_SECRET is set; `0` turns it
   * off), with MEMBERSHIP_HEARTBEAT_MS / MEMBERSHIP_TTL_MS / MEMBERSHIP_POLL_MS; `undefined`: off.
   */
  membership: { heartbeatMs?: number, ttlMs?: number, pollMs?: number } | undefined
  /**
   * On SIGTERM, how long to keep serving after the drain began (writes refused, `/health` 503
   * `closing`) before closing the listener, so that a load balancer's health check sees it
   * (SHUTDOWN_DELAY_MS, default 0).
   */
  shutdownDelayMs: number
  /**
   * How notices travel (TRANSPORT): `webhook` (default: signed requests to each peer), `pg-notify`
   * (PostgreSQL LISTEN/NOTIFY on POLICY_DB, which must then be postgres://; no peers, no membership),
   * `nats` (TRANSPORT=nats://host:port; no peers; MEMBERSHIP=1 makes writes wait for the live
   * members) or `redis` (TRANSPORT=redis://host:port; no peers, no membership).
   */
  transport: 'webhook' | 'pg-notify' | 'nats' | 'redis'
  /** The broker's URL for `nats` and `redis` (TRANSPORT itself); `undefined` otherwise. */
  brokerUrl: string | undefined
  /**
   * Where the policy board is served (BOARD: a path, default `/policy-board`; `0` turns it off),
   * behind ADMIN_TOKEN like the policy routes; `undefined`: off.
   */
  board: string | undefined
}

/** A configuration mistake, always naming the variable (or argument) to fix. */
export class ConfigError extends Error {
  readonly variable: string

  constructor (variable: string, reason: string) {
    super(`${variable}: ${reason}`)
    this.name = 'ConfigError'
    this.variable = variable
  }
}

export const DEFAULT_PORT = 3000
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_POLICY_DB = './data/policy.db'
export const DEFAULT_SYNC_INTERVAL_MS = 30000
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** Which environment variable feeds which plugin option, to name the right one in errors. */
const OPTION_VARIABLES: Record<string, string> = {
  webhookSecret: 'WEBHOOK_SECRET',
  peers: 'OTHER_SERVERS',
  serverId: 'SERVER_ID',
  publicUrl: 'PUBLIC_URL',
  syncIntervalMs: 'SYNC_INTERVAL_MS',
  ackTimeoutMs: 'ACK_TIMEOUT_MS',
  tablePrefix: 'POLICY_TABLE_PREFIX',
  membership: 'MEMBERSHIP',
  transport: 'TRANSPORT',
  'membership.heartbeatMs': 'MEMBERSHIP_HEARTBEAT_MS',
  'membership.ttlMs': 'MEMBERSHIP_TTL_MS',
  'membership.pollMs': 'MEMBERSHIP_POLL_MS'
}

type Env = Record<string, string | undefined>

/** A set, non-blank variable's trimmed value, else `undefined`. */
function value (env: Env, name: string): string | undefined {
  const raw = env[name]?.trim()
  return raw === undefined || raw === '' ? undefined : raw
}

function integer (name: string, raw: string, min: number, max: number): number {
  const n = /^[0-9]+$/.test(raw) ? Number(raw) : NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ConfigError(name, `"${raw}" is not an integer from ${min} to ${max}`)
  return n
}

/** Comma-separated list: entries trimmed, empty entries ignored. */
function list (raw: string | undefined): string[] {
  return (raw ?? '').split(',').map((entry) => entry.trim()).filter((entry) => entry !== '')
}

/** `[http(s)://]name:port[/prefix]`: the scheme defaults to http; the port is required (a headless Service has no default). */
const PEERS_DNS = /^(?:(https?):\/\/)?([^:/]*):([0-9]+)(\/.*)?$/i

/**
 * PEERS_DNS (and PEERS_DNS_SERVER) as dnsPeers options, checked by dnsPeers itself; `undefined` when
 * unset. Mistakes name the variable.
 */
function parsePeersDns (raw: string | undefined, serversRaw: string | undefined, staticPeers: boolean): DnsPeersOptions | undefined {
  if (raw === undefined) {
    if (serversRaw !== undefined) throw new ConfigError('PEERS_DNS_SERVER', 'is only used with PEERS_DNS')
    return undefined
  }
  if (staticPeers) throw new ConfigError('PEERS_DNS', 'set OTHER_SERVERS or PEERS_DNS, not both')
  const match = PEERS_DNS.exec(raw)
  if (match === null) throw new ConfigError('PEERS_DNS', `"${raw}" is not name:port (e.g. policy.default.svc.cluster.local:3000)`)
  const [, scheme, name, port, path] = match
  const options: DnsPeersOptions = {
    name,
    port: integer('PEERS_DNS port', port, 1, 65535),
    protocol: scheme?.toLowerCase() === 'https' ? 'https' : 'http',
    ...(path === undefined ? {} : { path }),
    ...(serversRaw === undefined ? {} : { servers: list(serversRaw) })
  }
  try {
    dnsPeers(options)
  } catch (err) {
    const named = /^Invalid option "dnsPeers\.([a-zA-Z]+)": ([^]*)$/.exec((err as Error).message)
    if (named === null) throw err
    throw named[1] === 'servers' ? new ConfigError('PEERS_DNS_SERVER', named[2]) : new ConfigError('PEERS_DNS', `${named[1]} ${named[2]}`)
  }
  return options
}

function parseDb (raw: string | undefined): DbConfig {
  const db = raw ?? DEFAULT_POLICY_DB
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(db)?.[1]?.toLowerCase()
  if (scheme === undefined) return { kind: 'sqlite', file: db }
  if (scheme === 'postgres' || scheme === 'postgresql') return { kind: 'postgres', url: db }
  if (scheme === 'mysql') return { kind: 'mysql', url: db }
  throw new ConfigError('POLICY_DB', `unsupported scheme "${scheme}://" (use a SQLite file path, postgres:// or mysql://)`)
}

function parseTransport (raw: string | undefined): Pick<ServerConfig, 'transport' | 'brokerUrl'> {
  const transport = raw?.toLowerCase() ?? 'webhook'
  if (transport === 'webhook' || transport === 'pg-notify') return { transport, brokerUrl: undefined }
  const scheme = /^(nats|redis|rediss|tls):\/\//.exec(transport)?.[1]
  if (scheme !== undefined) {
    let url: URL
    try {
      url = new URL(raw as string)
    } catch {
      throw new ConfigError('TRANSPORT', `"${raw as string}" is not a URL (nats://host:port or redis://host:port)`)
    }
    if (url.hostname === '') throw new ConfigError('TRANSPORT', `"${raw as string}" names no host`)
    return { transport: scheme === 'nats' || scheme === 'tls' ? 'nats' : 'redis', brokerUrl: raw as string }
  }
  throw new ConfigError('TRANSPORT', `"${raw as string}" is not webhook, pg-notify, nats://host:port or redis://host:port`)
}

/** `http://host:port` as reachable from this machine: wildcard addresses become loopback. */
function defaultPublicUrl (host: string, port: number): string {
  const reachable = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`
}

/**
 * Reads the server's configuration from its arguments (`[port]`) and environment; throws a
 * {@link ConfigError} naming the variable on the first mistake. The plugin's own option checks
 * (secret strength, URLs, identifiers) run here too, before any database is opened.
 */
export function parseConfig (argv: readonly string[], env: Env): ServerConfig {
  const portArg = argv[0]?.trim()
  const port = portArg !== undefined && portArg !== ''
    ? integer('port argument', portArg, 0, 65535)
    : integer('PORT', value(env, 'PORT') ?? String(DEFAULT_PORT), 0, 65535)
  const host = value(env, 'HOST') ?? DEFAULT_HOST

  const publicUrlRaw = value(env, 'PUBLIC_URL')
  const publicUrl = publicUrlRaw !== undefined
    ? normalizePeerUrl(publicUrlRaw, 'PUBLIC_URL')
    : port === 0 ? undefined : defaultPublicUrl(host, port)
  // Normalised and deduplicated; this instance's own URL dropped, so one list can serve every instance.
  const { peers } = resolvePeerList(list(env.OTHER_SERVERS), publicUrl, 'OTHER_SERVERS')
  const peersDns = parsePeersDns(value(env, 'PEERS_DNS'), value(env, 'PEERS_DNS_SERVER'), peers.length > 0)

  const syncRaw = value(env, 'SYNC_INTERVAL_MS')
  const ackRaw = value(env, 'ACK_TIMEOUT_MS')
  const shutdownDelayRaw = value(env, 'SHUTDOWN_DELAY_MS')
  const logLevel = (value(env, 'LOG_LEVEL') ?? 'info').toLowerCase()
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('LOG_LEVEL', `"${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`)

  const adminToken = value(env, 'ADMIN_TOKEN')
  if (adminToken !== undefined && Buffer.byteLength(adminToken) < 16) throw new ConfigError('ADMIN_TOKEN', 'must be at least 16 bytes (e.g. openssl rand -base64 32)')
  const metricsRaw = (value(env, 'METRICS') ?? '1').toLowerCase()
  if (!['0', '1', 'true', 'false'].includes(metricsRaw)) throw new ConfigError('METRICS', `"${metricsRaw}" is not 0, 1, true or false`)

  const boardRaw = value(env, 'BOARD') ?? DEFAULTS.board.path
  const board = ['0', 'false'].includes(boardRaw.toLowerCase()) ? undefined : boardRaw
  if (board !== undefined && !/^(\/[A-Za-z0-9._~-]+)+$/.test(board)) throw new ConfigError('BOARD', `"${board}" is not a path like /policy-board, nor 0`)

  const { transport, brokerUrl } = parseTransport(value(env, 'TRANSPORT'))
  const db = parseDb(value(env, 'POLICY_DB'))
  if (transport === 'pg-notify' && db.kind !== 'postgres') throw new ConfigError('TRANSPORT', 'pg-notify needs POLICY_DB=postgres://… (LISTEN/NOTIFY on the policy database)')
  if (transport !== 'webhook') {
    const everyone = transport === 'pg-notify' ? 'every instance on the database receives the notices' : `every instance on the ${transport} broker receives the notices`
    if (peers.length > 0) throw new ConfigError('OTHER_SERVERS', `is for TRANSPORT=webhook; with ${transport} ${everyone}`)
    if (peersDns !== undefined) throw new ConfigError('PEERS_DNS', `is for TRANSPORT=webhook; with ${transport} ${everyone}`)
  }

  const membershipRaw = value(env, 'MEMBERSHIP')?.toLowerCase()
  if (membershipRaw !== undefined && !['0', '1', 'true', 'false'].includes(membershipRaw)) throw new ConfigError('MEMBERSHIP', `"${membershipRaw}" is not 0, 1, true or false`)
  const webhookSecrets = list(env.WEBHOOK_SECRET)
  // On by default, but only where it can work: with a secret (members sign notices) and a known URL.
  const membershipOn = membershipRaw === undefined
    ? transport === 'webhook' && webhookSecrets.length > 0 && publicUrl !== undefined
    : membershipRaw === '1' || membershipRaw === 'true'
  if (membershipOn && transport !== 'webhook' && transport !== 'nats') throw new ConfigError('MEMBERSHIP', `is for TRANSPORT=webhook or nats; set MEMBERSHIP=0 or leave it unset with ${transport}`)
  if (transport !== 'webhook' && webhookSecrets.length === 0) throw new ConfigError('WEBHOOK_SECRET', `is required with TRANSPORT=${transport}: its messages are signed with it`)
  if (membershipOn && webhookSecrets.length === 0) throw new ConfigError('MEMBERSHIP', 'needs WEBHOOK_SECRET (members send each other signed notices); set one, or MEMBERSHIP=0')
  if (membershipOn && publicUrl === undefined) throw new ConfigError('MEMBERSHIP', 'needs PUBLIC_URL when listening on port 0')
  const period = (name: string, min: number): number | undefined => {
    const raw = value(env, name)
    return raw === undefined ? undefined : integer(name, raw, min, 86400000)
  }
  const membership = membershipOn
    ? { heartbeatMs: period('MEMBERSHIP_HEARTBEAT_MS', 10), ttlMs: period('MEMBERSHIP_TTL_MS', 20), pollMs: period('MEMBERSHIP_POLL_MS', 10) }
    : undefined

  const config: ServerConfig = {
    port,
    host,
    serverId: value(env, 'SERVER_ID'),
    webhookSecrets,
    peers,
    peersDns,
    db,
    publicUrl,
    syncIntervalMs: syncRaw === undefined ? DEFAULT_SYNC_INTERVAL_MS : integer('SYNC_INTERVAL_MS', syncRaw, 0, 86400000),
    ackTimeoutMs: ackRaw === undefined ? undefined : integer('ACK_TIMEOUT_MS', ackRaw, 0, 60000),
    tablePrefix: value(env, 'POLICY_TABLE_PREFIX'),
    logLevel,
    adminToken,
    metrics: metricsRaw === '1' || metricsRaw === 'true',
    membership,
    shutdownDelayMs: shutdownDelayRaw === undefined ? 0 : integer('SHUTDOWN_DELAY_MS', shutdownDelayRaw, 0, 60000),
    transport,
    brokerUrl,
    board
  }
  // The plugin's own validation is pure: run it now, so a weak secret fails before a database opens.
  // (The pg-notify transport needs the database itself; its combinations are checked above.)
  const options = pluginOptions(config)
  resolveOptions({ ...options, transport: transport === 'pg-notify' ? undefined : options.transport })
  return config
}

/** The plugin options this configuration stands for, without the database. */
export function pluginOptions (config: ServerConfig): PolicyCacheOptions {
  const options: PolicyCacheOptions = {
    peers: config.peersDns === undefined ? config.peers : dnsPeers(config.peersDns),
    serverId: config.serverId,
    publicUrl: config.publicUrl,
    syncIntervalMs: config.syncIntervalMs,
    ackTimeoutMs: config.ackTimeoutMs,
    tablePrefix: config.tablePrefix
  }
  if (config.webhookSecrets.length > 0) options.webhookSecret = config.webhookSecrets
  if (config.metrics) options.metrics = true
  if (config.membership !== undefined) options.membership = config.membership
  if (config.board !== undefined) options.board = { path: config.board }
  // The listening connection goes to the policy database itself.
  if (config.transport === 'pg-notify' && config.db.kind === 'postgres') options.transport = { type: 'pg-notify', connection: config.db.url }
  if (config.transport === 'nats' && config.brokerUrl !== undefined) options.transport = { type: 'nats', servers: config.brokerUrl }
  if (config.transport === 'redis' && config.brokerUrl !== undefined) options.transport = { type: 'redis', connection: config.brokerUrl }
  return options
}

/**
 * The one line to print for a startup failure that is the operator's to fix (bad configuration,
 * port in use, database unreachable), or `undefined` for anything else (a bug: print it whole).
 */
export function describeStartupError (err: unknown): string | undefined {
  if (err instanceof ConfigError) return `invalid configuration: ${err.message}`
  const { code, message } = (err ?? {}) as { code?: unknown, message?: unknown }
  // The plugin reports a failed start as the store's (FST_POLICY_CACHE_STORE_UNAVAILABLE); a transport's is named in it.
  const transport = typeof message === 'string' ? /the (pg-notify|nats|redis) transport could not [^]*$/.exec(message) : null
  if (transport !== null) return `the transport (TRANSPORT) is unavailable: ${oneLine(transport[0])}`
  if (typeof code !== 'string' || typeof message !== 'string') return undefined
  if (code.startsWith('FST_POLICY_CACHE_INVALID_OPTION')) {
    const named = /^Invalid option "([^"]+)": ([^]*)$/.exec(message)
    if (named === null) return `invalid configuration: ${oneLine(message)}`
    const name = named[1]
    const variable = OPTION_VARIABLES[name] ?? (/^[A-Z][A-Z0-9_]*$/.test(name) ? name : `option ${name}`)
    return `invalid configuration: ${variable}: ${oneLine(named[2])}`
  }
  if (code === 'FST_POLICY_CACHE_STORE_UNAVAILABLE') return `the policy database (POLICY_DB) is unavailable: ${oneLine(withCauses(err as Error))}`
  if (code === 'FST_POLICY_CACHE_DNS_PEERS') return `the peers' DNS name (PEERS_DNS) does not resolve: ${oneLine(message)}`
  if (code === 'EADDRINUSE') return `the port is already in use: ${oneLine(message)}`
  if (code === 'EADDRNOTAVAIL' || code === 'EACCES' || code === 'ENOTFOUND') return `cannot listen: ${oneLine(message)}`
  return undefined
}

/** The message followed by its causes' (e.g. the driver's `connect ECONNREFUSED …`). */
function withCauses (err: Error): string {
  const messages: string[] = []
  for (let e: unknown = err; e instanceof Error && messages.length < 5; e = e.cause) {
    const message = e.message === '' && e instanceof AggregateError ? String(e.errors[0]?.message ?? '') : e.message
    if (message !== '' && !messages.some((seen) => seen.includes(message))) messages.push(message)
  }
  return messages.join(': ')
}

function oneLine (text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim()
}
