/**
 * The redis transport (lib/broadcast/redis.ts) against a fake ioredis module, no server: the options
 * each client is built with; the first connection and SUBSCRIBE (and their failures); messages on
 * the channel only; the state reported when a connection errs, closes or is re-established (SUBSCRIBE
 * again, then resync); the PING probe; PUBLISH and its failures; closing once, bounded.
 * The real-server behaviour is in test/transport/redis-*.test.ts.
 */
import { EventEmitter } from 'node:events'
import { mock } from 'node:test'
import t, { type Test } from 'tap'
import { encodeEnvelopes, openEnvelope } from '../../lib/broadcast/envelope.js'
import type { ReceivedNotice } from '../../lib/broadcast/notice.js'
import { RedisTransport, type RedisClientLike, type RedisTransportOptions } from '../../lib/broadcast/redis.js'
import { parseSecret } from '../../lib/broadcast/signature.js'
import type { TransportSink } from '../../lib/broadcast/transport.js'

const keys = [parseSecret('redis-client-test-secret-long-enough', 'test')]
const URL = 'redis://127.0.0.1:6379/0'
const CHANNEL = 'policy'
const INTERVAL = 1000
const TIMEOUT = 500

/** How a fake client answers each command: resolved at once unless a test says otherwise. */
interface Answers {
  connect?: () => Promise<void>
  subscribe?: () => Promise<unknown>
  publish?: () => Promise<number>
  ping?: () => Promise<string>
  quit?: () => Promise<unknown>
}

/** A fake ioredis client: records its constructor's arguments and every command, emits what a test emits. */
class FakeClient extends EventEmitter implements RedisClientLike {
  readonly args: unknown[]
  readonly calls: string[] = []
  readonly messages: string[] = []
  answers: Answers

  constructor (args: unknown[], answers: Answers) {
    super()
    this.args = args
    this.answers = answers
  }

  async connect (): Promise<void> {
    this.calls.push('connect')
    await (this.answers.connect ?? (async () => {}))()
    // As ioredis does, once connected.
    this.emit('ready')
  }

  subscribe (channel: string): Promise<unknown> {
    this.calls.push(`subscribe ${channel}`)
    return (this.answers.subscribe ?? (async () => 1))()
  }

  publish (channel: string, message: string): Promise<number> {
    this.calls.push(`publish ${channel}`)
    this.messages.push(message)
    return (this.answers.publish ?? (async () => 1))()
  }

  ping (): Promise<string> {
    this.calls.push('ping')
    return (this.answers.ping ?? (async () => 'PONG'))()
  }

  disconnect (reconnect?: boolean): void {
    this.calls.push(reconnect === undefined ? 'disconnect' : `disconnect(${String(reconnect)})`)
  }

  quit (): Promise<unknown> {
    this.calls.push('quit')
    return (this.answers.quit ?? (async () => 'OK'))()
  }

  /** The calls of `name` so far. */
  count (name: string): number {
    return this.calls.filter((call) => call === name).length
  }
}

type RedisModule = NonNullable<RedisTransportOptions['clientModule']>

/** A fake `ioredis` module: the transport makes its publisher first, then its subscriber. */
function fakeRedis (answers: { publisher?: Answers, subscriber?: Answers } = {}) {
  const clients: FakeClient[] = []
  const module: RedisModule = {
    Redis: class extends FakeClient {
      constructor (...args: unknown[]) {
        super(args, (clients.length === 0 ? answers.publisher : answers.subscriber) ?? {})
        clients.push(this)
      }
    }
  }
  return { module, clients }
}

type Logged = [level: string, obj: Record<string, unknown>, msg: string]

/** A transport on a fake module, a recording sink and log. */
function setup (t: Test, options: Partial<RedisTransportOptions> = {}, answers: Parameters<typeof fakeRedis>[0] = {}) {
  const fake = fakeRedis(answers)
  const logs: Logged[] = []
  const record = (level: string) => (obj: object, msg: string): void => { logs.push([level, obj as Record<string, unknown>, msg]) }
  const delivered: ReceivedNotice[] = []
  let resyncs = 0
  const sink: TransportSink = {
    deliver: async (notice) => { delivered.push(notice); return {} },
    hint: async () => {},
    resubscribed: async () => { resyncs++ }
  }
  const transport = new RedisTransport({
    connection: URL,
    channel: CHANNEL,
    serverId: 'node-1',
    databaseId: () => 'db-1',
    keys,
    probeIntervalMs: INTERVAL,
    probeTimeoutMs: TIMEOUT,
    maxPayloadBytes: 7900,
    log: { debug: record('debug'), info: record('info'), warn: record('warn') },
    clientModule: fake.module,
    ...options
  })
  t.teardown(() => transport.close())
  return {
    transport,
    sink,
    logs,
    delivered,
    resyncs: () => resyncs,
    clients: fake.clients,
    publisher: () => fake.clients[0],
    subscriber: () => fake.clients[1],
    warnings: () => logs.filter(([level]) => level === 'warn')
  }
}

/** One turn of the event loop: every pending promise reaction has run (no time passes). */
async function turn (): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve))
}

/** A promise a test settles itself. */
function deferred<T> () {
  let settle: { resolve: (value: T) => void, reject: (err: unknown) => void } | undefined
  const promise = new Promise<T>((resolve, reject) => { settle = { resolve, reject } })
  return { promise, ...(settle as NonNullable<typeof settle>) }
}

const hang = <T>(): Promise<T> => new Promise<T>(() => {})

/** A notice from another instance, signed with our key. */
const envelope = (origin = 'node-2', tenant = 't1'): string =>
  encodeEnvelopes(keys, { origin }, [{ tenant, revision: 2 }], 7900, Math.floor(Date.now() / 1000))[0]

/** The probe's and close's timers on Node's mock timers (setTimeout only: setImmediate still turns the loop). */
function mockTimers (t: Test): void {
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => mock.timers.reset())
}

const LOST = 'policy-cache: the Redis subscriber connection was lost; ioredis reconnects'
const UNANSWERED = 'policy-cache: the Redis subscriber did not answer its probe; reconnecting it'

t.test('a URL: two named clients, connected only by start, retrying forever with a growing delay, never resubscribing by themselves', async (t) => {
  const { transport, sink, clients, publisher, subscriber } = setup(t, { serverId: 'node 1/a:b' })
  t.equal(clients.length, 0, 'nothing made before start')
  await transport.start(sink)
  t.equal(clients.length, 2)
  for (const [client, role] of [[publisher(), 'publish'], [subscriber(), 'listen']] as const) {
    t.equal(client.args.length, 2, `${role}: the URL, then the options`)
    t.equal(client.args[0], URL)
    const options = client.args[1] as Record<string, unknown>
    t.same(Object.keys(options).sort(), ['autoResubscribe', 'connectionName', 'lazyConnect', 'retryStrategy'])
    t.equal(options.connectionName, `policy-cache-${role}-node_1_a_b`, 'named for CLIENT LIST, unsafe characters replaced')
    t.equal(options.lazyConnect, true)
    t.equal(options.autoResubscribe, false)
    const retry = options.retryStrategy as (times: number) => number
    t.same([1, 2, 10, 39, 40, 100].map(retry), [50, 100, 500, 1950, 2000, 2000], '50 ms more per attempt, up to 2 s')
  }
})

t.test('an options object: merged over the defaults; its own name and retry strategy kept; lazyConnect and autoResubscribe forced', async (t) => {
  const plain = setup(t, { connection: { host: '10.0.0.1', port: 6380 } })
  await plain.transport.start(plain.sink)
  const retryStrategy = (): number => 7
  const own = setup(t, { connection: { host: '10.0.0.2', connectionName: 'mine', retryStrategy, lazyConnect: false, autoResubscribe: true } })
  await own.transport.start(own.sink)

  for (const client of [plain.publisher(), plain.subscriber()]) {
    t.equal(client.args.length, 1, 'one options object')
    const options = client.args[0] as Record<string, unknown>
    t.match(options, { host: '10.0.0.1', port: 6380, connectionName: /^policy-cache-(publish|listen)-node-1$/, lazyConnect: true, autoResubscribe: false })
    t.equal((options.retryStrategy as (times: number) => number)(3), 150, 'the default retry strategy')
  }
  for (const client of [own.publisher(), own.subscriber()]) {
    t.equal(client.args.length, 1)
    const options = client.args[0] as Record<string, unknown>
    t.match(options, { host: '10.0.0.2', connectionName: 'mine', lazyConnect: true, autoResubscribe: false })
    t.equal(options.retryStrategy, retryStrategy, 'its own retry strategy')
  }
})

t.test('start: connects and subscribes the subscriber, connects the publisher; up once subscribed and resynced', async (t) => {
  const { transport, sink, publisher, subscriber, resyncs, logs } = setup(t)
  t.match(transport.status(), { state: 'connecting', subscriptions: 0 })
  await transport.start(sink)
  t.same(subscriber().calls, ['connect', `subscribe ${CHANNEL}`], 'subscribed once (the first ready is not a reconnect)')
  t.same(publisher().calls, ['connect'])
  t.equal(resyncs(), 1, 'every cached tenant resynced before start resolves')
  t.match(transport.status(), { type: 'redis', state: 'up', acknowledged: false, channel: CHANNEL, subscribedAt: String, subscriptions: 1, lastError: null, published: 0 })
  t.same(transport.peers(), [], 'nobody acknowledges')
  t.same(logs, [])
})

t.test('messages: those on the channel go through the inbox to the sink; one on another channel is ignored', async (t) => {
  const { transport, sink, subscriber, delivered } = setup(t)
  await transport.start(sink)
  subscriber().emit('message', 'other-channel', envelope('node-3', 'elsewhere'))
  subscriber().emit('message', CHANNEL, envelope('node-2', 't1'))
  subscriber().emit('message', CHANNEL, 'garbage')
  await turn()
  t.same(delivered.map((notice) => [notice.origin, notice.entries.map((entry) => entry.tenant)]), [['node-2', ['t1']]])
  t.match(transport.status(), { received: 1, hints: 0, dropped: 1 })
})

t.test('an error on either connection is recorded as the last error', async (t) => {
  const { transport, sink, publisher, subscriber } = setup(t)
  await transport.start(sink)
  publisher().emit('error', new Error('publisher: connect ECONNREFUSED'))
  t.equal(transport.status().lastError, 'publisher: connect ECONNREFUSED')
  subscriber().emit('error', new Error('subscriber: read ECONNRESET'))
  t.equal(transport.status().lastError, 'subscriber: read ECONNRESET')
  t.equal(transport.status().state, 'up', 'an error alone is no loss')
})

t.test('the subscriber connection closed: reported down with the last error, the probe stopped; logged once', async (t) => {
  mockTimers(t)
  const { transport, sink, subscriber, warnings } = setup(t)
  await transport.start(sink)
  subscriber().emit('error', new Error('read ECONNRESET'))
  subscriber().emit('close')
  t.match(transport.status(), { state: 'down', lastError: 'read ECONNRESET' })
  t.same(warnings(), [['warn', { channel: CHANNEL, reason: 'read ECONNRESET' }, LOST]])
  mock.timers.tick(INTERVAL * 3)
  await turn()
  t.equal(subscriber().count('ping'), 0, 'not probed while down')
  subscriber().emit('close')
  t.equal(warnings().length, 1, 'a close while down is not another loss')
})

t.test('a close before the first subscription is no loss: still connecting, then up', async (t) => {
  const connected = deferred<void>()
  const { transport, sink, subscriber, warnings } = setup(t, {}, { subscriber: { connect: () => connected.promise } })
  const started = transport.start(sink)
  subscriber().emit('close')
  t.equal(transport.status().state, 'connecting')
  t.same(warnings(), [])
  connected.resolve()
  await started
  t.equal(transport.status().state, 'up')
})

t.test('the first connection fails: start rejects naming the channel and the reason, both clients dropped', async (t) => {
  const cases: Array<[string, Parameters<typeof fakeRedis>[0]]> = [
    ['the subscriber connect', { subscriber: { connect: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379')) } }],
    ['the SUBSCRIBE', { subscriber: { subscribe: () => Promise.reject(new Error('NOPERM no permission on the channel')) } }],
    ['the publisher connect', { publisher: { connect: () => Promise.reject(new Error('WRONGPASS invalid password')) } }]
  ]
  for (const [what, answers] of cases) {
    await t.test(what, async (t) => {
      const { transport, sink, publisher, subscriber, resyncs } = setup(t, {}, answers)
      const err = await transport.start(sink).then(() => undefined, (err: unknown) => err as Error)
      if (err === undefined) return t.fail('start resolved')
      const reason = /: (.*)$/.exec(err.message)?.[1]
      t.equal(err.message, `the redis transport could not subscribe to "${CHANNEL}": ${String(reason)}`)
      t.match(reason, /ECONNREFUSED|NOPERM|WRONGPASS/)
      t.equal((err.cause as Error).message, reason, 'the cause is the failure itself')
      t.equal(subscriber().calls.at(-1), 'disconnect', 'the subscriber dropped, not reconnected')
      t.equal(publisher().calls.at(-1), 'disconnect', 'the publisher dropped, not reconnected')
      t.match(transport.status(), { state: 'connecting', lastError: reason, subscriptions: 0 })
      t.equal(resyncs(), 0)
    })
  }
})

t.test('re-established (ready): SUBSCRIBE again, then resync; counted and logged', async (t) => {
  const { transport, sink, subscriber, resyncs, logs } = setup(t)
  await transport.start(sink)
  subscriber().emit('close')
  subscriber().emit('ready')
  await turn()
  t.same(subscriber().calls, ['connect', `subscribe ${CHANNEL}`, `subscribe ${CHANNEL}`])
  t.equal(resyncs(), 2)
  t.match(transport.status(), { state: 'up', subscriptions: 2 })
  t.same(logs.at(-1), ['info', { channel: CHANNEL, subscriptions: 2 }, 'policy-cache: subscribed on Redis again; resyncing every cached tenant'])
})

t.test('a failed re-SUBSCRIBE is recorded and drops the connection for another try', async (t) => {
  const { transport, sink, subscriber, resyncs } = setup(t)
  await transport.start(sink)
  subscriber().emit('close')
  subscriber().answers.subscribe = () => Promise.reject(new Error('LOADING Redis is loading the dataset'))
  subscriber().emit('ready')
  await turn()
  t.equal(subscriber().calls.at(-1), 'disconnect(true)', 'dropped: ioredis reconnects')
  t.match(transport.status(), { state: 'down', lastError: 'LOADING Redis is loading the dataset', subscriptions: 1 })
  t.equal(resyncs(), 1, 'no resync without a subscription')
})

t.test('closing: a ready subscribes nothing; a re-SUBSCRIBE answered after close resyncs nothing', async (t) => {
  const { transport, sink, subscriber, resyncs } = setup(t)
  await transport.start(sink)
  const answered = deferred<unknown>()
  subscriber().answers.subscribe = () => answered.promise
  subscriber().emit('ready')
  t.equal(subscriber().count(`subscribe ${CHANNEL}`), 2)
  await transport.close()
  answered.resolve(1)
  await turn()
  t.match(transport.status(), { state: 'closed', subscriptions: 1 })
  t.equal(resyncs(), 1)

  subscriber().emit('ready')
  await turn()
  t.equal(subscriber().count(`subscribe ${CHANNEL}`), 2, 'no SUBSCRIBE after close')
})

t.test('publish: one signed envelope on the channel, from the publisher, counted; nobody acknowledges', async (t) => {
  const { transport, sink, publisher, subscriber } = setup(t, { publicUrl: 'http://node-1.internal:3000' })
  await transport.start(sink)
  t.same(await transport.publish([{ tenant: 't1', revision: 3 }]), { acked: 0, total: 0 })
  t.same(publisher().calls, ['connect', `publish ${CHANNEL}`])
  t.equal(subscriber().count(`publish ${CHANNEL}`), 0)
  t.equal(transport.status().published, 1)
  const opened = openEnvelope(keys, publisher().messages[0], Math.floor(Date.now() / 1000))
  if (opened.kind !== 'notice') return t.fail(`not a verified notice: ${opened.kind}`)
  t.match(opened.notice, { origin: 'node-1', database: 'db-1', url: 'http://node-1.internal:3000', entries: [{ tenant: 't1', revision: 3 }] })
})

t.test('publish: changes over maxPayloadBytes go out in several envelopes, one PUBLISH each, each counted', async (t) => {
  const { transport, sink, publisher } = setup(t, { maxPayloadBytes: 512 })
  await transport.start(sink)
  const changes = Array.from({ length: 12 }, (_, i) => ({ tenant: `tenant-with-a-longish-name-${i}`, revision: i + 1 }))
  t.same(await transport.publish(changes), { acked: 0, total: 0 })
  const sent = publisher().messages
  t.ok(sent.length > 1, 'split')
  t.ok(sent.every((message) => Buffer.byteLength(message) <= 512))
  t.equal(publisher().count(`publish ${CHANNEL}`), sent.length)
  t.equal(transport.status().published, sent.length)
})

t.test('a rejected PUBLISH is recorded and logged as a warning; publish still resolves', async (t) => {
  const { transport, sink, publisher, warnings } = setup(t)
  await transport.start(sink)
  const err = new Error('READONLY You can\'t write against a read only replica.')
  publisher().answers.publish = () => Promise.reject(err)
  t.same(await transport.publish([{ tenant: 't1', revision: 3 }]), { acked: 0, total: 0 })
  await turn()
  t.equal(transport.status().lastError, err.message)
  t.same(warnings(), [['warn', { err, channel: CHANNEL }, 'policy-cache: publishing a notice on Redis failed; the other instances catch up at their next resync or sync']])
  t.equal(transport.status().published, 1, 'counted: it was sent')
})

t.test('publish sends nothing before start and after close', async (t) => {
  const { transport, sink, clients, publisher } = setup(t)
  t.same(await transport.publish([{ tenant: 't1', revision: 3 }]), { acked: 0, total: 0 })
  t.equal(clients.length, 0)
  await transport.start(sink)
  await transport.close()
  t.same(await transport.publish([{ tenant: 't1', revision: 4 }]), { acked: 0, total: 0 })
  t.equal(publisher().count(`publish ${CHANNEL}`), 0)
  t.equal(transport.status().published, 0)
})

t.test('the probe: a PING on the subscriber every probeIntervalMs while it answers', async (t) => {
  mockTimers(t)
  const { transport, sink, publisher, subscriber } = setup(t)
  await transport.start(sink)
  mock.timers.tick(INTERVAL - 1)
  t.equal(subscriber().count('ping'), 0)
  mock.timers.tick(1)
  t.equal(subscriber().count('ping'), 1)
  await turn()
  mock.timers.tick(INTERVAL)
  t.equal(subscriber().count('ping'), 2)
  await turn()
  t.equal(publisher().count('ping'), 0)
  t.match(transport.status(), { state: 'up', lastError: null })
})

t.test('a PING unanswered within probeTimeoutMs: reported down, the subscriber dropped for a reconnect', async (t) => {
  mockTimers(t)
  const { transport, sink, subscriber, warnings } = setup(t, {}, { subscriber: { ping: hang } })
  await transport.start(sink)
  mock.timers.tick(INTERVAL)
  t.equal(subscriber().count('ping'), 1)
  mock.timers.tick(TIMEOUT - 1)
  await turn()
  t.equal(transport.status().state, 'up', 'not before the timeout')
  mock.timers.tick(1)
  await turn()
  const reason = `the probe of the subscriber connection: no answer within ${TIMEOUT} ms`
  t.match(transport.status(), { state: 'down', lastError: reason })
  t.same(warnings(), [['warn', { channel: CHANNEL, reason }, UNANSWERED]])
  t.equal(subscriber().calls.at(-1), 'disconnect(true)')
  mock.timers.tick(INTERVAL * 3)
  await turn()
  t.equal(subscriber().count('ping'), 1, 'not probed while down')
})

t.test('a PING that fails: reported down with its error, the subscriber dropped', async (t) => {
  mockTimers(t)
  const { transport, sink, subscriber } = setup(t, {}, { subscriber: { ping: () => Promise.reject(new Error('Connection is closed.')) } })
  await transport.start(sink)
  mock.timers.tick(INTERVAL)
  await turn()
  t.match(transport.status(), { state: 'down', lastError: 'Connection is closed.' })
  t.equal(subscriber().count('disconnect(true)'), 1)
})

t.test('a probe failing once the subscriber is down already does nothing more', async (t) => {
  mockTimers(t)
  const { transport, sink, subscriber, warnings } = setup(t, {}, { subscriber: { ping: hang } })
  await transport.start(sink)
  mock.timers.tick(INTERVAL)
  subscriber().emit('error', new Error('read ECONNRESET'))
  subscriber().emit('close')
  mock.timers.tick(TIMEOUT)
  await turn()
  t.same(warnings().map(([, , msg]) => msg), [LOST], 'one loss')
  t.equal(transport.status().lastError, 'read ECONNRESET')
  t.equal(subscriber().count('disconnect(true)'), 0, 'ioredis reconnects already')
})

t.test('a probe failing after close does nothing', async (t) => {
  mockTimers(t)
  const { transport, sink, subscriber, warnings } = setup(t, {}, { subscriber: { ping: hang } })
  await transport.start(sink)
  mock.timers.tick(INTERVAL)
  await transport.close()
  mock.timers.tick(TIMEOUT)
  await turn()
  t.match(transport.status(), { state: 'closed', lastError: null })
  t.same(warnings(), [])
  t.equal(subscriber().count('disconnect(true)'), 0)
})

t.test('a PING answered once the subscriber is down schedules no further probe', async (t) => {
  mockTimers(t)
  const pong = deferred<string>()
  const { transport, sink, subscriber } = setup(t, {}, { subscriber: { ping: () => pong.promise } })
  await transport.start(sink)
  mock.timers.tick(INTERVAL)
  subscriber().emit('close')
  pong.resolve('PONG')
  await turn()
  mock.timers.tick(INTERVAL * 3)
  await turn()
  t.equal(subscriber().count('ping'), 1)
})

t.test('close: quits, then disconnects, both clients; once', async (t) => {
  const { transport, publisher, subscriber } = setup(t)
  await transport.close()
  t.equal(transport.status().state, 'closed', 'before start too')

  const started = setup(t)
  await started.transport.start(started.sink)
  await started.transport.close()
  t.same(started.subscriber().calls, ['connect', `subscribe ${CHANNEL}`, 'quit', 'disconnect'])
  t.same(started.publisher().calls, ['connect', 'quit', 'disconnect'])
  t.equal(started.transport.status().state, 'closed')
  await started.transport.close()
  t.equal(started.subscriber().count('quit') + started.publisher().count('quit'), 2, 'not again')

  t.equal(publisher(), undefined, 'the first one made no client')
  t.equal(subscriber(), undefined)
})

t.test('close: a QUIT that hangs is given up after 1000 ms, one that fails at once; both disconnected', async (t) => {
  mockTimers(t)
  const { transport, sink, publisher, subscriber } = setup(t, {}, {
    subscriber: { quit: hang },
    publisher: { quit: () => Promise.reject(new Error('Connection is closed.')) }
  })
  await transport.start(sink)
  let closed = false
  const closing = transport.close().then(() => { closed = true })
  await turn()
  mock.timers.tick(999)
  await turn()
  t.equal(subscriber().count('disconnect'), 0, 'waiting for the QUIT')
  t.equal(publisher().count('quit'), 0, 'one client after the other')
  mock.timers.tick(1)
  await closing
  t.equal(closed, true)
  t.same(subscriber().calls.slice(-2), ['quit', 'disconnect'])
  t.same(publisher().calls.slice(-2), ['quit', 'disconnect'])
})
