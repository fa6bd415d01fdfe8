/**
 * PgNotifyTransport on its own, against the real PostgreSQL, its listening connection through a TCP
 * proxy the test can silence or cut: status before start; a first LISTEN that fails rejects `start`;
 * `close` during the first connect; a silent connection noticed by the probe (no error event ever
 * comes), failed re-attempts retried with backoff, the subscription back with a resync — a failing
 * resync logged, not thrown.
 */
import t from 'tap'
import { PgNotifyTransport, type PgNotifyLogger } from '../../lib/broadcast/pg-notify.js'
import type { TransportSink } from '../../lib/broadcast/transport.js'
import { parseSecret } from '../../lib/broadcast/signature.js'
import { freePort } from '../helpers/cluster.js'
import { POSTGRES_URL, postgresDb, unreachable, withPort } from '../helpers/databases.js'
import { startProxy } from '../helpers/proxy.js'

const key = parseSecret('connection-test-secret-long-enough', 'test')

/** A logger that records messages; `next(text)` resolves at the next message containing `text`. */
function recorder (): PgNotifyLogger & { messages: string[], next: (text: string) => Promise<void> } {
  const messages: string[] = []
  let waiters: Array<[string, () => void]> = []
  const record = (_obj: object, msg: string): void => {
    messages.push(msg)
    const ready = waiters.filter(([text]) => msg.includes(text))
    waiters = waiters.filter(([text]) => !msg.includes(text))
    for (const [, resolve] of ready) resolve()
  }
  return {
    messages,
    debug: record,
    info: record,
    warn: record,
    next: (text) => new Promise((resolve) => { waiters.push([text, resolve]) })
  }
}

function transport (connection: string | Record<string, unknown>, log: PgNotifyLogger, overrides: Partial<ConstructorParameters<typeof PgNotifyTransport>[0]> = {}): PgNotifyTransport {
  return new PgNotifyTransport({
    connection,
    channel: `pc_test_${process.pid}_notify`,
    serverId: 'solo',
    databaseId: () => undefined,
    keys: [key],
    probeIntervalMs: 5000,
    probeTimeoutMs: 2000,
    reconnect: { minDelayMs: 20, maxDelayMs: 50 },
    maxPayloadBytes: 7900,
    log,
    ...overrides
  })
}

function sink (resubscribed: () => Promise<void> = async () => {}): TransportSink & { subscribed: number } {
  const result = {
    subscribed: 0,
    deliver: async () => ({}),
    hint: async () => {},
    resubscribed: async () => { result.subscribed++; await resubscribed() }
  }
  return result
}

const admin = await postgresDb()
if (admin === undefined) {
  unreachable(t, 'PostgreSQL', POSTGRES_URL)
} else {
  await admin.destroy()

  t.test('before start: connecting, nothing counted; publish answers no acknowledgements', async (t) => {
    const pg = transport(POSTGRES_URL, recorder())
    t.match(pg.status(), { type: 'pg-notify', state: 'connecting', acknowledged: false, subscriptions: 0, received: 0, hints: 0, dropped: 0, published: 0, subscribedAt: null })
    t.same(await pg.publish([{ tenant: 't1', revision: 1 }]), { acked: 0, total: 0 })
    t.equal(pg.status().published, 1)
    t.same(pg.peers(), [])
    await pg.close()
    await pg.close()
    t.equal(pg.status().state, 'closed')
  })

  t.test('a first LISTEN that fails rejects start, with the cause', async (t) => {
    const pg = transport(withPort(POSTGRES_URL, await freePort()), recorder())
    t.teardown(() => pg.close())
    const err = await pg.start(sink()).then(() => undefined, (e: unknown) => e as Error)
    t.match(err?.message, /^the pg-notify transport could not LISTEN on "pc_test_\d+_notify": /)
    t.ok(err?.cause, 'the driver\'s error as cause')
    t.type(pg.status().lastError, 'string')
  })

  t.test('closed during its first connect: start resolves, nothing stays open', async (t) => {
    const pg = transport(POSTGRES_URL, recorder())
    const subscriber = sink()
    const starting = pg.start(subscriber)
    await pg.close()
    await starting
    t.equal(pg.status().state, 'closed')
    t.equal(pg.status().subscriptions, 0)
    t.equal(subscriber.subscribed, 0, 'no resync for a subscription that was closed at once')
  })

  t.test('a silent connection is noticed by the probe, re-attempts are retried, the subscription comes back with a resync', async (t) => {
    const proxy = await startProxy(t, Number(new URL(POSTGRES_URL).port))
    const log = recorder()
    const pg = transport({ connectionString: withPort(POSTGRES_URL, Number(new URL(proxy.url).port)), connectionTimeoutMillis: 500 }, log,
      { probeIntervalMs: 50, probeTimeoutMs: 200 })
    t.teardown(() => pg.close())
    let failResync = false
    const subscriber = sink(async () => { if (failResync) throw new Error('the database is busy') })
    await pg.start(subscriber)
    t.equal(pg.status().state, 'up')
    t.equal(subscriber.subscribed, 1, 'the first subscription resyncs too')

    // Nothing gets through any more, and no error event comes: only the probe can tell.
    const lost = log.next('listening connection was lost')
    proxy.hold(true)
    await lost
    t.equal(pg.status().state, 'down')
    t.match(pg.status().lastError, /probe of the listening connection: no answer within 200 ms/)

    // New connections are refused: each attempt fails and is retried.
    const retried = log.next('failed; retrying')
    proxy.setUp(false)
    await retried
    t.equal(pg.status().state, 'down')

    failResync = true
    const resyncFailed = log.next('resync after subscribing failed')
    proxy.hold(false)
    proxy.setUp(true)
    await resyncFailed
    t.equal(pg.status().state, 'up')
    t.equal(pg.status().subscriptions, 2)
    t.equal(subscriber.subscribed, 2, 'the resubscription asked for a resync')
    t.ok(log.messages.some((msg) => msg.includes('listening on the pg-notify channel again')))
  })
}
