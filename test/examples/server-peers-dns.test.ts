/**
 * The example server's PEERS_DNS (and PEERS_DNS_SERVER): parsed into dnsPeers options, every mistake
 * one line naming the variable, the peers read from a DNS server on loopback the test controls.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import tap, { test } from 'tap'
import { ConfigError, describeStartupError, parseConfig, pluginOptions } from '../../examples/config.js'
import { buildServer } from '../../examples/server.js'
import { tempDir } from '../helpers/app.js'
import { startDnsServer } from '../helpers/dns-server.js'

const SERVER = fileURLToPath(new URL('../../examples/server.ts', import.meta.url))
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const STRONG = 'whsec_' + Buffer.alloc(32, 7).toString('base64')
const NAME = 'policy.default.svc.cluster.local'

// Two spawned servers, each bounded at 60 s (a loaded machine starts tsx slowly).
tap.setTimeout(300000)

test('PEERS_DNS: name:port, an optional scheme and prefix; PEERS_DNS_SERVER lists the servers', async (t) => {
  t.same(parseConfig([], { WEBHOOK_SECRET: STRONG, PEERS_DNS: `${NAME}:3000` }).peersDns, { name: NAME, port: 3000, protocol: 'http' })
  t.same(parseConfig([], { WEBHOOK_SECRET: STRONG, PEERS_DNS: `HTTPS://${NAME}:8443/policy`, PEERS_DNS_SERVER: '10.96.0.10, 127.0.0.1:5353' }).peersDns,
    { name: NAME, port: 8443, protocol: 'https', path: '/policy', servers: ['10.96.0.10', '127.0.0.1:5353'] })
  t.equal(parseConfig([], { WEBHOOK_SECRET: STRONG }).peersDns, undefined, 'unset: none')
  t.equal(typeof pluginOptions(parseConfig([], { WEBHOOK_SECRET: STRONG, PEERS_DNS: `${NAME}:3000` })).peers, 'function', 'the plugin gets dnsPeers\' function')
})

test('a bad PEERS_DNS or PEERS_DNS_SERVER is a ConfigError naming the variable', async (t) => {
  const bad: Array<[string, Record<string, string>, RegExp]> = [
    ['PEERS_DNS', { PEERS_DNS: NAME }, /is not name:port/],
    ['PEERS_DNS', { PEERS_DNS: `ftp://${NAME}:21` }, /is not name:port/],
    ['PEERS_DNS port', { PEERS_DNS: `${NAME}:0` }, /not an integer from 1 to 65535/],
    ['PEERS_DNS port', { PEERS_DNS: `${NAME}:65536` }, /not an integer from 1 to 65535/],
    ['PEERS_DNS', { PEERS_DNS: '10.0.0.1:3000' }, /^name must be a DNS name/],
    ['PEERS_DNS', { PEERS_DNS: 'policy..default:3000' }, /^name must be a DNS name/],
    ['PEERS_DNS', { PEERS_DNS: `${NAME}:3000/policy/` }, /^path must be a path prefix/],
    ['PEERS_DNS', { PEERS_DNS: `${NAME}:3000`, OTHER_SERVERS: 'http://10.0.0.2:3000' }, /not both/],
    ['PEERS_DNS_SERVER', { PEERS_DNS: `${NAME}:3000`, PEERS_DNS_SERVER: 'dns.example' }, /./],
    ['PEERS_DNS_SERVER', { PEERS_DNS_SERVER: '10.96.0.10' }, /only used with PEERS_DNS/]
  ]
  for (const [variable, env, reason] of bad) {
    const err = t.throws(() => parseConfig([], { WEBHOOK_SECRET: STRONG, ...env }), ConfigError, JSON.stringify(env)) as ConfigError
    t.equal(err.variable, variable, JSON.stringify(env))
    t.match(err.message.slice(variable.length + 2), reason, JSON.stringify(env))
    t.notMatch(describeStartupError(err), /\n/, 'one line')
  }
})

test('the example server sends to the addresses the DNS name answers, its own left out', async (t) => {
  const dns = await startDnsServer(t, { [NAME]: { a: ['127.0.0.9', '127.0.0.1'] } })
  const config = parseConfig(['3999'], {
    WEBHOOK_SECRET: STRONG,
    MEMBERSHIP: '0',
    POLICY_DB: join(tempDir(t), 'policy.db'),
    PEERS_DNS: `${NAME}:3999`,
    PEERS_DNS_SERVER: dns.address
  })
  const app = await buildServer(config, { logger: false })
  t.teardown(() => app.close())
  const servers = (await app.inject({ method: 'GET', url: '/servers' })).json()
  t.same(servers.self.url, 'http://127.0.0.1:3999')
  t.same(servers.peers.map((peer: { url: string }) => peer.url), ['http://127.0.0.9:3999'])
})

/** Runs examples/server.ts until it exits (killed after 60 s), with a clean policy environment. */
function runServer (env: Record<string, string>): Promise<{ code: number | null, stderr: string }> {
  const base = { ...process.env }
  for (const name of ['PORT', 'HOST', 'SERVER_ID', 'WEBHOOK_SECRET', 'OTHER_SERVERS', 'POLICY_DB', 'PUBLIC_URL',
    'SYNC_INTERVAL_MS', 'ACK_TIMEOUT_MS', 'POLICY_TABLE_PREFIX', 'LOG_LEVEL', 'MEMBERSHIP', 'PEERS_DNS', 'PEERS_DNS_SERVER']) delete base[name]
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), SERVER], {
      cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'ignore', 'pipe']
    })
    let stderr = ''
    child.stderr.on('data', (chunk) => { stderr += chunk })
    const timer = setTimeout(() => child.kill('SIGKILL'), 60000)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stderr })
    })
  })
}

test('the server process: a bad PEERS_DNS, or a DNS that fails at startup, exits 1 with one line', async (t) => {
  const dns = await startDnsServer(t, { [NAME]: { rcode: 2 } })
  const common = { PORT: '0', WEBHOOK_SECRET: STRONG, MEMBERSHIP: '0', POLICY_DB: join(tempDir(t), 'policy.db'), LOG_LEVEL: 'silent' }
  const [bad, failing] = await Promise.all([
    runServer({ ...common, PEERS_DNS: `${NAME}:http` }),
    runServer({ ...common, PEERS_DNS: `${NAME}:3000`, PEERS_DNS_SERVER: dns.address })
  ])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /^server: invalid configuration: PEERS_DNS: "policy\.default\.svc\.cluster\.local:http" is not name:port .*\n$/)
  t.equal(failing.code, 1)
  t.match(failing.stderr, /^server: the peers' DNS name \(PEERS_DNS\) does not resolve: .*ESERVFAIL.*\n$/)
  t.ok(dns.questions.length > 0, 'the server asked the DNS server it was given')
})
