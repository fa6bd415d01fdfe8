/** The peer list: normalised URLs, duplicates collapsed, this instance dropped, each warned about once per change. */
import { test } from 'tap'
import { normalizePeerUrl, PeerList, resolvePeerList, type PeerListOptions } from '../../lib/broadcast/peer-list.js'

/** A logger recording its warnings as [peer, reason]. */
function recorder () {
  const warnings: Array<[string, string]> = []
  return { warnings, log: { warn: (obj: object) => { const { peer, reason } = obj as { peer: string, reason: string }; warnings.push([peer, reason]) } } }
}

test('normalizePeerUrl: origin and path without trailing slashes; only plain http(s) URLs', async (t) => {
  t.equal(normalizePeerUrl('HTTP://LocalHost:80/'), 'http://localhost')
  t.equal(normalizePeerUrl('https://10.0.0.2:443//'), 'https://10.0.0.2')
  t.equal(normalizePeerUrl('http://127.0.0.1:3001/base/path/'), 'http://127.0.0.1:3001/base/path')
  const bad: Array<[string, RegExp]> = [
    ['ftp://127.0.0.1:21', /"ftp:" is not http or https/],
    ['http://user:pw@127.0.0.1', /must not carry credentials/],
    ['http://user@127.0.0.1', /must not carry credentials/],
    ['http://:pw@127.0.0.1', /must not carry credentials/],
    ['http://127.0.0.1/?x=1', /must not have a query or fragment/],
    ['http://127.0.0.1/#x', /must not have a query or fragment/],
    ['not a url', /"not a url" is not a URL/]
  ]
  for (const [url, message] of bad) {
    t.throws(() => normalizePeerUrl(url), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /^Invalid option "peers": / }, url)
    t.throws(() => normalizePeerUrl(url), { message }, url)
  }
  t.throws(() => normalizePeerUrl('gopher://x', 'OTHER_SERVERS'), { message: /^Invalid option "OTHER_SERVERS": / }, 'names the option it is given')
})

test('resolvePeerList keeps first appearances in order, drops this instance and duplicates and says so', async (t) => {
  const { peers, dropped } = resolvePeerList(
    ['http://b:3000/', 'http://self:3000', 'http://a:3000', 'HTTP://B:3000', 'http://self:3000/'],
    'http://self:3000'
  )
  t.same(peers, ['http://b:3000', 'http://a:3000'])
  t.same(dropped, [
    { url: 'http://self:3000', reason: 'publicUrl' },
    { url: 'http://b:3000', reason: 'duplicate' },
    { url: 'http://self:3000', reason: 'publicUrl' }
  ])
  t.same(resolvePeerList([], undefined), { peers: [], dropped: [] })
  t.throws(() => resolvePeerList(['http://a', 'nope'], undefined, 'OTHER_SERVERS'), { message: /^Invalid option "OTHER_SERVERS": "nope" is not a URL/ })
  t.throws(() => resolvePeerList('http://a' as unknown as string[], undefined), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /must be an array/ })
})

test('a static list: resolved as given, its dropped peers warned about once', async (t) => {
  const { warnings, log } = recorder()
  const { peers, dropped } = resolvePeerList(['http://a', 'http://a', 'http://self'], 'http://self')
  const list = new PeerList({ peers, dropped, publicUrl: 'http://self', log })
  t.equal(list.dynamic, false)
  t.same(await list.resolve(), ['http://a'])
  t.same(await list.resolve(), ['http://a'])
  t.same(warnings, [['http://a', 'duplicate'], ['http://self', 'publicUrl']], 'once, not on every resolve')
})

test('a function: called on every resolve, validated, warned about once per change of what it drops', async (t) => {
  const { warnings, log } = recorder()
  let answer: unknown[] = ['http://a', 'http://self']
  let calls = 0
  const options: PeerListOptions = {
    peers: async () => { calls++; return answer as string[] },
    dropped: [],
    publicUrl: 'http://self',
    log
  }
  const list = new PeerList(options)
  t.equal(list.dynamic, true)

  t.same(await list.resolve(), ['http://a'])
  t.same(await list.resolve(), ['http://a'])
  t.equal(calls, 2, 'resolved anew each time')
  t.same(warnings, [['http://self', 'publicUrl']], 'the same drop is warned about once')

  answer = ['http://b/', 'http://b']
  t.same(await list.resolve(), ['http://b'])
  t.same(warnings.slice(1), [['http://b', 'duplicate']], 'a new drop is warned about')

  answer = ['http://c']
  t.same(await list.resolve(), ['http://c'])
  answer = ['http://b', 'http://b']
  await list.resolve()
  t.same(warnings.slice(2), [['http://b', 'duplicate']], 'a drop that comes back after a clean list is warned about again')

  answer = ['ftp://x']
  await t.rejects(list.resolve(), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /^Invalid option "peers": / })
  answer = 'http://a' as unknown as unknown[]
  await t.rejects(list.resolve(), { code: 'FST_POLICY_CACHE_INVALID_OPTION', message: /must be an array/ })
})
