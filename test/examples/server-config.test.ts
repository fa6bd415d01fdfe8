/**
 * The example server's configuration: parsed from argv and environment, and every mistake a
 * one-line failure (exit 1, one stderr line naming the variable, no stack, no database created).
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import tap, { test, type Test } from 'tap'
import { ConfigError, describeStartupError, parseConfig, pluginOptions } from '../../examples/config.js'
import { buildServer, startServer } from '../../examples/server.js'
import { freePorts } from '../../examples/demo.js'
import { dropPrefixed, POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { NATS_URL, randomName, reachable, REDIS_URL } from '../helpers/brokers.js'

const SERVER = fileURLToPath(new URL('../../examples/server.ts', import.meta.url))
const ROOT = fileURLToPath(new URL('../..', import.meta.url))

// Each spawned server is bounded at 60 s (a loaded machine starts tsx slowly); the file gets room for them.
tap.setTimeout(600000)
const STRONG = 'whsec_' + Buffer.alloc(32, 7).toString('base64')
const PEER = 'http://127.0.0.1:3002'

function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'policy-cache-server-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

interface Run { code: number | null, signal: string | null, stdout: string, stderr: string }

/** Runs examples/server.ts to completion (killed after `timeoutMs`), with a clean policy environment. */
function runServer (args: string[], env: Record<string, string>, timeoutMs = 60000): Promise<Run> {
  const base = { ...process.env }
  for (const name of ['PORT', 'HOST', 'SERVER_ID', 'WEBHOOK_SECRET', 'OTHER_SERVERS', 'POLICY_DB', 'PUBLIC_URL',
    'SYNC_INTERVAL_MS', 'ACK_TIMEOUT_MS', 'POLICY_TABLE_PREFIX', 'LOG_LEVEL', 'MEMBERSHIP', 'SHUTDOWN_DELAY_MS', 'PEERS_DNS', 'PEERS_DNS_SERVER', 'TRANSPORT']) delete base[name]
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), SERVER, ...args], {
      cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => { stdout += chunk })
    child.stderr.on('data', (chunk) => { stderr += chunk })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

const env = { PORT: '3000' }

test('parseConfig: defaults', async (t) => {
  const config = parseConfig([], {})
  t.same(config, {
    port: 3000,
    host: '127.0.0.1',
    serverId: undefined,
    webhookSecrets: [],
    peers: [],
    peersDns: undefined,
    db: { kind: 'sqlite', file: './data/policy.db' },
    publicUrl: 'http://127.0.0.1:3000',
    syncIntervalMs: 30000,
    ackTimeoutMs: undefined,
    tablePrefix: undefined,
    logLevel: 'info',
    adminToken: undefined,
    metrics: true,
    membership: undefined,
    shutdownDelayMs: 0,
    transport: 'webhook',
    brokerUrl: undefined,
    board: '/policy-board'
  })
})

test('parseConfig: TRANSPORT=nats://… and redis://… publish on that broker, without peers', async (t) => {
  const nats = parseConfig([], { TRANSPORT: 'nats://127.0.0.1:4222', WEBHOOK_SECRET: STRONG })
  t.equal(nats.transport, 'nats')
  t.equal(nats.membership, undefined, 'membership is off by default with nats')
  t.same(pluginOptions(nats).transport, { type: 'nats', servers: 'nats://127.0.0.1:4222' })
  t.ok(parseConfig([], { TRANSPORT: 'nats://127.0.0.1:4222', WEBHOOK_SECRET: STRONG, MEMBERSHIP: '1' }).membership, 'MEMBERSHIP=1 with nats: writes wait for the live members')
  const redis = parseConfig([], { TRANSPORT: 'redis://127.0.0.1:6379/2', WEBHOOK_SECRET: STRONG })
  t.equal(redis.transport, 'redis')
  t.same(pluginOptions(redis).transport, { type: 'redis', connection: 'redis://127.0.0.1:6379/2' })
})

test('parseConfig: TRANSPORT=pg-notify listens on the postgres:// POLICY_DB, without membership', async (t) => {
  const config = parseConfig([], { TRANSPORT: 'PG-NOTIFY', POLICY_DB: 'postgres://db/policies', WEBHOOK_SECRET: STRONG })
  t.equal(config.transport, 'pg-notify')
  t.equal(config.membership, undefined, 'membership is off by default with pg-notify')
  t.same(pluginOptions(config).transport, { type: 'pg-notify', connection: 'postgres://db/policies' })
  t.equal(pluginOptions(parseConfig([], { TRANSPORT: 'webhook' })).transport, undefined, 'webhook: the plugin\'s default')
})

test('parseConfig: MEMBERSHIP is on whenever a secret is set, 0 turns it off, periods pass through', async (t) => {
  t.same(parseConfig([], { WEBHOOK_SECRET: STRONG }).membership, { heartbeatMs: undefined, ttlMs: undefined, pollMs: undefined })
  t.match(pluginOptions(parseConfig([], { WEBHOOK_SECRET: STRONG })), { membership: {}, publicUrl: 'http://127.0.0.1:3000' })
  t.equal(parseConfig([], { WEBHOOK_SECRET: STRONG, MEMBERSHIP: '0' }).membership, undefined)
  t.equal(pluginOptions(parseConfig([], { WEBHOOK_SECRET: STRONG, MEMBERSHIP: 'false' })).membership, undefined)
  t.equal(parseConfig(['0'], { WEBHOOK_SECRET: STRONG }).membership, undefined, 'off by default on an ephemeral port (no URL to register)')
  t.same(parseConfig([], { WEBHOOK_SECRET: STRONG, MEMBERSHIP: '1', MEMBERSHIP_HEARTBEAT_MS: '100', MEMBERSHIP_TTL_MS: '400', MEMBERSHIP_POLL_MS: '50' }).membership,
    { heartbeatMs: 100, ttlMs: 400, pollMs: 50 })
})

test('parseConfig: every variable', async (t) => {
  const config = parseConfig(['3001'], {
    PORT: '4000',
    HOST: '0.0.0.0',
    SERVER_ID: 'server-1',
    WEBHOOK_SECRET: ` ${STRONG} , another-secret-long-enough ,`,
    OTHER_SERVERS: ' http://127.0.0.1:3002/ ,, http://10.0.0.3:3000 ,',
    POLICY_DB: '/var/lib/policy.db',
    SYNC_INTERVAL_MS: '0',
    ACK_TIMEOUT_MS: '500',
    POLICY_TABLE_PREFIX: 'pc_',
    LOG_LEVEL: 'WARN',
    SHUTDOWN_DELAY_MS: '5000'
  })
  t.equal(config.port, 3001, 'the argument wins over PORT')
  t.equal(config.host, '0.0.0.0')
  t.equal(config.publicUrl, 'http://127.0.0.1:3001', 'a wildcard host is reached through loopback')
  t.equal(config.serverId, 'server-1')
  t.same(config.webhookSecrets, [STRONG, 'another-secret-long-enough'], 'several secrets while rotating, trimmed')
  t.same(config.peers, ['http://127.0.0.1:3002', 'http://10.0.0.3:3000'], 'trimmed, normalised, empty entries ignored')
  t.same(config.db, { kind: 'sqlite', file: '/var/lib/policy.db' })
  t.equal(config.syncIntervalMs, 0)
  t.equal(config.ackTimeoutMs, 500)
  t.equal(config.tablePrefix, 'pc_')
  t.equal(config.logLevel, 'warn')
  t.equal(config.shutdownDelayMs, 5000)

  t.equal(parseConfig([], { PORT: '3005' }).port, 3005, 'PORT without an argument')
  t.equal(parseConfig([], { HOST: '10.1.2.3', PORT: '80' }).publicUrl, 'http://10.1.2.3:80', 'a specific host is the default public URL')
  t.equal(parseConfig([], { PUBLIC_URL: 'https://policy-1.internal/' }).publicUrl, 'https://policy-1.internal')
  t.equal(parseConfig(['0'], {}).publicUrl, undefined, 'no guessed URL for an ephemeral port')
  t.same(parseConfig([], { POLICY_DB: 'postgres://u:p@db:5432/policies' }).db, { kind: 'postgres', url: 'postgres://u:p@db:5432/policies' })
  t.same(parseConfig([], { POLICY_DB: 'postgresql://db/policies' }).db, { kind: 'postgres', url: 'postgresql://db/policies' })
  t.same(parseConfig([], { POLICY_DB: 'mysql://root@db:3306/policies' }).db, { kind: 'mysql', url: 'mysql://root@db:3306/policies' })
  t.same(parseConfig([], { OTHER_SERVERS: 'http://127.0.0.1:3000,http://127.0.0.1:3001', WEBHOOK_SECRET: STRONG }).peers,
    ['http://127.0.0.1:3001'], 'its own URL is not a peer')
  t.equal(parseConfig([], { BOARD: '/ops/board' }).board, '/ops/board', 'the board elsewhere')
  t.same(pluginOptions(parseConfig([], { BOARD: '/ops/board' })).board, { path: '/ops/board' })
  for (const off of ['0', 'false', 'FALSE']) {
    t.equal(parseConfig([], { BOARD: off }).board, undefined, `BOARD=${off}: no board`)
    t.equal(pluginOptions(parseConfig([], { BOARD: off })).board, undefined)
  }
})

test('parseConfig: each mistake names its variable', async (t) => {
  const cases: Array<[Record<string, string>, string[], RegExp]> = [
    [{ WEBHOOK_SECRET: 'mysecret123' }, [], /^invalid configuration: WEBHOOK_SECRET: .*at least 16 bytes/],
    [{ WEBHOOK_SECRET: `${STRONG},short` }, [], /^invalid configuration: WEBHOOK_SECRET: /],
    [{ WEBHOOK_SECRET: 'whsec_not*base64*at*all*' }, [], /^invalid configuration: WEBHOOK_SECRET: .*base64/],
    [{ OTHER_SERVERS: PEER }, [], /^invalid configuration: WEBHOOK_SECRET: is required when peers are configured/],
    [{ OTHER_SERVERS: `${PEER},not a url`, WEBHOOK_SECRET: STRONG }, [], /^invalid configuration: OTHER_SERVERS: "not a url" is not a URL/],
    [{ OTHER_SERVERS: 'ftp://127.0.0.1:21', WEBHOOK_SECRET: STRONG }, [], /^invalid configuration: OTHER_SERVERS: /],
    [{ OTHER_SERVERS: 'http://user:pw@127.0.0.1:3002', WEBHOOK_SECRET: STRONG }, [], /^invalid configuration: OTHER_SERVERS: .*credentials/],
    [{ PUBLIC_URL: 'nope' }, [], /^invalid configuration: PUBLIC_URL: /],
    [{ SERVER_ID: '../etc' }, [], /^invalid configuration: SERVER_ID: /],
    [{ PORT: 'http' }, [], /^invalid configuration: PORT: "http" is not an integer/],
    [{}, ['70000'], /^invalid configuration: port argument: "70000"/],
    [{}, ['-1'], /^invalid configuration: port argument: /],
    [{ SYNC_INTERVAL_MS: '1.5' }, [], /^invalid configuration: SYNC_INTERVAL_MS: "1.5" is not an integer/],
    [{ SYNC_INTERVAL_MS: '30s' }, [], /^invalid configuration: SYNC_INTERVAL_MS: /],
    [{ ACK_TIMEOUT_MS: '-5' }, [], /^invalid configuration: ACK_TIMEOUT_MS: /],
    [{ POLICY_DB: 'redis://127.0.0.1:6379' }, [], /^invalid configuration: POLICY_DB: unsupported scheme "redis:\/\/"/],
    [{ POLICY_TABLE_PREFIX: 'drop table;' }, [], /^invalid configuration: POLICY_TABLE_PREFIX: /],
    [{ LOG_LEVEL: 'loud' }, [], /^invalid configuration: LOG_LEVEL: /],
    [{ ADMIN_TOKEN: 'short' }, [], /^invalid configuration: ADMIN_TOKEN: must be at least 16 bytes/],
    [{ METRICS: 'maybe' }, [], /^invalid configuration: METRICS: /],
    [{ BOARD: 'board' }, [], /^invalid configuration: BOARD: "board" is not a path like \/policy-board, nor 0/],
    [{ BOARD: '/board/' }, [], /^invalid configuration: BOARD: /],
    [{ MEMBERSHIP: 'maybe' }, [], /^invalid configuration: MEMBERSHIP: /],
    [{ MEMBERSHIP: '1' }, [], /^invalid configuration: MEMBERSHIP: needs WEBHOOK_SECRET/],
    [{ MEMBERSHIP: '1', WEBHOOK_SECRET: STRONG }, ['0'], /^invalid configuration: MEMBERSHIP: needs PUBLIC_URL/],
    [{ WEBHOOK_SECRET: STRONG, MEMBERSHIP_HEARTBEAT_MS: '1000', MEMBERSHIP_TTL_MS: '1500' }, [], /^invalid configuration: MEMBERSHIP_TTL_MS: /],
    [{ WEBHOOK_SECRET: STRONG, MEMBERSHIP_POLL_MS: 'soon' }, [], /^invalid configuration: MEMBERSHIP_POLL_MS: /],
    [{ SHUTDOWN_DELAY_MS: '61000' }, [], /^invalid configuration: SHUTDOWN_DELAY_MS: /],
    [{ TRANSPORT: 'pg-notify', WEBHOOK_SECRET: STRONG }, [], /^invalid configuration: TRANSPORT: pg-notify needs POLICY_DB=postgres:\/\//],
    [{ TRANSPORT: 'pg-notify', WEBHOOK_SECRET: STRONG, POLICY_DB: 'mysql://db/p' }, [], /^invalid configuration: TRANSPORT: pg-notify needs POLICY_DB=postgres:\/\//],
    [{ TRANSPORT: 'pg-notify', POLICY_DB: 'postgres://db/p' }, [], /^invalid configuration: WEBHOOK_SECRET: is required with TRANSPORT=pg-notify/],
    [{ TRANSPORT: 'pg-notify', POLICY_DB: 'postgres://db/p', WEBHOOK_SECRET: STRONG, OTHER_SERVERS: PEER }, [], /^invalid configuration: OTHER_SERVERS: is for TRANSPORT=webhook/],
    [{ TRANSPORT: 'pg-notify', POLICY_DB: 'postgres://db/p', WEBHOOK_SECRET: STRONG, MEMBERSHIP: '1' }, [], /^invalid configuration: MEMBERSHIP: is for TRANSPORT=webhook/],
    [{ TRANSPORT: 'nats://127.0.0.1:4222' }, [], /^invalid configuration: WEBHOOK_SECRET: is required with TRANSPORT=nats/],
    [{ TRANSPORT: 'redis://127.0.0.1:6379' }, [], /^invalid configuration: WEBHOOK_SECRET: is required with TRANSPORT=redis/],
    [{ TRANSPORT: 'nats://', WEBHOOK_SECRET: STRONG }, [], /^invalid configuration: TRANSPORT: "nats:\/\/" (is not a URL|names no host)/],
    [{ TRANSPORT: 'redis://127.0.0.1:6379', WEBHOOK_SECRET: STRONG, OTHER_SERVERS: PEER }, [], /^invalid configuration: OTHER_SERVERS: is for TRANSPORT=webhook; with redis/],
    [{ TRANSPORT: 'nats://127.0.0.1:4222', WEBHOOK_SECRET: STRONG, OTHER_SERVERS: PEER }, [], /^invalid configuration: OTHER_SERVERS: is for TRANSPORT=webhook; with nats/],
    [{ TRANSPORT: 'redis://127.0.0.1:6379', WEBHOOK_SECRET: STRONG, MEMBERSHIP: '1' }, [], /^invalid configuration: MEMBERSHIP: is for TRANSPORT=webhook or nats/],
    [{ TRANSPORT: 'pg-notify', POLICY_DB: 'postgres://db/p', WEBHOOK_SECRET: STRONG, PEERS_DNS: 'policy.default.svc.cluster.local:3000' }, [], /^invalid configuration: PEERS_DNS: is for TRANSPORT=webhook/],
    [{ TRANSPORT: 'pigeon' }, [], /^invalid configuration: TRANSPORT: "pigeon" is not webhook, pg-notify, nats:\/\/host:port or redis:\/\/host:port/]
  ]
  for (const [vars, argv, expected] of cases) {
    const err = (() => {
      try {
        parseConfig(argv, vars)
      } catch (e) {
        return e
      }
    })()
    const line = describeStartupError(err)
    t.match(line, expected, JSON.stringify({ vars, argv }))
    t.notMatch(line ?? '', /mysecret123|short|\n/, 'one line, never the secret')
  }
})

test('describeStartupError: operator mistakes get a line, bugs do not', async (t) => {
  t.match(describeStartupError(new ConfigError('HOST', 'bad')), 'invalid configuration: HOST: bad')
  t.match(describeStartupError(Object.assign(new Error('listen EADDRINUSE: address already in use 127.0.0.1:3000'), { code: 'EADDRINUSE' })),
    /^the port is already in use: /)
  t.match(describeStartupError(Object.assign(new Error('The policy database did not answer: ECONNREFUSED'), { code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE' })),
    /^the policy database \(POLICY_DB\) is unavailable: /)
  t.equal(describeStartupError(new TypeError('x is not a function')), undefined)
  t.equal(describeStartupError(undefined), undefined)
})

test('buildServer: the host-owned SQLite database serves the plugin and closes after it', async (t) => {
  const dir = tempDir(t)
  const config = parseConfig(['0'], { POLICY_DB: join(dir, 'nested', 'policy.db'), SERVER_ID: 'solo' })
  const app = await buildServer(config, { logger: false })
  t.ok(existsSync(join(dir, 'nested', 'policy.db')), 'the directory and file are created')
  const health = await app.inject('/health')
  t.match(health.json(), { status: 'ok', serverId: 'solo', db: 'ok', peers: { total: 0 } })
  const write = await app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' } })
  t.match(write.json(), { tenant: 't1', revision: 1, changed: true })
  t.equal((await app.inject('/webhook/refresh')).statusCode, 404, 'no webhook route without a secret')
  await app.close()
  // A second app on the same file sees the write: the first one's connection was closed cleanly.
  const again = await buildServer(config, { logger: false })
  t.teardown(() => again.close())
  t.match((await again.inject('/tenants/t1')).json(), { revision: 1, groups: [{ name: 'g' }] })
})

test('buildServer: TRANSPORT=pg-notify on the PostgreSQL policy database', async (t) => {
  const admin = await postgresDb()
  if (admin === undefined) return unreachable(t, 'PostgreSQL', POSTGRES_URL)
  t.teardown(() => admin.destroy())
  const prefix = randomPrefix()
  t.teardown(() => dropPrefixed(admin, prefix))
  const config = parseConfig(['0'], { TRANSPORT: 'pg-notify', POLICY_DB: POSTGRES_URL, WEBHOOK_SECRET: STRONG, POLICY_TABLE_PREFIX: prefix, METRICS: '0' })
  const app = await buildServer(config, { logger: false })
  t.teardown(() => app.close())
  t.match((await app.inject('/health')).json(), { status: 'ok', transport: { type: 'pg-notify', state: 'up' }, membership: 'off' })
  const write = await app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' } })
  t.match(write.json(), { revision: 1, changed: true, peers: { acked: 0, total: 0 } })
  t.match((await app.inject('/servers')).json().transport, { type: 'pg-notify', channel: `${prefix}notify`, published: 1 })
})

test('buildServer: TRANSPORT=nats://… and redis://… on the machine\'s brokers', async (t) => {
  for (const [url, type] of [[NATS_URL, 'nats'], [REDIS_URL, 'redis']] as const) {
    if (!await reachable(url)) {
      unreachable(t, type === 'nats' ? 'NATS' : 'Redis', url)
      continue
    }
    const config = parseConfig(['0'], { TRANSPORT: url, POLICY_DB: join(tempDir(t), `${type}.db`), WEBHOOK_SECRET: STRONG, POLICY_TABLE_PREFIX: `${randomName('p')}_`, METRICS: '0' })
    const app = await buildServer(config, { logger: false })
    t.teardown(() => app.close())
    t.match((await app.inject('/health')).json(), { status: 'ok', transport: { type, state: 'up' } }, type)
    const write = await app.inject({ method: 'POST', url: '/create-group', payload: { tenant: 't1', group: 'g' } })
    t.match(write.json(), { revision: 1, changed: true, peers: { acked: 0, total: 0 } }, `${type}: alone, nobody to wait for`)
    t.match((await app.inject('/servers')).json().transport, { type, published: 1 })
  }
})

test('buildServer: an unreachable broker is an operator error naming TRANSPORT', async (t) => {
  const [port] = await freePorts(1)
  for (const url of [`nats://127.0.0.1:${port}`, `redis://127.0.0.1:${port}`]) {
    const err = await buildServer(parseConfig(['0'], { TRANSPORT: url, POLICY_DB: join(tempDir(t), 'unreachable.db'), WEBHOOK_SECRET: STRONG }), { logger: false }).then(() => null, (e: unknown) => e)
    t.match(describeStartupError(err), /^the transport \(TRANSPORT\) is unavailable: the (nats|redis) transport could not/, url)
  }
})

test('buildServer: an unreachable database is an operator error naming POLICY_DB and the driver\'s reason', async (t) => {
  const [port] = await freePorts(1)
  for (const url of [`postgres://postgres@127.0.0.1:${port}/test`, `mysql://root@127.0.0.1:${port}/test`]) {
    const err = await buildServer(parseConfig(['0'], { POLICY_DB: url }), { logger: false }).then(() => null, (e: unknown) => e)
    t.match(describeStartupError(err), /^the policy database \(POLICY_DB\) is unavailable: .*ECONNREFUSED/, url)
  }
})

test('startServer: listens and tells its URL; the port in use is an operator error', async (t) => {
  const dir = tempDir(t)
  const [port] = await freePorts(1)
  const config = parseConfig([String(port)], { POLICY_DB: join(dir, 'policy.db'), WEBHOOK_SECRET: STRONG })
  const { app, url } = await startServer(config, { logger: false })
  t.teardown(() => app.close())
  t.equal(url, `http://127.0.0.1:${port}`)
  t.equal((await fetch(`${url}/health`)).status, 200)
  const err = await startServer(parseConfig([String(port)], { POLICY_DB: join(dir, 'other.db') }), { logger: false })
    .then(() => null, (e: unknown) => e)
  t.match(describeStartupError(err), /^the port is already in use: /)
})

test('the CLI: a bad configuration exits 1 with one stderr line and creates nothing', async (t) => {
  const dir = tempDir(t)
  const db = join(dir, 'data', 'policy.db')
  const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['weak secret', [], { WEBHOOK_SECRET: 'mysecret123', OTHER_SERVERS: PEER }, /WEBHOOK_SECRET/],
    ['malformed peer URL', [], { WEBHOOK_SECRET: STRONG, OTHER_SERVERS: `${PEER},http//oops` }, /OTHER_SERVERS/],
    ['peers without a secret', [], { OTHER_SERVERS: PEER }, /WEBHOOK_SECRET: is required/],
    ['bad port', ['port'], {}, /port argument/],
    ['non-integer SYNC_INTERVAL_MS', [], { SYNC_INTERVAL_MS: '2.5' }, /SYNC_INTERVAL_MS/],
    ['unsupported POLICY_DB scheme', [], { POLICY_DB: 'mongodb://127.0.0.1/policies' }, /POLICY_DB: unsupported scheme/],
    ['pg-notify on a SQLite POLICY_DB', [], { TRANSPORT: 'pg-notify', WEBHOOK_SECRET: STRONG }, /TRANSPORT: pg-notify needs POLICY_DB=postgres/]
  ]
  const runs = await Promise.all(cases.map(([, argv, vars]) => runServer(argv, { ...env, POLICY_DB: db, ...vars })))
  cases.forEach(([name, , , expected], i) => {
    const { code, stderr, stdout } = runs[i]
    t.equal(code, 1, `${name}: exit code 1`)
    const lines = stderr.split('\n').filter((line) => line !== '')
    t.equal(lines.length, 1, `${name}: exactly one stderr line (${JSON.stringify(stderr)})`)
    t.match(lines[0], /^server: invalid configuration: /, name)
    t.match(lines[0], expected, name)
    t.notMatch(stderr, /mysecret123|\bat\s.+:\d+:\d+/, `${name}: no secret, no stack`)
    t.equal(stdout, '', `${name}: nothing logged`)
  })
  t.same(readdirSync(dir), [], 'no database created for a bad configuration')
})

test('the CLI: a port in use exits 1 with one line; SIGTERM shuts down cleanly with exit 0', async (t) => {
  const dir = tempDir(t)
  const blocker = createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { blocker.close() })
  const busy = (blocker.address() as { port: number }).port

  const inUse = await runServer([String(busy)], { POLICY_DB: join(dir, 'a.db') })
  t.equal(inUse.code, 1)
  const lines = inUse.stderr.split('\n').filter((line) => line !== '')
  t.equal(lines.length, 1, JSON.stringify(inUse.stderr))
  t.match(lines[0], /^server: the port is already in use: .*EADDRINUSE/)

  const [port] = await freePorts(1)
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), SERVER, String(port)], {
    cwd: ROOT, env: { ...process.env, POLICY_DB: join(dir, 'b.db'), WEBHOOK_SECRET: STRONG, SERVER_ID: 'sig-1', LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  child.stdout.on('data', (chunk) => { stdout += chunk })
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const deadline = Date.now() + 60000
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${port}/health`).then((res) => res.status === 200, () => false)
    if (ok) break
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('the server did not come up')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'exit 0 after SIGTERM')
  const started = stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line))
    .find((entry) => entry.msg === 'policy-cache example server started')
  t.match(started, { level: 30, serverId: 'sig-1', url: `http://127.0.0.1:${port}`, peers: 0, db: 'sqlite' }, 'one startup line')
  t.notMatch(stdout, STRONG.slice(6, 20), 'the secret is never logged')
})
