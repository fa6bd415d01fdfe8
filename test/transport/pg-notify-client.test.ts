/**
 * PgNotifyTransport against a fake `pg` module (no server): the client's configuration; the first
 * LISTEN, failing or not; notifications into the inbox; a lost connection (error, end, a failing or
 * silent probe) reported down and re-established with full-jitter backoff — delays pinned with a
 * mocked `Math.random` and `mock.timers`; a discarded connection's late events ignored; a
 * subscription completing after `close`; `publish` and `inTransaction`; `close` and its bounded wait.
 */
import { EventEmitter } from 'node:events'
import { mock } from 'node:test'
import t, { type Test } from 'tap'
import { encodeEnvelopes, openEnvelope } from '../../lib/broadcast/envelope.js'
import type { ReceivedNotice } from '../../lib/broadcast/notice.js'
import { PgNotifyTransport, type ListenClient, type PgNotification, type PgNotifyTransportOptions } from '../../lib/broadcast/pg-notify.js'
import { parseSecret } from '../../lib/broadcast/signature.js'
import type { TransportSink } from '../../lib/broadcast/transport.js'

// The transport's timers are unref()ed: something must keep the process alive meanwhile.
const alive = setInterval(() => {}, 1000)
t.teardown(() => clearInterval(alive))

const key = parseSecret('pg-notify-client-test-secret-long-enough', 'test')
const stranger = parseSecret('a-key-this-instance-does-not-hold', 'test')
const CHANNEL = 'pc_chan'
const LISTEN = `LISTEN "${CHANNEL}"`
const LOST = 'policy-cache: the pg-notify listening connection was lost; re-establishing it'
const RETRYING = 'policy-cache: re-establishing the pg-notify listening connection failed; retrying'
const AGAIN = 'policy-cache: listening on the pg-notify channel again; resyncing every cached tenant'

/** How one call of the fake client answers: at once, never, with an error, or as a function says. */
type Step = 'ok' | 'hang' | Error | (() => Promise<unknown>)

/** How a fake client answers `connect`, `LISTEN`, `select 1` and `end`, and what socket it has. */
interface Plan {
  connect: Step
  listen: Step
  probe: Step
  end: Step
  /** `full`: connection.stream.destroy exists; the others leave out a part of that path. */
  socket: 'full' | 'no-connection' | 'no-stream' | 'no-destroy'
}

function answer (step: Step): Promise<unknown> {
  if (step === 'ok') return Promise.resolve()
  if (step === 'hang') return new Promise(() => {})
  if (step instanceof Error) return Promise.reject(step)
  return step()
}

/** One `pg` Client: records its config, queries, ends and socket destroys; emits what a test makes it emit. */
class FakeClient extends EventEmitter implements ListenClient {
  readonly queries: string[] = []
  ended = 0
  destroyed = 0
  connected = false
  readonly connection: { stream?: { destroy?: () => void } } | undefined

  constructor (readonly config: Record<string, unknown>, readonly plan: Plan) {
    super()
    const destroy = (): void => { this.destroyed++ }
    this.connection = plan.socket === 'no-connection'
      ? undefined
      : plan.socket === 'no-stream' ? {} : plan.socket === 'no-destroy' ? { stream: {} } : { stream: { destroy } }
  }

  async connect (): Promise<unknown> {
    await answer(this.plan.connect)
    this.connected = true
    return this
  }

  async query (text: string): Promise<unknown> {
    this.queries.push(text)
    return await answer(text === 'select 1' ? this.plan.probe : this.plan.listen)
  }

  async end (): Promise<void> {
    this.ended++
    await answer(this.plan.end)
  }

  notify (payload: string | undefined): void {
    const message: PgNotification = { channel: CHANNEL, payload, processId: 1 }
    this.emit('notification', message)
  }
}

/** A fake `pg` module: `plans` answer the next clients in turn, `defaults` the rest; `clients` in order of creation. */
function fakePg () {
  const clients: FakeClient[] = []
  const plans: Array<Partial<Plan>> = []
  const defaults: Plan = { connect: 'ok', listen: 'ok', probe: 'ok', end: 'ok', socket: 'full' }
  const module: NonNullable<PgNotifyTransportOptions['clientModule']> = {
    Client: class extends FakeClient {
      constructor (config: Record<string, unknown>) {
        super(config, { ...defaults, ...plans.shift() })
        clients.push(this)
      }
    }
  }
  return { module, clients, plans, defaults, last: (): FakeClient => clients[clients.length - 1] }
}

type Logged = [level: string, obj: object, msg: string]

function setup (overrides: Partial<PgNotifyTransportOptions> = {}) {
  const pg = fakePg()
  const logs: Logged[] = []
  const record = (level: string) => (obj: object, msg: string): void => { logs.push([level, obj, msg]) }
  const transport = new PgNotifyTransport({
    connection: 'postgres://listen@db/test',
    channel: CHANNEL,
    serverId: 'solo',
    databaseId: () => 'db-1',
    publicUrl: 'http://solo.test',
    keys: [key],
    probeIntervalMs: 1000,
    probeTimeoutMs: 200,
    reconnect: { minDelayMs: 100, maxDelayMs: 1000 },
    maxPayloadBytes: 7900,
    log: { debug: record('debug'), info: record('info'), warn: record('warn') },
    clientModule: pg.module,
    ...overrides
  })
  const sink = {
    delivered: [] as ReceivedNotice[],
    hinted: [] as Array<ReadonlyArray<{ tenant: string, revision: number }>>,
    resyncs: 0,
    deliver: async (notice: ReceivedNotice) => { sink.delivered.push(notice); return {} },
    hint: async (tenants: ReadonlyArray<{ tenant: string, revision: number }>) => { sink.hinted.push(tenants) },
    resubscribed: async () => { sink.resyncs++ }
  } satisfies TransportSink & Record<string, unknown>
  const of = (level: string): Logged[] => logs.filter(([l]) => l === level)
  return { transport, pg, logs, of, sink }
}

/** Lets every pending promise chain run (setImmediate is not mocked). */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** mock.timers on setTimeout (and clearTimeout) and Math.random pinned to `random`, for this test. */
function pinTime (t: Test, random: number): void {
  mock.timers.enable({ apis: ['setTimeout'] })
  const pinned = mock.method(Math, 'random', () => random)
  t.teardown(() => {
    pinned.mock.restore()
    mock.timers.reset()
  })
}

/** Advances the clock by `ms` and lets what it started run. */
async function tick (ms: number): Promise<void> {
  mock.timers.tick(ms)
  await flush()
  await flush()
}

/** After a loss: a second client, subscribed minDelayMs (100 ms, random pinned at 0) later; then closed. */
async function reestablished (t: Test, transport: PgNotifyTransport, pg: ReturnType<typeof setup>['pg']): Promise<void> {
  await tick(100)
  t.equal(pg.clients.length, 2, 'a second client')
  t.equal(transport.status().state, 'up', 'subscribed again')
  await transport.close()
}

/** A promise the test settles. */
function deferred (): { promise: Promise<unknown>, resolve: () => void, reject: (err: Error) => void } {
  let settle = { resolve: (): void => {}, reject: (_err: Error): void => {} }
  const promise = new Promise<unknown>((resolve, reject) => { settle = { resolve: () => resolve(undefined), reject } })
  return { promise, resolve: () => settle.resolve(), reject: (err) => settle.reject(err) }
}

t.test('the client config: a named session, keepAlive and a connect timeout, which given options override', async (t) => {
  const plain = setup()
  await plain.transport.start(plain.sink)
  t.same(plain.pg.last().config, {
    application_name: 'policy-cache listen solo',
    keepAlive: true,
    connectionTimeoutMillis: 5000,
    connectionString: 'postgres://listen@db/test'
  }, 'a connection string becomes { connectionString }')
  await plain.transport.close()

  const long = setup({ serverId: 'x'.repeat(100) })
  await long.transport.start(long.sink)
  t.equal(long.pg.last().config.application_name, `policy-cache listen ${'x'.repeat(100)}`.slice(0, 63), 'cut to PostgreSQL\'s 63 characters')
  t.equal((long.pg.last().config.application_name as string).length, 63)
  await long.transport.close()

  const given = { host: 'db', application_name: 'mine', keepAlive: false, connectionTimeoutMillis: 250 }
  const custom = setup({ connection: given })
  await custom.transport.start(custom.sink)
  t.same(custom.pg.last().config, given, 'a configuration object overrides the defaults')
  t.not(custom.pg.last().config, given, 'a copy')
  await custom.transport.close()
})

t.test('start: connects, LISTENs on the quoted channel, reports up and resyncs once', async (t) => {
  const { transport, pg, sink, logs } = setup()
  t.equal(transport.type, 'pg-notify')
  t.same(transport.status(), { type: 'pg-notify', state: 'connecting', acknowledged: false, channel: CHANNEL, subscribedAt: null, subscriptions: 0, lastError: null, published: 0, received: 0, hints: 0, dropped: 0 })
  await transport.start(sink)
  t.equal(pg.clients.length, 1)
  t.equal(pg.last().connected, true)
  t.same(pg.last().queries, [LISTEN], 'exactly LISTEN "<channel>"')
  t.match(transport.status(), { state: 'up', subscriptions: 1, lastError: null, subscribedAt: String })
  t.equal(sink.resyncs, 1)
  t.same(logs, [], 'the first subscription is not logged')
  await transport.close()
})

t.test('a notification goes through the inbox: verified to deliver, unverifiable to hint, garbage dropped', async (t) => {
  const { transport, pg, sink } = setup()
  await transport.start(sink)
  const now = Math.floor(Date.now() / 1000)
  pg.last().notify(encodeEnvelopes([key], { origin: 'peer' }, [{ tenant: 't1', revision: 2 }], 7900, now)[0])
  pg.last().notify(encodeEnvelopes([stranger], { origin: 'forger' }, [{ tenant: 't2', revision: 3 }], 7900, now)[0])
  pg.last().notify(undefined)
  await flush()
  t.equal(sink.delivered.length, 1)
  t.equal(sink.delivered[0].origin, 'peer')
  t.same(sink.hinted, [[{ tenant: 't2', revision: 3 }]])
  t.match(transport.status(), { received: 1, hints: 1, dropped: 1 })
  await transport.close()
})

t.test('a first connect that fails rejects start with the reason and cause; the client is discarded, nothing retried', async (t) => {
  pinTime(t, 0)
  const { transport, pg, sink } = setup()
  const refused = new Error('connection refused')
  pg.plans.push({ connect: refused })
  const err = await transport.start(sink).then(() => undefined, (e: unknown) => e as Error)
  t.equal(err?.message, `the pg-notify transport could not LISTEN on "${CHANNEL}": connection refused`)
  t.equal(err?.cause, refused)
  t.match(transport.status(), { state: 'connecting', lastError: 'connection refused', subscriptions: 0 })
  t.equal(pg.last().ended, 1, 'ended')
  t.equal(pg.last().destroyed, 1, 'its socket destroyed')
  t.same(pg.last().queries, [], 'no LISTEN without a connection')
  await tick(10000)
  t.equal(pg.clients.length, 1, 'start does not retry: registration fails')
  t.equal(sink.resyncs, 0)
  await transport.close()
})

t.test('a failing LISTEN rejects start; an error the client emits meanwhile is that attempt\'s, not a loss', async (t) => {
  pinTime(t, 0)
  const { transport, pg, sink, of } = setup()
  const listening = deferred()
  pg.plans.push({ listen: () => listening.promise })
  const starting = transport.start(sink).then(() => undefined, (e: unknown) => e as Error)
  await flush()
  t.same(pg.last().queries, [LISTEN])
  pg.last().emit('error', new Error('socket reset'))
  pg.last().emit('end')
  listening.reject(new Error('permission denied'))
  const err = await starting
  t.equal(err?.message, `the pg-notify transport could not LISTEN on "${CHANNEL}": permission denied`)
  t.match(transport.status(), { state: 'connecting', lastError: 'permission denied' })
  t.same(of('warn'), [], 'no loss logged')
  t.equal(pg.last().ended, 1)
  await tick(10000)
  t.equal(pg.clients.length, 1, 'no reconnection scheduled')
  await transport.close()
})

t.test('an error on the subscribed connection: down with the reason, discarded, re-established after minDelayMs', async (t) => {
  pinTime(t, 0)
  const { transport, pg, sink, of } = setup()
  await transport.start(sink)
  const first = pg.last()
  first.emit('error', new Error('socket reset'))
  t.match(transport.status(), { state: 'down', lastError: 'socket reset', subscriptions: 1 })
  t.same(of('warn'), [['warn', { channel: CHANNEL, reason: 'socket reset' }, LOST]])
  await flush()
  t.equal(first.ended, 1, 'ended')
  t.equal(first.destroyed, 1, 'its socket destroyed')

  first.emit('error', new Error('again'))
  first.emit('end')
  t.equal(transport.status().lastError, 'socket reset', 'the discarded connection\'s late events change nothing')
  t.equal(of('warn').length, 1)

  await tick(99)
  t.equal(pg.clients.length, 1, 'not before minDelayMs (random = 0)')
  await tick(1)
  t.equal(pg.clients.length, 2, 'one new connection')
  t.same(pg.last().queries, [LISTEN])
  t.match(transport.status(), { state: 'up', subscriptions: 2, lastError: 'socket reset' })
  t.equal(sink.resyncs, 2, 'the resubscription resyncs')
  t.same(of('info'), [['info', { channel: CHANNEL, subscriptions: 2 }, AGAIN]])

  first.emit('error', new Error('late'))
  await tick(10000)
  t.equal(pg.clients.length, 2, 'a discarded connection\'s late error schedules nothing')
  t.equal(transport.status().state, 'up')
  await transport.close()
})

t.test('the connection ending is a loss too', async (t) => {
  pinTime(t, 0)
  const { transport, pg, sink } = setup()
  await transport.start(sink)
  pg.last().emit('end')
  t.match(transport.status(), { state: 'down', lastError: 'the listening connection ended' })
  await reestablished(t, transport, pg)
})

t.test('backoff: full jitter under min(maxDelayMs, minDelayMs * 2^attempt), at least minDelayMs; failures logged and retried', async (t) => {
  pinTime(t, 0.999)
  const { transport, pg, sink, of } = setup()
  await transport.start(sink)
  pg.defaults.connect = new Error('refused')
  pg.last().emit('error', new Error('socket reset'))

  /** The next attempt comes after `ms` (rounded up), not a millisecond before. */
  const attemptAfter = async (ms: number, label: string): Promise<void> => {
    const before = pg.clients.length
    await tick(ms - 1)
    t.equal(pg.clients.length, before, `${label}: not yet`)
    await tick(1)
    t.equal(pg.clients.length, before + 1, `${label}: after ${ms} ms`)
  }
  // 0.999 × the cap: 100 (the floor), 199.8, 399.6, 799.2, then 999 (capped at maxDelayMs) for good.
  await attemptAfter(100, 'first')
  t.same(of('debug'), [['debug', { channel: CHANNEL, reason: 'refused', attempt: 1 }, RETRYING]])
  t.match(transport.status(), { state: 'down', lastError: 'refused' })
  await attemptAfter(200, 'second')
  await attemptAfter(400, 'third')
  await attemptAfter(800, 'fourth')
  await attemptAfter(999, 'fifth')
  await attemptAfter(999, 'sixth')
  t.same(of('debug').map(([, obj]) => (obj as { attempt: number }).attempt), [1, 2, 3, 4, 5, 6])
  t.ok(pg.clients.slice(1).every((client) => client.ended === 1 && client.destroyed === 1), 'every failed attempt discarded')

  // Back: the exponent starts over.
  pg.defaults.connect = 'ok'
  await attemptAfter(999, 'seventh')
  t.equal(transport.status().state, 'up')
  t.equal(transport.status().subscriptions, 2)
  pg.last().emit('error', new Error('reset again'))
  await attemptAfter(100, 'after a success')
  t.equal(transport.status().state, 'up')
  await transport.close()
})

t.test('the probe: select 1 every probeIntervalMs while it answers', async (t) => {
  pinTime(t, 0)
  const { transport, pg, sink } = setup()
  await transport.start(sink)
  const client = pg.last()
  await tick(999)
  t.same(client.queries, [LISTEN], 'not before probeIntervalMs')
  await tick(1)
  t.same(client.queries, [LISTEN, 'select 1'])
  await tick(1000)
  t.same(client.queries, [LISTEN, 'select 1', 'select 1'], 'again')
  t.equal(transport.status().state, 'up')
  await transport.close()
  await tick(5000)
  t.equal(client.queries.length, 3, 'not after close')
})

t.test('a failing probe: lost, and re-established', async (t) => {
  pinTime(t, 0)
  const { transport, pg, sink, of } = setup()
  pg.plans.push({ probe: new Error('terminating connection') })
  await transport.start(sink)
  const first = pg.last()
  await tick(1000)
  t.match(transport.status(), { state: 'down', lastError: 'terminating connection' })
  t.same(of('warn'), [['warn', { channel: CHANNEL, reason: 'terminating connection' }, LOST]])
  t.equal(first.ended, 1)
  await reestablished(t, transport, pg)
})

t.test('a probe unanswered within probeTimeoutMs: lost, and re-established', async (t) => {
  pinTime(t, 0)
  const { transport, pg, sink } = setup()
  pg.plans.push({ probe: 'hang' })
  await transport.start(sink)
  await tick(1000)
  await tick(199)
  t.equal(transport.status().state, 'up', 'not before probeTimeoutMs')
  await tick(1)
  t.match(transport.status(), { state: 'down', lastError: 'the probe of the listening connection: no answer within 200 ms' })
  await reestablished(t, transport, pg)
})

t.test('a lost connection is probed no more: its pending probe is stopped, an answer under way schedules none', async (t) => {
  pinTime(t, 0)
  const { transport, pg, sink } = setup({ reconnect: { minDelayMs: 5000, maxDelayMs: 5000 } })
  await transport.start(sink)
  const first = pg.last()
  first.emit('error', new Error('socket reset'))
  await tick(3000)
  t.same(first.queries, [LISTEN], 'its pending probe was stopped')
  await tick(2000)
  t.equal(pg.clients.length, 2)

  // The second connection's probe is under way when it is lost; its answer comes afterwards.
  const second = pg.last()
  const answering = deferred()
  second.plan.probe = () => answering.promise
  await tick(1000)
  t.same(second.queries, [LISTEN, 'select 1'])
  second.emit('end')
  answering.resolve()
  await flush()
  await tick(3000)
  t.same(second.queries, [LISTEN, 'select 1'], 'not probed again')
  t.equal(pg.clients.length, 2)
  await transport.close()
})

t.test('a subscription completing after close: the client is discarded, not kept', async (t) => {
  const { transport, pg, sink } = setup()
  const connecting = deferred()
  pg.plans.push({ connect: () => connecting.promise })
  const starting = transport.start(sink)
  await flush()
  await transport.close()
  connecting.resolve()
  await starting
  t.same(pg.last().queries, [LISTEN])
  t.equal(pg.last().ended, 1, 'ended')
  t.equal(pg.last().destroyed, 1)
  t.match(transport.status(), { state: 'closed', subscriptions: 0, subscribedAt: null })
  t.equal(sink.resyncs, 0)
})

t.test('close while a reconnection waits: no attempt afterwards', async (t) => {
  pinTime(t, 0)
  const { transport, pg, sink } = setup()
  await transport.start(sink)
  pg.last().emit('error', new Error('socket reset'))
  await transport.close()
  t.equal(transport.status().state, 'closed')
  await tick(10000)
  t.equal(pg.clients.length, 1, 'the reconnect timer was cleared')
})

t.test('close during a reconnection attempt that then fails: neither recorded nor logged, none scheduled after it', async (t) => {
  pinTime(t, 0)
  const { transport, pg, sink, of } = setup()
  await transport.start(sink)
  const connecting = deferred()
  pg.plans.push({ connect: () => connecting.promise })
  pg.last().emit('error', new Error('socket reset'))
  await tick(100)
  t.equal(pg.clients.length, 2, 'an attempt under way')
  await transport.close()
  connecting.reject(new Error('refused'))
  await flush()
  t.equal(of('debug').length, 0, 'its failure not logged')
  t.match(transport.status(), { state: 'closed', lastError: 'socket reset' }, 'nor recorded')
  await tick(10000)
  t.equal(pg.clients.length, 2, 'no attempt after close')
})

t.test('close: idempotent; ends the client and destroys its socket', async (t) => {
  const { transport, pg, sink } = setup()
  await transport.start(sink)
  await transport.close()
  await transport.close()
  t.equal(pg.last().ended, 1, 'once')
  t.equal(pg.last().destroyed, 1)
  t.equal(transport.status().state, 'closed')
  pg.last().emit('error', new Error('late'))
  t.equal(transport.status().state, 'closed', 'a late error after close changes nothing')
})

t.test('close waits at most 1000 ms for an end() that hangs; an end() that rejects is ignored', async (t) => {
  pinTime(t, 0)
  const hanging = setup()
  hanging.pg.plans.push({ end: 'hang' })
  await hanging.transport.start(hanging.sink)
  let closed = false
  const closing = hanging.transport.close().then(() => { closed = true })
  await tick(999)
  t.equal(closed, false, 'still waiting')
  t.equal(hanging.pg.last().destroyed, 1, 'the socket is destroyed at once')
  await tick(1)
  await closing
  t.equal(closed, true)

  const failing = setup()
  failing.pg.plans.push({ end: new Error('already ended') })
  await failing.transport.start(failing.sink)
  await failing.transport.close()
  t.equal(failing.pg.last().ended, 1)
})

t.test('close with a client that has no socket to destroy', async (t) => {
  for (const socket of ['no-connection', 'no-stream', 'no-destroy'] as const) {
    const { transport, pg, sink } = setup()
    pg.plans.push({ socket })
    await transport.start(sink)
    await transport.close()
    t.equal(pg.last().ended, 1, socket)
  }
})

t.test('publish counts and answers no acknowledgements; no peers', async (t) => {
  const { transport } = setup()
  t.same(await transport.publish([{ tenant: 't1', revision: 1 }]), { acked: 0, total: 0 })
  t.same(await transport.publish([{ tenant: 't1', revision: 2 }]), { acked: 0, total: 0 })
  t.equal(transport.status().published, 2)
  t.same(transport.peers(), [])
})

t.test('inTransaction: pg_notify of each signed envelope on the channel, split when over maxPayloadBytes', async (t) => {
  const notified: Array<[string, string]> = []
  const tx = { notify: async (channel: string, payload: string) => { notified.push([channel, payload]) } }
  const one = setup()
  await one.transport.inTransaction(tx, [{ tenant: 't1', revision: 4 }])
  t.equal(notified.length, 1)
  t.equal(notified[0][0], CHANNEL)
  const opened = openEnvelope([key], notified[0][1], Math.floor(Date.now() / 1000))
  t.match(opened, { kind: 'notice', notice: { origin: 'solo', database: 'db-1', url: 'http://solo.test', entries: [{ tenant: 't1', revision: 4 }] } }, 'signed, timestamped now, from this instance')

  notified.length = 0
  const split = setup({ maxPayloadBytes: 600 })
  const changes = Array.from({ length: 40 }, (_, i) => ({ tenant: `tenant-${i}`, revision: i + 1 }))
  await split.transport.inTransaction(tx, changes)
  t.ok(notified.length > 1, `split into ${notified.length}`)
  t.ok(notified.every(([channel, payload]) => channel === CHANNEL && Buffer.byteLength(payload) <= 600))
  const tenants = notified.flatMap(([, payload]) => {
    const envelope = openEnvelope([key], payload, Math.floor(Date.now() / 1000))
    return envelope.kind === 'notice' ? envelope.notice.entries.map((entry) => entry.tenant) : []
  })
  t.same(tenants, changes.map((change) => change.tenant), 'every tenant, in order')
})
