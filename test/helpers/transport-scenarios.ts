/**
 * Scenarios every broker transport (pg-notify, nats, redis) passes, written once and run by each
 * transport's test file over its own instances (test/helpers/pg-notify.ts, test/helpers/brokers.ts).
 */
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
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
