/**
 * Options as a host writes them under `exactOptionalPropertyTypes`: straight from the environment
 * (`string | undefined`) and with every key explicitly `undefined`. Compiled with that flag by
 * test/types/exact-optional.test.ts, and without it by `npm run typecheck`.
 */
import Fastify from 'fastify'
import policyCache, { dnsPeers, type DnsPeersOptions, type PolicyCacheOptions } from '../../lib/plugin.js'

const env: Record<string, string | undefined> = process.env
const number = (value: string | undefined): number | undefined => value === undefined ? undefined : Number(value)

export async function fromEnvironment (): Promise<void> {
  const app = Fastify()
  await app.register(policyCache, {
    serverId: env.SERVER_ID,
    publicUrl: env.PUBLIC_URL,
    webhookSecret: env.WEBHOOK_SECRET,
    sqliteFile: env.POLICY_DB,
    tablePrefix: env.POLICY_TABLE_PREFIX,
    ackTimeoutMs: number(env.ACK_TIMEOUT_MS),
    syncIntervalMs: number(env.SYNC_INTERVAL_MS),
    startupTimeoutMs: number(env.STARTUP_TIMEOUT_MS),
    retry: { retries: number(env.RETRIES), maxDelayMs: undefined },
    routes: { policy: env.ADMIN === undefined ? undefined : { prefix: env.ADMIN_PREFIX }, ops: { health: env.HEALTH_PATH }, webhook: undefined },
    metrics: env.METRICS === '0' ? undefined : { path: env.METRICS_PATH, prefix: undefined }
  })
}

/** Every key, each `undefined`: `satisfies` fails when a key is missing here, the annotation when one refuses `undefined`. */
const everyKey = {
  db: undefined,
  sqliteFile: undefined,
  tablePrefix: undefined,
  changelogRetention: undefined,
  peers: undefined,
  webhookSecret: undefined,
  serverId: undefined,
  publicUrl: undefined,
  ackTimeoutMs: undefined,
  requestTimeoutMs: undefined,
  retry: undefined,
  circuitBreaker: undefined,
  syncIntervalMs: undefined,
  maxTenants: undefined,
  catchUpTimeoutMs: undefined,
  writeTimeoutMs: undefined,
  startupTimeoutMs: undefined,
  preload: undefined,
  webhookBodyLimit: undefined,
  policyBodyLimit: undefined,
  maxBatchChanges: undefined,
  maxImportFacts: undefined,
  maxBatchChecks: undefined,
  watch: undefined,
  routes: undefined,
  routeHooks: undefined,
  identify: undefined,
  metrics: undefined,
  membership: undefined,
  peerRefreshMs: undefined,
  transport: undefined
} satisfies Record<keyof PolicyCacheOptions, undefined>
export const options: PolicyCacheOptions = everyKey

export const nested: PolicyCacheOptions = {
  retry: { retries: undefined, minDelayMs: undefined, maxDelayMs: undefined, maxRetryAfterMs: undefined },
  circuitBreaker: { failureThreshold: undefined, cooldownMs: undefined },
  routes: { policy: { prefix: undefined }, ops: { prefix: undefined, health: undefined, servers: undefined }, webhook: undefined },
  routeHooks: { onRequest: undefined, preHandler: undefined },
  membership: { heartbeatMs: undefined, ttlMs: undefined, pollMs: undefined },
  watch: { maxWatchers: undefined, maxBuffered: undefined, heartbeatMs: undefined },
  metrics: { registry: undefined, path: undefined, prefix: undefined }
}

/** dnsPeers' optional keys, each `undefined`, as from an environment without them. */
export const dnsOptions: DnsPeersOptions = { name: 'policy.default.svc.cluster.local', port: 3000, protocol: undefined, path: env.PEERS_PATH, servers: undefined, family: undefined, timeoutMs: number(env.DNS_TIMEOUT_MS) }
export const dnsOptional = {
  protocol: undefined,
  path: undefined,
  servers: undefined,
  family: undefined,
  timeoutMs: undefined
} satisfies Record<Exclude<keyof DnsPeersOptions, 'name' | 'port'>, undefined>
export const fromDns: PolicyCacheOptions = { peers: dnsPeers({ ...dnsOptions, ...dnsOptional }) }
