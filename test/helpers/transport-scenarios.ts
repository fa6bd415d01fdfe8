/**
 * Scenarios every broker transport (pg-notify, nats, redis) passes, written once and run by each
 * transport's test file over its own instances (test/helpers/pg-notify.ts, test/helpers/brokers.ts).
 */
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { ENVELOPE_VERSION } from '../../lib/broadcast/envelope.js'
import { encodeNotice } from '../../lib/broadcast/notice.js'
import type { TransportStatus } from '../../lib/broadcast/transport.js'
import type { PolicyStore } from '../../lib/store/types.js'
import { until } from '../membership/suite.js'

/** One in-process instance on a broker transport, the periodic sync off. */
export interface TransportNode {
  app: FastifyInstance
  serverId: string
  /** Its transport's status, as `/servers` shows it. */
  transport (): Promise<TransportStatus>
}

/** What {@link reconnectUnderLoad} runs on. */
export interface ReconnectCase {
  /** Three instances on the transport, the periodic sync off (`syncIntervalMs: 0`). */
  nodes: TransportNode[]
  /** A store of its own on the instances' database: a writer outside the plugin, whose writes send no notice. */
  outside: PolicyStore
  /** Cuts every instance's subscription (the broker stopped, or the listening connections cut); resolves once done. */
  cut (): Promise<void>
  /** Makes the broker or the listening connections reachable again. */
  restore (): Promise<void>
}

/**
 * The broker, or every listening connection, cut mid-load and restored (issue 11, "Faults"). Two of
 * the instances write all along — before the cut, while it lasts, after the resubscribe — and every
 * write that returns must have committed: no write fails, every one is in the database, every
 * instance allows every user written. While the subscriptions are down, a writer outside the plugin
 * changes another cached tenant: no notice ever names that change, and the periodic sync is off, so
 * every instance that shows it was brought there by the resync of its resubscribe — the convergence
 * comes from the resubscribe, not from a sync interval, without timing anything.
 */
export async function reconnectUnderLoad (t: Test, { nodes, outside, cut, restore }: ReconnectCase): Promise<void> {
  const [a, b, c] = nodes
  for (const tenant of ['t1', 't2']) {
    await a.app.policyCache.createGroup(tenant, 'readers')
    await a.app.policyCache.addPermission(tenant, 'readers', 'documents:read')
  }
  const at = async (node: TransportNode, tenant: string): Promise<number> => await node.app.policyCache.revision(tenant)
  for (const node of nodes) {
    await until(`${node.serverId} caches both tenants at revision 2`, async () => {
      await node.app.policyCache.warm(['t1', 't2'])
      return await at(node, 't1') === 2 && await at(node, 't2') === 2
    })
  }

  // The load: a and c write in turn, paced, until stopped; what a write returned as changed is committed.
  const committed: string[] = []
  const failures: string[] = []
  const running = { stopped: false }
  const load = (async () => {
    for (let n = 0; !running.stopped; n++) {
      const user = `load${n}`
      try {
        if ((await (n % 2 === 0 ? a : c).app.policyCache.assignUser('t1', 'readers', user)).changed) committed.push(user)
      } catch (err) {
        failures.push(`${user}: ${(err as Error).message}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  })()
  const more = async (what: string, count: number): Promise<number> => {
    const target = committed.length + count
    await until(what, () => committed.length >= target)
    return committed.length
  }
  try {
    await more('writes commit before the cut', 3)

    await cut()
    for (const node of nodes) await until(`${node.serverId} noticed the loss`, async () => (await node.transport()).state === 'down')
    t.equal((await b.app.inject({ url: '/health' })).json().status, 'degraded', '/health is degraded while the subscription is down')
    // A change in another tenant that no notice will ever name: only a resync of every cached tenant finds it.
    await outside.write('t2', { op: 'assign-user', group: 'readers', user: 'silent' }, 'outside')
    const before = committed.length
    const during = await more('writes keep committing while it is down', 3)
    t.ok(during - before >= 3, `${during - before} writes committed while the subscriptions were down`)

    await restore()
    for (const node of nodes) {
      await until(`${node.serverId} subscribed again`, async () => { const s = await node.transport(); return s.state === 'up' && s.subscriptions >= 2 }, 15000)
    }
    await more('writes commit after the resubscribe', 2)
  } finally {
    running.stopped = true
    await load
  }
  t.same(failures, [], 'no write failed')

  const t1 = (await outside.revisions(['t1'])).get('t1')?.revision
  const t2 = (await outside.revisions(['t2'])).get('t2')?.revision
  t.equal(t1, 2 + committed.length, `every one of the ${committed.length} committed writes is in the database`)
  t.equal(t2, 3)
  for (const node of nodes) {
    // A bound, not a measurement: with the sync off, nothing but the resync can end this wait for t2.
    await until(`${node.serverId} converged`, async () => await at(node, 't1') === t1 && await at(node, 't2') === t2, 10000)
    t.equal(node.app.policyCache.checkSync('t2', 'silent', 'documents:read'), true, `${node.serverId} resynced: it holds the change no notice named`)
    t.same(committed.filter((user) => !node.app.policyCache.checkSync('t1', user, 'documents:read')), [], `${node.serverId} allows every committed user`)
  }
  t.equal((await b.app.inject({ url: '/health' })).json().status, 'ok', '/health is ok again')
}

/** What the scenarios below need to know of a transport. */
export interface TransportKind {
  type: TransportStatus['type']
  /** Whether a write waits for the others' replies (nats): then it is visible there when it returns. */
  acknowledged: boolean
}

/** `check` holds on `node`: at once when the write was acknowledged, else once the notice arrived. */
async function visible (kind: TransportKind, what: string, check: () => boolean | undefined): Promise<void> {
  if (kind.acknowledged) {
    if (check() !== true) throw new Error(`not visible when the write returned: ${what}`)
  } else {
    await until(what, check)
  }
}

/**
 * Three instances: a write on one is visible on the others through the transport alone (the sync is
 * off), applied from the change the notice carries; acknowledged by both (nats) or not at all; one
 * message per effective write, each instance dropping its own; /health and /servers report the
 * transport. Resolves with the writer's status.
 */
export async function propagation (t: Test, kind: TransportKind, [a, b, c]: TransportNode[]): Promise<TransportStatus> {
  await a.app.policyCache.createGroup('t1', 'readers')
  await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
  // Cached on the receivers before the write they are to notice.
  await b.app.policyCache.warm(['t1'])
  await c.app.policyCache.warm(['t1'])
  const before = b.app.policyCache.stats().carriedCatchUps

  const written = await a.app.policyCache.assignUser('t1', 'readers', 'alice')
  t.same(written.peers, kind.acknowledged ? { acked: 2, total: 2 } : { acked: 0, total: 0 }, kind.acknowledged ? 'both other instances answered' : 'no acknowledgements')
  t.equal(written.revision, 3)
  for (const node of [b, c]) {
    await visible(kind, `${node.serverId} allows alice`, () => node.app.policyCache.checkSync('t1', 'alice', 'documents:read'))
    t.equal(await node.app.policyCache.revision('t1'), 3, `${node.serverId} is at the write's revision`)
  }
  t.ok(b.app.policyCache.stats().carriedCatchUps > before, 'applied from the carried change, without a changelog read')

  const writer = await a.transport()
  t.match(writer, { type: kind.type, state: 'up', acknowledged: kind.acknowledged, published: 3 }, 'one message per effective write')
  await until('the writer dropped its own messages', async () => (await a.transport()).dropped >= 3)
  const receiver = await until('b counted the notices', async () => { const s = await b.transport(); return s.received >= 3 && s })
  t.equal(receiver.hints, 0, 'every notice verified')

  const health = (await b.app.inject({ url: '/health' })).json()
  t.same(health.transport, { type: kind.type, state: 'up' })
  t.equal(health.status, 'ok')
  t.same((await b.app.inject({ url: '/servers' })).json().peers, [], 'no per-peer delivery state')
  return writer
}

/** One instance: a write that changes nothing sends nothing. */
export async function unchangedSendsNothing (t: Test, a: TransportNode): Promise<void> {
  await a.app.policyCache.createGroup('t1', 'g')
  t.equal((await a.app.policyCache.createGroup('t1', 'g')).changed, false)
  t.equal((await a.transport()).published, 1)
}

/** A forged message's origin, tenant and change, sealed with a made-up signature. */
export function forgedEnvelope (): string {
  const body = encodeNotice('n1', [{ tenant: 't1', revision: 3, operation: 'assign-user', group: 'admins', user: 'mallory' }])
  return ['swv1', 'msg_forged', String(Math.floor(Date.now() / 1000)), 'v1,' + Buffer.alloc(32).toString('base64'), body].join('\n')
}

/** What the forged-message scenarios publish with: any user of the database or broker can. */
export interface Forger {
  /** Puts `raw` on the channel, as one message. */
  publish (raw: string): Promise<void>
}

/**
 * Two instances: a forged message (a plausible envelope claiming revision 3 assigns mallory, with a
 * made-up signature) applies nothing it carries; it only makes the receiver read the changelog — so a
 * change really committed without a notice (`outside`) is picked up, and the forged one is not.
 */
export async function forgedIsAHint (t: Test, [a, b]: TransportNode[], outside: PolicyStore, forger: Forger): Promise<void> {
  await a.app.policyCache.createGroup('t1', 'admins')
  await a.app.policyCache.addPermission('t1', 'admins', '*')
  await until('b is at revision 2', async () => { await b.app.policyCache.warm(['t1']); return await b.app.policyCache.revision('t1') === 2 })
  // Both notices handled (the counter moves once the engine is done with one).
  const receivedBefore = (await until('b handled both notices', async () => { const s = await b.transport(); return s.received === 2 && s })).received

  await outside.write('t1', { op: 'assign-user', group: 'admins', user: 'bob' }, 'outside')
  t.equal(b.app.policyCache.checkSync('t1', 'bob', 'x:y'), false, 'b has not seen the silent write')
  await forger.publish(forgedEnvelope())

  const status = await until('b handled the forged message as a hint', async () => { const s = await b.transport(); return s.hints >= 1 && s })
  t.equal(status.received, receivedBefore, 'not counted as a notice')
  t.equal(b.app.policyCache.checkSync('t1', 'mallory', 'x:y'), false, 'the forged change is not applied')
  t.equal(b.app.policyCache.checkSync('t1', 'bob', 'x:y'), true, 'the changelog was read: the real revision 3 is applied')
  t.equal(await b.app.policyCache.revision('t1'), 3)
}

/**
 * Two instances, `wire` recording the channel: a genuine envelope whose body was changed (the same
 * id, timestamp and signature; revision 4 assigning mallory) is only a hint; a garbage message is
 * dropped; the genuine envelope replayed is verified, but its id was handled already: dropped.
 */
export async function tamperedIsAHint (t: Test, [a, b]: TransportNode[], forger: Forger, wire: { payloads: string[] }): Promise<void> {
  await a.app.policyCache.createGroup('t1', 'readers')
  await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
  await b.app.policyCache.warm(['t1'])
  await a.app.policyCache.assignUser('t1', 'readers', 'alice')
  const genuine = await until('the test saw the third message', () => wire.payloads[2])
  await until('b allows alice', () => b.app.policyCache.checkSync('t1', 'alice', 'documents:read'))

  const tampered = genuine.replace('"user":"alice"', '"user":"mallory"').replace('"revision":3', '"revision":4')
  t.not(tampered, genuine)
  await forger.publish(tampered)
  await forger.publish('not an envelope')
  const status = await until('b handled both', async () => { const s = await b.transport(); return s.hints >= 1 && s.dropped >= 1 && s })
  t.equal(status.hints, 1)
  t.equal(b.app.policyCache.checkSync('t1', 'mallory', 'documents:read'), false, 'the tampered change is not applied')
  t.equal(await b.app.policyCache.revision('t1'), 3, 'the revision stays what the database says')

  await forger.publish(genuine)
  await until('b dropped the replay', async () => (await b.transport()).dropped >= 2)
  await until('b handled the three genuine notices', async () => (await b.transport()).received === 3)
  t.equal((await b.transport()).received, 3, 'the replay was not handled again')
}

/**
 * Two instances on a 512-byte `maxPayloadBytes`, `wire` recording the channel: a write with
 * 128-character ids does not fit whole, so its notice goes out with tenant + revision only, still
 * signed; the receiver reads the changelog instead of applying a carried change.
 */
export async function largeNoticeIsAHint (t: Test, kind: TransportKind, [a, b]: TransportNode[], wire: { payloads: string[] }): Promise<void> {
  const tenant = 'T'.repeat(128)
  const group = 'G'.repeat(128)
  const user = 'U'.repeat(128)
  await a.app.policyCache.createGroup(tenant, group)
  await a.app.policyCache.addPermission(tenant, group, 'documents:read')
  await until('b is at revision 2', async () => { await b.app.policyCache.warm([tenant]); return await b.app.policyCache.revision(tenant) === 2 })
  await until('b handled both notices', async () => (await b.transport()).received === 2)
  const { carriedCatchUps, deltaCatchUps } = b.app.policyCache.stats()

  const written = await a.app.policyCache.assignUser(tenant, group, user)
  t.same(written.peers, kind.acknowledged ? { acked: 1, total: 1 } : { acked: 0, total: 0 })
  await visible(kind, 'b allows the user', () => b.app.policyCache.checkSync(tenant, user, 'documents:read'))
  t.equal(b.app.policyCache.stats().carriedCatchUps, carriedCatchUps, 'nothing carried')
  t.equal(b.app.policyCache.stats().deltaCatchUps, deltaCatchUps + 1, 'read from the changelog')

  const sent = await until('the test saw the third message', () => wire.payloads[2])
  t.ok(Buffer.byteLength(sent) <= 512, `within the limit (${Buffer.byteLength(sent)} bytes)`)
  const lines = sent.split('\n')
  t.equal(lines[0], ENVELOPE_VERSION)
  t.match(lines[3], /^v1,/, 'signed')
  t.same(JSON.parse(lines.slice(4).join('\n')).changes, [{ tenant, revision: 3 }], 'tenant and revision only')
  t.equal((await b.transport()).hints, 0, 'verified: a notice, not a hint')
}
