/**
 * dnsPeers(): a headless Service's DNS name into peer URLs, against a DNS server on loopback whose
 * answers the test sets (test/helpers/dns-server.ts) — never the internet.
 */
import { test } from 'tap'
import { dnsPeers, type DnsPeersOptions } from '../../lib/plugin.js'
import { startDnsServer } from '../helpers/dns-server.js'

const NAME = 'policy.default.svc.cluster.local'

test('A and AAAA records become sorted, de-duplicated URLs; IPv6 in brackets', async (t) => {
  const dns = await startDnsServer(t, { [NAME]: { a: ['10.0.0.3', '10.0.0.1', '10.0.0.3'], aaaa: ['fd00::2', '2001:db8:0:0:1::1'] } })
  const peers = dnsPeers({ name: NAME, port: 3000, servers: [dns.address], family: 'both' })
  t.same(await peers(), [
    'http://10.0.0.1:3000',
    'http://10.0.0.3:3000',
    'http://[2001:db8::1:0:0:1]:3000',
    'http://[fd00::2]:3000'
  ])
  t.same(await dnsPeers({ name: NAME, port: 3000, servers: [dns.address], family: 'ipv4' })(), ['http://10.0.0.1:3000', 'http://10.0.0.3:3000'])
  t.same(await dnsPeers({ name: NAME, port: 3000, servers: [dns.address], family: 'ipv6' })(), ['http://[2001:db8::1:0:0:1]:3000', 'http://[fd00::2]:3000'])
})

test('family auto (the default): the A records, or the AAAA records when there are none', async (t) => {
  const dns = await startDnsServer(t, {
    'dual.test': { a: ['10.0.0.1'], aaaa: ['fd00::1'] },
    'v6.test': { aaaa: ['fd00::1', 'fd00::2'] }
  })
  t.same(await dnsPeers({ name: 'dual.test', port: 3000, servers: [dns.address] })(), ['http://10.0.0.1:3000'], 'dual-stack: one URL per pod')
  t.same(await dnsPeers({ name: 'v6.test', port: 3000, servers: [dns.address] })(), ['http://[fd00::1]:3000', 'http://[fd00::2]:3000'], 'IPv6-only')
  t.ok(dns.questions.includes('dual.test AAAA') && dns.questions.includes('v6.test A'), 'both families asked')
})

test('protocol, port and path shape the URLs as peer URLs are written (the webhook path is appended to them)', async (t) => {
  const dns = await startDnsServer(t, { [NAME]: { a: ['10.0.0.1'] } })
  t.same(await dnsPeers({ name: NAME, port: 8443, protocol: 'https', path: '/policy/v1', servers: [dns.address] })(), ['https://10.0.0.1:8443/policy/v1'])
  t.same(await dnsPeers({ name: `${NAME}.`, port: 443, protocol: 'https', servers: [dns.address] })(), ['https://10.0.0.1'], 'a default port is left out, as in a normalised publicUrl; a trailing dot is a fully qualified name')
})

test('every call asks again: a changed answer is seen by the next call', async (t) => {
  const dns = await startDnsServer(t, { [NAME]: { a: ['10.0.0.1', '10.0.0.2'] } })
  const peers = dnsPeers({ name: NAME, port: 3000, servers: [dns.address] })
  t.same(await peers(), ['http://10.0.0.1:3000', 'http://10.0.0.2:3000'])
  dns.table.set(NAME, { a: ['10.0.0.2', '10.0.0.3'] })
  t.same(await peers(), ['http://10.0.0.2:3000', 'http://10.0.0.3:3000'])
  // Calls at once each get their own resolver: neither cancels the other.
  t.same(await Promise.all([peers(), peers()]), [['http://10.0.0.2:3000', 'http://10.0.0.3:3000'], ['http://10.0.0.2:3000', 'http://10.0.0.3:3000']])
})

test('no records is no peers: NXDOMAIN, or a name without addresses of the family', async (t) => {
  const dns = await startDnsServer(t, { 'empty.test': {}, 'v4.test': { a: ['10.0.0.1'] } })
  for (const family of ['auto', 'ipv4', 'ipv6', 'both'] as const) {
    t.same(await dnsPeers({ name: 'missing.test', port: 3000, servers: [dns.address], family })(), [], `NXDOMAIN (${family})`)
    t.same(await dnsPeers({ name: 'empty.test', port: 3000, servers: [dns.address], family })(), [], `no records (${family})`)
  }
  t.same(await dnsPeers({ name: 'v4.test', port: 3000, servers: [dns.address], family: 'ipv6' })(), [], 'no AAAA records')
})

test('SERVFAIL and REFUSED reject with FST_POLICY_CACHE_DNS_PEERS, the resolver\'s error as cause', async (t) => {
  const dns = await startDnsServer(t, { 'broken.test': { rcode: 2 }, 'refused.test': { rcode: 5 } })
  for (const family of ['auto', 'ipv4', 'ipv6', 'both'] as const) {
    await t.rejects(dnsPeers({ name: 'broken.test', port: 3000, servers: [dns.address], family })(), {
      code: 'FST_POLICY_CACHE_DNS_PEERS',
      statusCode: 503,
      message: /"broken\.test".*ESERVFAIL/,
      cause: { code: 'ESERVFAIL' }
    }, `SERVFAIL (${family})`)
  }
  await t.rejects(dnsPeers({ name: 'refused.test', port: 3000, servers: [dns.address] })(), { code: 'FST_POLICY_CACHE_DNS_PEERS', cause: { code: 'EREFUSED' } })
})

test('a server that does not answer: rejects once timeoutMs is up', async (t) => {
  const dns = await startDnsServer(t, { 'silent.test': { silent: true } })
  await t.rejects(dnsPeers({ name: 'silent.test', port: 3000, servers: [dns.address], timeoutMs: 300 })(), {
    code: 'FST_POLICY_CACHE_DNS_PEERS',
    message: /no answer within 300 ms \(timeoutMs\)/
  })
})

test('a lost packet is asked again within timeoutMs', async (t) => {
  const dns = await startDnsServer(t, { 'lossy.test': { a: ['10.0.0.1'], drop: 1 } })
  // Asked again after a third of timeoutMs (c-ares's default waits longer than the 1.5 s the call may take).
  t.same(await dnsPeers({ name: 'lossy.test', port: 3000, servers: [dns.address], family: 'ipv4', timeoutMs: 1500 })(), ['http://10.0.0.1:3000'])
  t.same(dns.questions, ['lossy.test A', 'lossy.test A'], 'the first question went unanswered, the second was answered')
})

test('bad options throw FST_POLICY_CACHE_INVALID_OPTION naming the field, before any lookup', async (t) => {
  const base: DnsPeersOptions = { name: NAME, port: 3000 }
  const bad: Array<[string, unknown]> = [
    ['dnsPeers', null],
    ['dnsPeers', 'policy.default.svc.cluster.local:3000'],
    ['dnsPeers.prot', { ...base, prot: 'https' }],
    ['dnsPeers.name', { port: 3000 }],
    ['dnsPeers.name', { ...base, name: '' }],
    ['dnsPeers.name', { ...base, name: '10.0.0.1' }],
    ['dnsPeers.name', { ...base, name: 'http://policy.default' }],
    ['dnsPeers.name', { ...base, name: 'policy..default' }],
    ['dnsPeers.name', { ...base, name: '-policy.default' }],
    ['dnsPeers.name', { ...base, name: 'a'.repeat(64) + '.test' }],
    ['dnsPeers.name', { ...base, name: ('a'.repeat(60) + '.').repeat(5) + 'test' }],
    ['dnsPeers.port', { name: NAME }],
    ['dnsPeers.port', { ...base, port: 0 }],
    ['dnsPeers.port', { ...base, port: 65536 }],
    ['dnsPeers.port', { ...base, port: '3000' }],
    ['dnsPeers.port', { ...base, port: 30.5 }],
    ['dnsPeers.protocol', { ...base, protocol: 'ftp' }],
    ['dnsPeers.path', { ...base, path: 'policy' }],
    ['dnsPeers.path', { ...base, path: '/policy/' }],
    ['dnsPeers.family', { ...base, family: 'ipv5' }],
    ['dnsPeers.timeoutMs', { ...base, timeoutMs: 0 }],
    ['dnsPeers.timeoutMs', { ...base, timeoutMs: 60001 }],
    ['dnsPeers.servers', { ...base, servers: [] }],
    ['dnsPeers.servers', { ...base, servers: '127.0.0.1' }],
    ['dnsPeers.servers', { ...base, servers: ['dns.example'] }],
    ['dnsPeers.servers', { ...base, servers: [53] }]
  ]
  const says: Record<string, string> = {
    'dnsPeers.name': 'must be a DNS name like "policy.default.svc.cluster.local" (list addresses in `peers` instead)',
    'dnsPeers.port': 'must be an integer from 1 to 65535',
    'dnsPeers.protocol': 'must be "http" or "https"',
    'dnsPeers.family': 'must be one of auto, ipv4, ipv6, both',
    'dnsPeers.timeoutMs': 'must be an integer from 1 to 60000'
  }
  for (const [name, options] of bad) {
    t.throws(() => dnsPeers(options as DnsPeersOptions), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: new RegExp(`^Invalid option "${name.replace('.', '\\.')}"`) }, JSON.stringify(options))
    if (name in says) t.throws(() => dnsPeers(options as DnsPeersOptions), { message: `Invalid option "${name}": ${says[name]}` }, JSON.stringify(options))
  }
  for (const servers of [[], '127.0.0.1']) {
    t.throws(() => dnsPeers({ ...base, servers: servers as string[] }), { message: 'Invalid option "dnsPeers.servers": must be a non-empty array of addresses (leave it out for the system\'s servers)' })
  }
  for (const accepted of [{ port: 1 }, { port: 65535 }, { timeoutMs: 1 }, { timeoutMs: 60000 }, { name: 'p' }, { name: 'a.b.c' }, { name: 'policy.x' }, {}]) {
    t.doesNotThrow(() => dnsPeers({ ...base, ...accepted }), `accepted: ${JSON.stringify(accepted)} (the bounds, one-character labels, no servers)`)
  }
  t.throws(() => dnsPeers({ ...base, prot: 'https' } as DnsPeersOptions), { message: /did you mean "dnsPeers\.port"\?|did you mean "dnsPeers\.protocol"\?/ })
  t.doesNotThrow(() => dnsPeers({ ...base, servers: ['127.0.0.1', '127.0.0.1:5353', '::1', '[::1]:5353'], protocol: undefined, path: undefined, family: undefined, timeoutMs: undefined }), 'addresses with and without ports; explicit undefined is absent')
})
