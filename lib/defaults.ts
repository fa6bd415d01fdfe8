/**
 * Every default of the plugin's options, in one place: `resolveOptions` and the built-in store read
 * them here, the README's options table lists them, and a host can read them too
 * (`import { DEFAULTS } from 'fastify-policy-cache'`).
 */
export const DEFAULTS = Object.freeze({
  /** SQLite file used when `db` is absent (one instance only). */
  sqliteFile: ':memory:',
  /** Prefix of the store's tables. */
  tablePrefix: 'policy_',
  /**
   * Changelog rows kept per tenant: the newest `changes` (catch-up), and those younger than `days`
   * days (the audit feed; 0: none by age). A row goes once it is beyond both.
   */
  changelogRetention: Object.freeze({ changes: 10000, days: 0 }),
  /** How long a write waits for peers' acknowledgements. */
  ackTimeoutMs: 200,
  /** Timeout of one webhook attempt. */
  requestTimeoutMs: 2000,
  /** Webhook retries; `maxDelayMs` is raised to `minDelayMs` when that is larger. */
  retry: Object.freeze({ retries: 5, minDelayMs: 50, maxDelayMs: 5000, maxRetryAfterMs: 60000 }),
  /** Per-peer circuit breaker. */
  circuitBreaker: Object.freeze({ failureThreshold: 10, cooldownMs: 30000 }),
  /** Anti-entropy interval. */
  syncIntervalMs: 30000,
  /** Tenants held in memory. */
  maxTenants: 10000,
  /** Longest a load or `minRevision` catch-up waits for the database. */
  catchUpTimeoutMs: 2000,
  /** Longest a write waits for the database's commit; then a 503 saying its outcome is unknown. */
  writeTimeoutMs: 10000,
  /**
   * Longest registration waits for the database (migrations, `preload`); lowered to half of
   * Fastify's `pluginTimeout` when that is shorter, so this plugin's error is the one reported.
   */
  startupTimeoutMs: 5000,
  /** Webhook body limit in bytes. */
  webhookBodyLimit: 64 * 1024,
  /** Body limit of the policy routes (writes, `/refresh-tenant`) in bytes: a valid body is under 1 KiB. */
  policyBodyLimit: 4 * 1024,
  /** Most changes one batch write (`POST /batch`, `policyCache.batch`) may hold. */
  maxBatchChanges: 1000,
  /** Most checks one batch check (`POST /check-batch`, `policyCache.checkBatch`) may hold. */
  maxBatchChecks: 1000,
  /**
   * Most facts — groups, grants and memberships — one imported document (`PUT /tenants/:tenant/import`,
   * `importTenant`) may hold.
   */
  maxImportFacts: 10000,
  /**
   * The watch streams (`GET /tenants/:tenant/watch`, `policyCache.watch`): at most `maxWatchers` open
   * on an instance at once; a stream with `maxBuffered` events waiting for its client is closed; an
   * SSE comment every `heartbeatMs` keeps proxies from closing an idle stream.
   */
  watch: Object.freeze({ maxWatchers: 100, maxBuffered: 100, heartbeatMs: 15000 }),
  /** Pages of the listings and the reverse lookup: items per page by default, and at most. */
  page: Object.freeze({ limit: 100, maxLimit: 1000 }),
  /** Where each group of routes is mounted, under the register prefix. */
  routes: Object.freeze({
    policy: Object.freeze({ prefix: '' }),
    ops: Object.freeze({ prefix: '', health: '/health', servers: '/servers' })
  }),
  /** Membership in the database, when on (`ttlMs` defaults to at least 3 × `heartbeatMs`). */
  membership: Object.freeze({ heartbeatMs: 5000, ttlMs: 15000, pollMs: 1000 }),
  /** How often a function-valued `peers` is resolved again. */
  peerRefreshMs: 5000,
  /** `dnsPeers()`: the peers' scheme, which address records to use, and the bound on one lookup. */
  dnsPeers: Object.freeze({ protocol: 'http', family: 'auto', timeoutMs: 2000 } as const),
  /** How notices reach the other instances (docs/transports.md): signed webhooks to each peer. */
  transport: 'webhook',
  /**
   * The `pg-notify` transport, when chosen: the listening connection is probed (`select 1`) every
   * `probeIntervalMs`, a probe failing or unanswered within `probeTimeoutMs` drops it; it is
   * re-established with full-jitter backoff between `reconnect.minDelayMs` and `reconnect.maxDelayMs`;
   * a message over `maxPayloadBytes` carries only tenant + revision (PostgreSQL's limit is 8000 bytes).
   * The channel defaults to the table prefix followed by `notify` (`policy_notify`).
   */
  pgNotify: Object.freeze({
    probeIntervalMs: 5000,
    probeTimeoutMs: 2000,
    reconnect: Object.freeze({ minDelayMs: 100, maxDelayMs: 5000 }),
    maxPayloadBytes: 7900,
    channelSuffix: 'notify'
  }),
  /**
   * The `nats` transport, when chosen: a presence probe every `probeIntervalMs` (nats.js pings as
   * often) that this instance must receive back within `probeTimeoutMs`; a notice over
   * `maxPayloadBytes` (or the server's max_payload) carries only tenant + revision. The subject
   * defaults to the table prefix followed by `notify` (`policy_notify`).
   */
  nats: Object.freeze({
    probeIntervalMs: 5000,
    probeTimeoutMs: 2000,
    maxPayloadBytes: 65536,
    subjectSuffix: 'notify'
  }),
  /**
   * The `redis` transport, when chosen: the subscriber is probed (PING) every `probeIntervalMs`, one
   * unanswered within `probeTimeoutMs` drops it (ioredis reconnects); a notice over
   * `maxPayloadBytes` carries only tenant + revision. The channel defaults to the table prefix
   * followed by `notify` (`policy_notify`).
   */
  redis: Object.freeze({
    probeIntervalMs: 5000,
    probeTimeoutMs: 2000,
    maxPayloadBytes: 65536,
    channelSuffix: 'notify'
  }),
  /** Prometheus metrics, when on. */
  metrics: Object.freeze({ path: '/metrics', prefix: 'policy_cache_' })
})
