/**
 * The nats transport (lib/broadcast/nats.ts) against a fake client: several transports share one
 * in-memory bus, so a write's acknowledgements are counted end to end without a server. What the
 * tests with a real server cannot pin down: the connection options, a first connection that fails,
 * which instances a write waits for and what `{ acked, total }` it answers, the presence probe and
 * leave, the state reported on status events and failed probes, and closing.
 */
import { EventEmitter, on } from 'node:events'
import { mock } from 'node:test'
import t, { type Test } from 'tap'
import { encodeEnvelopes, openSigned, seal } from '../../lib/broadcast/envelope.js'
import { NatsTransport, type NatsConnectionLike, type NatsTransportOptions } from '../../lib/broadcast/nats.js'
import type { NoticeChange, ReceivedNotice } from '../../lib/broadcast/notice.js'
import { parseSecret } from '../../lib/broadcast/signature.js'
import type { AckSummary } from '../../lib/broadcast/status.js'

// The transport's timers are unref()ed: something must keep the process alive meanwhile.
const alive = setInterval(() => {}, 1000)
t.teardown(() => clearInterval(alive))

type NatsModule = NonNullable<NatsTransportOptions['clientModule']>
type SubscribeOptions = Parameters<NatsConnectionLike['subscribe']>[1]
type Callback = SubscribeOptions['callback']
type StatusEvent = { type: string, server?: string }

const key = parseSecret('nats-client-test-secret-long-enough', 'test')
const stranger = parseSecret('a-key-no-instance-here-holds', 'test')
const SUBJECT = 'policy'
// Writes time out well within a probe interval: no probe runs while a test waits for a write.
const PROBE_INTERVAL = 10_000
const PROBE_TIMEOUT = 500
const ACK_TIMEOUT = 1000

const nowSeconds = (): number => Math.floor(Date.now() / 1000)

/** One message on the bus, as published. */
interface Sent {
  subject: string
  payload: string
  reply?: string | undefined
  from: FakeConnection
}

/** A message as a subscription receives it; `respond` publishes on its reply subject. */
class FakeMsg {
  readonly subject: string
  readonly reply: string | undefined
  readonly #payload: string
  readonly #to: FakeConnection
  constructor (sent: Sent, to: FakeConnection) {
    this.subject = sent.subject
    this.reply = sent.reply
    this.#payload = sent.payload
    this.#to = to
  }

  string (): string {
    return this.#payload
  }

  respond (payload: string): boolean {
    if (this.reply === undefined || this.reply === '') {
      this.#to.bus.respondedWithoutReply++
      return false
    }
    this.#to.publish(this.reply, payload)
    return true
  }
}

/** Whether a subscription on `pattern` (exact, or `<prefix>.*`) receives `subject`. */
function matches (pattern: string, subject: string): boolean {
  if (!pattern.endsWith('.*')) return pattern === subject
  const prefix = pattern.slice(0, -1)
  return subject.startsWith(prefix) && !subject.slice(prefix.length).includes('.')
}

/** The broker: every connection's subscriptions; messages delivered a microtask later, or dropped, or held. */
class Bus {
  readonly subscriptions = new Set<{ subject: string, connection: FakeConnection, callback: Callback }>()
  /** Messages never delivered to `to` (a subscription that does not deliver). */
  drop: (sent: Sent, to: FakeConnection) => boolean = () => false
  /** Messages kept until `release` (a slow instance). */
  hold: (sent: Sent, to: FakeConnection) => boolean = () => false
  readonly held: Array<{ sent: Sent, deliver: () => void }> = []
  /** `respond` on a message that has no reply subject. */
  respondedWithoutReply = 0
  #inboxes = 0

  send (sent: Sent): void {
    for (const { subject, connection, callback } of this.subscriptions) {
      if (!matches(subject, sent.subject) || this.drop(sent, connection)) continue
      const deliver = (): void => { callback(null, new FakeMsg(sent, connection)) }
      if (this.hold(sent, connection)) this.held.push({ sent, deliver })
      else queueMicrotask(deliver)
    }
  }

  /** Delivers the held messages `which` picks (all by default). */
  release (which: (sent: Sent) => boolean = () => true): void {
    for (const entry of [...this.held]) {
      if (!which(entry.sent)) continue
      this.held.splice(this.held.indexOf(entry), 1)
      queueMicrotask(entry.deliver)
    }
  }

  createInbox (): string {
    return `_INBOX.${++this.#inboxes}`
  }

  /** A connection of the test's own (to publish forged messages and listen). */
  connect (): FakeConnection {
    return new FakeConnection(this, undefined)
  }
}

/** A nats.js connection on the bus: records what it publishes; status events pushed by the test. */
class FakeConnection implements NatsConnectionLike {
  readonly bus: Bus
  readonly info: { max_payload: number } | undefined
  readonly published: Sent[] = []
  /** publish calls on the closed connection (nats.js throws CONNECTION_CLOSED). */
  publishedClosed = 0
  flushes = 0
  closes = 0
  /** What the next flush returns (else it resolves at once). */
  nextFlush: Promise<void> | undefined
  readonly #events = new EventEmitter()
  readonly #closed = new AbortController()

  constructor (bus: Bus, info: { max_payload: number } | undefined) {
    this.bus = bus
    this.info = info
  }

  publish (subject: string, payload: string, options?: { reply?: string }): void {
    if (this.isClosed()) {
      this.publishedClosed++
      throw new Error('CONNECTION_CLOSED')
    }
    const sent = { subject, payload, reply: options?.reply, from: this }
    this.published.push(sent)
    this.bus.send(sent)
  }

  subscribe (subject: string, options: SubscribeOptions): { unsubscribe: () => void } {
    const entry = { subject, connection: this, callback: options.callback }
    this.bus.subscriptions.add(entry)
    return { unsubscribe: () => { this.bus.subscriptions.delete(entry) } }
  }

  /** The subjects subscribed on this connection. */
  subscribed (): string[] {
    return [...this.bus.subscriptions].filter((s) => s.connection === this).map((s) => s.subject)
  }

  async flush (): Promise<void> {
    this.flushes++
    const next = this.nextFlush
    this.nextFlush = undefined
    await next
  }

  async * status (): AsyncIterable<StatusEvent> {
    try {
      for await (const [event] of on(this.#events, 'status', { signal: this.#closed.signal })) yield event as StatusEvent
    } catch (err) {
      if (!this.#closed.signal.aborted) throw err
    }
  }

  /** A status event, as nats.js reports it. */
  emit (event: StatusEvent): void {
    this.#events.emit('status', event)
  }

  /** The status stream fails. */
  failStatus (err: Error): void {
    this.#events.emit('error', err)
  }

  /** Every subscription's callback called with `err` (as nats.js does on a permissions violation). */
  error (err: Error): void {
    for (const s of [...this.bus.subscriptions]) {
      if (s.connection === this) s.callback(err, undefined as unknown as FakeMsg)
    }
  }

  async close (): Promise<void> {
    this.closes++
    for (const s of [...this.bus.subscriptions]) if (s.connection === this) this.bus.subscriptions.delete(s)
    this.#closed.abort()
  }

  isClosed (): boolean {
    return this.#closed.signal.aborted
  }
}

/** The client module over `bus`: records the options of each connect; `connectError` makes it reject. */
function fakeModule (bus: Bus, { connectError, info, connected }: { connectError?: Error, info?: { max_payload: number } | undefined, connected?: Promise<void> } = {}) {
  const connects: Array<Record<string, unknown>> = []
  const connections: FakeConnection[] = []
  const module: NatsModule = {
    connect: async (options) => {
      connects.push(options)
      if (connectError !== undefined) throw connectError
      await connected
      const connection = new FakeConnection(bus, info)
      connections.push(connection)
      return connection
    },
    createInbox: () => bus.createInbox()
  }
  return { module, connects, connections }
}

/** The sink: what was delivered, and the resyncs; `deliver` answers `revisions`. */
function recordingSink (revisions: Record<string, number | null> = {}) {
  const delivered: ReceivedNotice[] = []
  const sink = {
    resyncs: 0,
    delivered,
    deliver: async (notice: ReceivedNotice) => { delivered.push(notice); return revisions },
    hint: async () => {},
    resubscribed: async () => { sink.resyncs++ }
  }
  return sink
}

type Logs = Array<[string, object, string]>

function logger (logs: Logs) {
  const record = (level: string) => (obj: object, msg: string): void => { logs.push([level, obj, msg]) }
  return { debug: record('debug'), info: record('info'), warn: record('warn') }
}

type Overrides = Partial<NatsTransportOptions> & { info?: { max_payload: number }, revisions?: Record<string, number | null> }

/** The transport options of instance `serverId` on `module`. */
function options (serverId: string, module: NatsModule, logs: Logs, overrides: Partial<NatsTransportOptions> = {}): NatsTransportOptions {
  return {
    servers: ['nats://127.0.0.1:4222'],
    subject: SUBJECT,
    connection: {},
    serverId,
    databaseId: () => 'db1',
    publicUrl: `http://${serverId}.test`,
    keys: [key],
    ackTimeoutMs: ACK_TIMEOUT,
    probeIntervalMs: PROBE_INTERVAL,
    probeTimeoutMs: PROBE_TIMEOUT,
    maxPayloadBytes: 7900,
    log: logger(logs),
    clientModule: module,
    ...overrides
  }
}

/** A started instance on `bus`, closed at the end of the test. */
async function instance (t: Test, bus: Bus, serverId: string, overrides: Overrides = {}) {
  const { info = { max_payload: 1024 * 1024 }, revisions, ...rest } = overrides
  const fake = fakeModule(bus, { info })
  const logs: Logs = []
  const transport = new NatsTransport(options(serverId, fake.module, logs, rest))
  const sink = recordingSink(revisions)
  await promptly(transport.start(sink))
  t.teardown(() => transport.close())
  const connection = fake.connections[0]
  return { transport, connection, sink, logs, inbox: `${connection.subscribed()[0].slice(0, -2)}` }
}

/** Lets every message and callback under way run (the bus delivers in microtasks). */
async function settle (): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** Whether `promise` has settled once everything under way ran. */
async function isSettled (promise: Promise<unknown>): Promise<boolean> {
  let settled = false
  promise.then(() => { settled = true }, () => { settled = true })
  await settle()
  return settled
}

/** `promise`, which must settle without any timer firing; rejects when it is still pending. */
async function promptly<T> (promise: Promise<T>): Promise<T> {
  if (!await isSettled(promise)) throw new Error('still pending: it waits for something that does not come')
  return promise
}

/** `write` still waits (`why`) while its replies are held; once they are released it returns `summary`. */
async function waitsUntilReleased (t: Test, bus: Bus, write: Promise<AckSummary>, why: string, summary: AckSummary): Promise<void> {
  t.notOk(await isSettled(write), why)
  bus.release()
  t.same(await promptly(write), summary)
}

/** Advances the mocked clock, 50 ms at a time, letting what each step started run (as time would). */
async function tick (ms: number): Promise<void> {
  for (let left = ms; left > 0; left -= 50) {
    mock.timers.tick(Math.min(50, left))
    await settle()
  }
}

function fakeTime (t: Test): void {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.now() })
  t.teardown(() => mock.timers.reset())
}

const change = (tenant = 't1', revision = 2): NoticeChange => ({ tenant, revision })
const manyTenants = (n: number): NoticeChange[] => Array.from({ length: n }, (_, i) => change(`tenant-${i}`, i + 1))

/** The messages `connection` published on `subject`. */
const sentOn = (connection: FakeConnection, subject: string): Sent[] => connection.published.filter((m) => m.subject === subject)

/** The replies to `node`'s writes (not to its probes), from `from` when given. */
function writeReplies (node: { connection: FakeConnection, inbox: string }, from?: { connection: FakeConnection }) {
  return (sent: Sent, to: FakeConnection): boolean =>
    to === node.connection && sent.subject.startsWith(`${node.inbox}.`) && !sent.subject.startsWith(`${node.inbox}.p`) &&
    (from === undefined || sent.from === from.connection)
}

/** A rejected promise, handled already (what a failing flush returns). */
function rejected (message: string): Promise<void> {
  const promise = Promise.reject(new Error(message))
  promise.catch(() => {})
  return promise
}

/** A signed body from the test (a forged one when signed with `stranger`). */
const signed = (body: object, keys = [key]): string => seal(keys, JSON.stringify(body), nowSeconds())

t.test('connects with its name and ping settings, the given options, the servers, and reconnecting forever', async (t) => {
  const bus = new Bus()
  const fake = fakeModule(bus)
  const transport = new NatsTransport(options('a', fake.module, [], {
    servers: ['nats://one:4222', 'nats://two:4222'],
    probeIntervalMs: 2500,
    connection: { user: 'u', pass: 'p', reconnect: false, maxReconnectAttempts: 3, servers: ['nats://elsewhere:4222'] }
  }))
  await promptly(transport.start(recordingSink()))
  t.teardown(() => transport.close())
  t.same(fake.connects, [{
    name: 'policy-cache a',
    pingInterval: 2500,
    maxPingOut: 2,
    user: 'u',
    pass: 'p',
    servers: ['nats://one:4222', 'nats://two:4222'],
    reconnect: true,
    maxReconnectAttempts: -1
  }])

  const other = fakeModule(bus)
  const overridden = new NatsTransport(options('b', other.module, [], { connection: { name: 'mine', pingInterval: 10, maxPingOut: 5 } }))
  await promptly(overridden.start(recordingSink()))
  t.teardown(() => overridden.close())
  t.match(other.connects[0], { name: 'mine', pingInterval: 10, maxPingOut: 5 }, 'the name and ping settings can be given')
})

t.test('a first connection that fails rejects start, naming the servers, with the cause', async (t) => {
  const refused = new Error('connection refused')
  const fake = fakeModule(new Bus(), { connectError: refused })
  const sink = recordingSink()
  const transport = new NatsTransport(options('a', fake.module, [], { servers: ['nats://one:4222', 'nats://two:4222'] }))
  const err = await transport.start(sink).then(() => undefined, (err: unknown) => err as Error)
  t.equal(err?.message, 'the nats transport could not connect to nats://one:4222, nats://two:4222: connection refused')
  t.equal(err?.cause, refused)
  t.match(transport.status(), { state: 'connecting', subscriptions: 0, lastError: 'connection refused' })
  t.equal(sink.resyncs, 0)
  await transport.close()
  t.equal(transport.status().state, 'closed', 'closing a transport that never connected')
})

t.test('start subscribes to its replies, the subject and presence, resyncs once, and probes at once', async (t) => {
  const bus = new Bus()
  const fake = fakeModule(bus)
  const logs: Logs = []
  const transport = new NatsTransport(options('a', fake.module, logs))
  t.same(await transport.publish([change()]), { acked: 0, total: 0 }, 'a write before start sends nothing')
  const sink = recordingSink()
  await promptly(transport.start(sink))
  t.teardown(() => transport.close())
  const [connection] = fake.connections
  t.same(connection.subscribed(), ['_INBOX.1.*', SUBJECT, `${SUBJECT}.presence`])
  t.equal(connection.flushes, 1)
  t.equal(sink.resyncs, 1)
  t.match(transport.status(), {
    type: 'nats',
    state: 'up',
    acknowledged: true,
    channel: SUBJECT,
    subscribedAt: String,
    subscriptions: 1,
    lastError: null,
    published: 0,
    received: 0,
    hints: 0,
    dropped: 0
  })
  t.same(transport.peers(), [])
  t.equal(transport.type, 'nats')
  const [probe] = connection.published
  t.equal(probe.subject, `${SUBJECT}.presence`)
  t.equal(probe.reply, '_INBOX.1.p1')
  t.same(openSigned([key], probe.payload, nowSeconds()), { presence: 'a', answer: true }, 'the first probe asks every instance to answer')
  t.same(logs.filter(([level]) => level !== 'debug'), [], 'nothing logged')
})

t.test('an error handed to a subscription\'s callback is ignored', async (t) => {
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  const before = a.transport.status()
  const sent = a.connection.published.length
  t.doesNotThrow(() => { a.connection.error(new Error('permissions violation')) })
  await settle()
  t.same(a.transport.status(), before)
  t.equal(a.connection.published.length, sent, 'nothing answered')
})

t.test('a notice is applied and answered, signed, with the revisions the sink returns', async (t) => {
  const bus = new Bus()
  const b = await instance(t, bus, 'b', { revisions: { t1: 7, t2: null } })
  const test = bus.connect()
  const answers: unknown[] = []
  test.subscribe('test.reply', { callback: (_err, msg) => { answers.push(openSigned([key], msg.string(), nowSeconds())) } })
  const [envelope] = encodeEnvelopes([key], { origin: 'x', database: 'db1' }, [change('t1', 7), change('t2', 1)], 7900, nowSeconds())
  test.publish(SUBJECT, envelope, { reply: 'test.reply' })
  await settle()
  t.same(answers, [{ serverId: 'b', revisions: { t1: 7, t2: null } }])
  t.match(b.sink.delivered, [{ origin: 'x', database: 'db1' }])
  t.match(b.transport.status(), { received: 1, dropped: 0 })

  const [unsigned] = encodeEnvelopes([stranger], { origin: 'x' }, [change()], 7900, nowSeconds())
  test.publish(SUBJECT, unsigned, { reply: 'test.reply' })
  await settle()
  t.equal(answers.length, 1, 'an unverifiable one is not answered')
  t.match(b.transport.status(), { received: 1, hints: 1 })
})

t.test('a write waits for every instance seen, and returns as soon as each answered', async (t) => {
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  const b = await instance(t, bus, 'b')
  const c = await instance(t, bus, 'c')
  bus.hold = writeReplies(a)
  const write = a.transport.publish([change('t1', 5)])
  await settle()
  t.equal(bus.held.length, 2, 'b and c answered')
  t.notOk(await isSettled(write), 'waiting for both')
  bus.release((sent) => sent.from === b.connection)
  await waitsUntilReleased(t, bus, write, 'still waiting for c', { acked: 2, total: 2 })

  const [sent] = sentOn(a.connection, SUBJECT)
  t.equal(sent.reply, `${a.inbox}.2`, 'after the first probe\'s')
  t.match(b.sink.delivered, [{ origin: 'a', database: 'db1', url: 'http://a.test', entries: [{ tenant: 't1', revision: 5 }] }])
  t.equal(c.sink.delivered.length, 1)
  t.equal(a.transport.status().published, 1)
  t.same(await promptly(b.transport.publish([change()])), { acked: 2, total: 2 }, 'b knows a (its probe was answered) and c (c probed)')
})

t.test('a notice split into several envelopes is acknowledged once all of them are answered', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const small = { maxPayloadBytes: 600 }
  const a = await instance(t, bus, 'a', small)
  const b = await instance(t, bus, 'b')
  const c = await instance(t, bus, 'c')
  let envelopes = 0
  // b does not receive the second envelope.
  bus.drop = (sent, to) => to === b.connection && sent.subject === SUBJECT && ++envelopes === 2
  bus.hold = writeReplies(a, c)
  const write = a.transport.publish(manyTenants(30))
  await settle()
  const sent = sentOn(a.connection, SUBJECT)
  t.ok(sent.length > 2, 'split')
  t.ok(sent.every((m) => Buffer.byteLength(m.payload) <= 600))
  t.equal(a.transport.status().published, sent.length)
  t.equal(b.sink.delivered.length, sent.length - 1)
  const last = bus.held.at(-1)?.sent
  bus.release((m) => m !== last)
  t.notOk(await isSettled(write), 'c answered all but one')
  bus.release()
  t.notOk(await isSettled(write), 'b answered all but one')
  await tick(ACK_TIMEOUT)
  t.same(await promptly(write), { acked: 1, total: 2 })

  // The server's max_payload also splits.
  const d = await instance(t, bus, 'd', { info: { max_payload: 600 } })
  bus.drop = () => false
  bus.hold = () => false
  t.same(await promptly(d.transport.publish(manyTenants(30))), { acked: 3, total: 3 }, 'every envelope answered by everyone')
  const split = sentOn(d.connection, SUBJECT)
  t.ok(split.length > 2)
  t.ok(split.every((m) => Buffer.byteLength(m.payload) <= 600))
})

t.test('a connection that does not report its max_payload: the option is the limit', async (t) => {
  const bus = new Bus()
  const fake = fakeModule(bus, { info: undefined })
  const transport = new NatsTransport(options('a', fake.module, [], { maxPayloadBytes: 600 }))
  await promptly(transport.start(recordingSink()))
  t.teardown(() => transport.close())
  t.same(await promptly(transport.publish(manyTenants(30))), { acked: 0, total: 0 })
  t.ok(sentOn(fake.connections[0], SUBJECT).length > 2)
})

t.test('with nobody to wait for, or ackTimeoutMs 0, a write returns at once', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 0 }, 'alone')
  t.equal(sentOn(a.connection, SUBJECT).length, 1, 'sent all the same')

  const quick = await instance(t, bus, 'quick', { ackTimeoutMs: 0 })
  await instance(t, bus, 'c')
  t.same(await promptly(quick.transport.publish([change()])), { acked: 0, total: 2 }, 'counted, not waited for')
})

t.test('an instance that missed a write is counted but not waited for, until it answers again', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  const b = await instance(t, bus, 'b')
  const c = await instance(t, bus, 'c')
  bus.drop = (sent, to) => to === c.connection && sent.subject === SUBJECT
  const first = a.transport.publish([change('t1', 2)])
  t.notOk(await isSettled(first), 'waits for c')
  await tick(ACK_TIMEOUT)
  t.same(await promptly(first), { acked: 1, total: 2 })
  t.same(await promptly(a.transport.publish([change('t1', 3)])), { acked: 1, total: 2 }, 'c not waited for, still counted')

  // c receives again; its reply to a write it is not waited for does not end the wait for b.
  bus.drop = () => false
  bus.hold = writeReplies(a, b)
  const third = a.transport.publish([change('t1', 4)])
  t.notOk(await isSettled(third), 'c answered, b is held')
  bus.release()
  t.same(await promptly(third), { acked: 2, total: 2 }, 'c answered: acknowledged')

  // Having answered, c is waited for again.
  bus.hold = writeReplies(a, c)
  const fourth = a.transport.publish([change('t1', 5)])
  await waitsUntilReleased(t, bus, fourth, 'waits for c again', { acked: 2, total: 2 })
  bus.hold = () => false

  // A late reply (after the write gave up) is harmless, and counts as seeing c.
  bus.drop = (sent, to) => to === c.connection && sent.subject === SUBJECT
  const fifth = a.transport.publish([change('t1', 6)])
  await tick(ACK_TIMEOUT)
  t.same(await promptly(fifth), { acked: 1, total: 2 })
  // c answers a's next probe: seen, waited for again.
  bus.drop = () => false
  await tick(PROBE_INTERVAL)
  bus.hold = writeReplies(a, c)
  const sixth = a.transport.publish([change('t1', 7)])
  await waitsUntilReleased(t, bus, sixth, 'the probe\'s answer made c one to wait for', { acked: 2, total: 2 })
})

t.test('replies that are unsigned, without a serverId, or this instance\'s own are not counted', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  const b = await instance(t, bus, 'b')
  bus.hold = writeReplies(a, b)
  const write = a.transport.publish([change()])
  await settle()
  const reply = sentOn(a.connection, SUBJECT)[0].reply ?? ''
  const test = bus.connect()
  test.publish(reply, signed({ serverId: 'b', revisions: {} }, [stranger]))
  test.publish(reply, 'not an envelope')
  test.publish(reply, signed({ serverId: 5, revisions: {} }))
  test.publish(reply, signed({ serverId: 'a', revisions: {} }))
  t.notOk(await isSettled(write), 'still waiting for b')
  await tick(ACK_TIMEOUT)
  t.same(await promptly(write), { acked: 0, total: 1 })

  // b's late answer: b is waited for again. A signed reply naming another instance is its answer: counted.
  bus.release()
  await settle()
  const next = a.transport.publish([change('t1', 3)])
  test.publish(sentOn(a.connection, SUBJECT)[1].reply ?? '', signed({ serverId: 'z', revisions: {} }))
  await waitsUntilReleased(t, bus, next, 'z is not waited for: it does not end the wait for b', { acked: 2, total: 2 })
})

t.test('with members, a write waits for the members but this one, and counts no one else that does not answer', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const a = await instance(t, bus, 'a', { members: () => ['a', 'b', 'x', 'y'] })
  await instance(t, bus, 'b')
  const c = await instance(t, bus, 'c')
  bus.drop = (sent, to) => to === c.connection && sent.subject === SUBJECT
  const write = a.transport.publish([change()])
  t.notOk(await isSettled(write), 'waits for x and y, members not on the subject')
  await tick(ACK_TIMEOUT)
  t.same(await promptly(write), { acked: 1, total: 3 }, 'c, seen but not a member, is not counted')
  const again = a.transport.publish([change('t1', 3)])
  t.notOk(await isSettled(again), 'a member that missed a write is waited for all the same')
  await tick(ACK_TIMEOUT)
  t.same(await promptly(again), { acked: 1, total: 3 })

  bus.drop = () => false
  const answered = a.transport.publish([change('t1', 4)])
  await tick(ACK_TIMEOUT)
  t.same(await promptly(answered), { acked: 2, total: 4 }, 'c answered: counted, though not waited for')
})

t.test('an instance not seen for three probe intervals is forgotten; one that leaves at once', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const a = await instance(t, bus, 'a', { ackTimeoutMs: 0 })
  const b = await instance(t, bus, 'b')
  const c = await instance(t, bus, 'c')
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 2 })

  // b crashes: its connection is gone, it sends no leave.
  await b.connection.close()
  for (let i = 0; i < 3; i++) await tick(PROBE_INTERVAL)
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 2 }, 'b last seen three intervals ago: still counted')
  await tick(1)
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 1 }, 'b forgotten')

  // A forged leave is ignored; c's own leave is not.
  bus.connect().publish(`${SUBJECT}.presence`, signed({ leave: 'c' }, [stranger]))
  await settle()
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 1 })
  await c.transport.close()
  await settle()
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 0 })
})

t.test('a presence probe asking for answers is answered, signed, when it has a reply subject; an unsigned one is ignored', async (t) => {
  const bus = new Bus()
  const a = await instance(t, bus, 'a', { ackTimeoutMs: 0 })
  const test = bus.connect()
  const answers: unknown[] = []
  test.subscribe('test.reply', { callback: (_err, msg) => { answers.push(openSigned([key], msg.string(), nowSeconds())) } })
  const presence = `${SUBJECT}.presence`
  test.publish(presence, signed({ presence: 'z', answer: true }), { reply: 'test.reply' })
  await settle()
  t.same(answers, [{ serverId: 'a', revisions: {} }])
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 1 }, 'z is seen')

  test.publish(presence, signed({ presence: 'x' }), { reply: 'test.reply' })
  test.publish(presence, signed({ presence: 'v', answer: 'yes' }), { reply: 'test.reply' })
  test.publish(presence, signed({ presence: 'y', answer: true }))
  test.publish(presence, signed({ presence: 'w' }, [stranger]), { reply: 'test.reply' })
  test.publish(presence, signed({ presence: 5 }), { reply: 'test.reply' })
  test.publish(presence, 'not an envelope', { reply: 'test.reply' })
  await settle()
  t.equal(answers.length, 1, 'nothing else answered')
  t.equal(bus.respondedWithoutReply, 0, 'not even tried without a reply subject')
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 4 }, 'x, v and y are seen, though not answered; w and 5 are not')
})

t.test('periodic probes are answered by the prober alone; the others still hear of it from its probes', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const nodes = [await instance(t, bus, 'a', { ackTimeoutMs: 0 }), await instance(t, bus, 'b', { ackTimeoutMs: 0 })]
  const [a, b] = nodes
  /** Who answered `node`'s probes, in order. */
  const answeredBy = (node: typeof a): string[] => nodes.flatMap((n) => n.connection.published)
    .filter((sent) => sent.subject.startsWith(`${node.inbox}.p`))
    .map((sent) => (openSigned([key], sent.payload, nowSeconds()) as { serverId: string }).serverId)
  t.same(answeredBy(a), ['a'], 'a\'s first probe, alone on the bus')
  t.same(answeredBy(b).sort(), ['a', 'b'], 'b\'s first probe asked: every instance answered')
  for (let i = 1; i <= 4; i++) {
    await tick(PROBE_INTERVAL)
    t.same(answeredBy(a), ['a', ...Array(i).fill('a')], `a's probe ${i + 1} answered by a alone`)
    t.same(answeredBy(b).length, 2 + i, `b's probe ${i + 1} answered by b alone`)
    t.equal(answeredBy(b).at(-1), 'b')
  }
  t.match(a.transport.status(), { state: 'up' }, 'the round trip of a\'s own probes goes on')
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 1 }, 'four probe intervals on, b is still counted by a')
  t.same(await promptly(b.transport.publish([change()])), { acked: 0, total: 1 }, 'and a by b')
})

t.test('status events: a disconnect is down; a reconnect flushes and resyncs; a failing stream is logged', async (t) => {
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  a.connection.emit({ type: 'pingTimer' })
  await settle()
  t.match(a.transport.status(), { state: 'up', lastError: null })

  a.connection.emit({ type: 'disconnect', server: 'nats://one:4222' })
  await settle()
  t.match(a.transport.status(), { state: 'down', subscriptions: 1, lastError: 'disconnected from nats://one:4222' })
  t.same(a.logs.filter(([level]) => level !== 'debug'), [
    ['warn', { subject: SUBJECT, reason: 'disconnected from nats://one:4222' }, 'policy-cache: the NATS connection was lost; nats.js reconnects']
  ])

  a.connection.nextFlush = rejected('flush failed')
  a.connection.emit({ type: 'reconnect' })
  await settle()
  t.equal(a.connection.flushes, 2)
  t.equal(a.sink.resyncs, 2, 'resynced, though the flush failed')
  t.match(a.transport.status(), { state: 'up', subscriptions: 2 })
  t.same(a.logs.at(-1), ['info', { subject: SUBJECT, subscriptions: 2 }, 'policy-cache: subscribed on NATS again; resyncing every cached tenant'])

  a.connection.failStatus(new Error('iterator broke'))
  await settle()
  t.match(a.logs.at(-1), ['warn', { err: { message: 'iterator broke' } }, 'policy-cache: following the NATS connection\'s status failed'])
})

t.test('status events while closing change nothing', async (t) => {
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  let flushed = (): void => {}
  a.connection.nextFlush = new Promise((resolve) => { flushed = resolve })
  a.connection.emit({ type: 'reconnect' })
  await settle()
  t.equal(a.connection.flushes, 2, 'the reconnect\'s flush is under way')
  const closing = a.transport.close()
  flushed()
  a.connection.emit({ type: 'disconnect', server: 'nats://one:4222' })
  await promptly(closing)
  t.match(a.transport.status(), { state: 'closed', subscriptions: 1, lastError: null })
  t.equal(a.sink.resyncs, 1, 'no resync once closing')
})

t.test('the probe: unanswered while up is down; answered again, one resync', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  bus.drop = (sent, to) => to === a.connection && sent.subject === `${SUBJECT}.presence`
  await tick(PROBE_INTERVAL)
  const probe = a.connection.published.at(-1)
  t.equal(probe?.reply, `${a.inbox}.p2`)
  // Another reply of this instance's own does not answer the probe.
  bus.connect().publish(`${a.inbox}.p1`, signed({ serverId: 'a', revisions: {} }))
  await tick(PROBE_TIMEOUT - 1)
  t.match(a.transport.status(), { state: 'up' })
  await tick(1)
  t.match(a.transport.status(), { state: 'down', subscriptions: 1, lastError: `the presence probe was not answered within ${PROBE_TIMEOUT} ms` })
  t.same(a.logs.at(-1), ['warn', { subject: SUBJECT, reason: `the presence probe was not answered within ${PROBE_TIMEOUT} ms` }, 'policy-cache: the NATS subscription did not deliver the presence probe; resyncing once it does'])

  await tick(PROBE_INTERVAL)
  t.match(a.transport.status(), { state: 'down', subscriptions: 1 }, 'unanswered again: still down, no resync')
  await tick(PROBE_TIMEOUT)

  bus.drop = () => false
  await tick(PROBE_INTERVAL)
  t.match(a.transport.status(), { state: 'up', subscriptions: 2 })
  t.equal(a.sink.resyncs, 2)
  await tick(PROBE_INTERVAL)
  t.match(a.transport.status(), { state: 'up', subscriptions: 2 }, 'answered while up: nothing to do')
  t.equal(a.sink.resyncs, 2)
})

t.test('the probe neither overwrites nor ends a disconnect', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  a.connection.emit({ type: 'disconnect', server: 'nats://one:4222' })
  await settle()
  bus.drop = (sent, to) => to === a.connection && sent.subject === `${SUBJECT}.presence`
  await tick(PROBE_INTERVAL)
  await tick(PROBE_TIMEOUT)
  t.match(a.transport.status(), { state: 'down', lastError: 'disconnected from nats://one:4222' }, 'unanswered')
  bus.drop = () => false
  await tick(PROBE_INTERVAL)
  t.match(a.transport.status(), { state: 'down', subscriptions: 1, lastError: 'disconnected from nats://one:4222' }, 'answered: the reconnect resyncs, not the probe')
  t.equal(a.sink.resyncs, 1)
})

t.test('close: says it leaves, ends pending writes at once, closes once; nothing is sent after', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  await instance(t, bus, 'b')
  await instance(t, bus, 'c')
  bus.hold = writeReplies(a)
  const write = a.transport.publish([change()])
  t.notOk(await isSettled(write))
  const sent = a.connection.published.length
  await promptly(a.transport.close())
  t.same(await promptly(write), { acked: 0, total: 2 }, 'ended, counting who was expected')
  const leave = a.connection.published.slice(sent)
  t.equal(leave.length, 1)
  t.equal(leave[0].subject, `${SUBJECT}.presence`)
  t.equal(leave[0].reply, undefined)
  t.same(openSigned([key], leave[0].payload, nowSeconds()), { leave: 'a' })
  t.equal(a.connection.closes, 1)
  t.equal(a.transport.status().state, 'closed')

  await promptly(a.transport.close())
  t.equal(a.connection.closes, 1, 'once')
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 0 })
  await tick(10 * PROBE_INTERVAL)
  t.equal(a.connection.published.length, sent + 1, 'nothing after the leave')
  t.equal(a.connection.publishedClosed, 0)
})

t.test('close waits at most 500 ms for the leave to be flushed; a failing flush or close is no failure', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  a.connection.nextFlush = new Promise(() => {})
  const closing = a.transport.close()
  const sent = a.connection.published.length
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 0 }, 'no write while closing')
  t.equal(a.connection.published.length, sent)
  await tick(499)
  t.notOk(await isSettled(closing))
  await tick(1)
  await promptly(closing)
  t.equal(a.connection.closes, 1)

  const b = await instance(t, bus, 'b')
  b.connection.nextFlush = rejected('flush failed')
  b.connection.close = async () => { b.connection.closes++; throw new Error('close failed') }
  await promptly(b.transport.close())
  t.equal(b.connection.closes, 1)
})

t.test('a connection closed under it: no probe, no write, no leave is sent on it', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const a = await instance(t, bus, 'a')
  await instance(t, bus, 'b')
  await a.connection.close()
  await tick(PROBE_INTERVAL)
  t.same(await promptly(a.transport.publish([change()])), { acked: 0, total: 0 })
  await promptly(a.transport.close())
  t.equal(a.connection.publishedClosed, 0)
  t.equal(a.connection.closes, 1, 'not closed again')
})

t.test('closed while starting: start sends no probe and schedules none', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  const fake = fakeModule(bus)
  const transport = new NatsTransport(options('a', fake.module, []))
  let resynced = (): void => {}
  const sink = { ...recordingSink(), resubscribed: () => new Promise<void>((resolve) => { resynced = resolve }) }
  const starting = transport.start(sink)
  await settle()
  const [connection] = fake.connections
  connection.nextFlush = new Promise(() => {})
  const closing = transport.close()
  const sent = connection.published.length
  t.equal(sent, 1, 'the leave')
  resynced()
  await promptly(starting)
  await tick(2 * PROBE_INTERVAL)
  await promptly(closing)
  t.equal(connection.published.length, sent, 'no probe')
  t.equal(transport.status().state, 'closed')
})

t.test('closed while connecting: the connection, once made, is closed and nothing is subscribed or sent', async (t) => {
  fakeTime(t)
  const bus = new Bus()
  let connect = (): void => {}
  const fake = fakeModule(bus, { connected: new Promise<void>((resolve) => { connect = resolve }) })
  const transport = new NatsTransport(options('a', fake.module, []))
  const sink = recordingSink()
  const starting = transport.start(sink)
  await settle()
  await promptly(transport.close())
  connect()
  await promptly(starting)
  const [connection] = fake.connections
  t.equal(connection.closes, 1, 'closed: it would keep the process alive')
  t.same(connection.published, [], 'no probe, no leave')
  t.equal(sink.resyncs, 0)
  t.equal(transport.status().state, 'closed')
})
