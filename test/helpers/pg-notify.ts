/**
 * In-process instances on the pg-notify transport, each on its own pool of the test PostgreSQL, on
 * fresh tables (a random prefix, so the channel is fresh too). Closed and dropped at the end of the test.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import pg from 'pg'
import type { Test } from 'tap'
import type { PgNotifyTransportOption, PolicyCacheOptions } from '../../lib/plugin.js'
import policyCache from '../../lib/plugin.js'
import type { TransportStatus } from '../../lib/broadcast/transport.js'
import { SECRET } from './app.js'
import { dropPrefixed, POSTGRES_URL, postgresDb } from './databases.js'

export { until } from '../membership/suite.js'

/** One instance. */
export interface NotifyNode {
  app: FastifyInstance
  serverId: string
  db: Kysely<any>
  /** Its transport's status, as `/servers` shows it. */
  transport (): Promise<TransportStatus>
}

/** Settings of the transport beside `type`; `connection` defaults to the test PostgreSQL. */
export type TransportSettings = Omit<PgNotifyTransportOption, 'type' | 'connection'> & { connection?: PgNotifyTransportOption['connection'] }

/** Starts one instance on `tablePrefix`, closed at the end of the test. */
export async function startNode (t: Test, tablePrefix: string, serverId: string, settings: TransportSettings = {}, options: PolicyCacheOptions = {}): Promise<NotifyNode> {
  const db = await postgresDb()
  if (db === undefined) throw new Error('PostgreSQL went away')
  const app = Fastify()
  t.teardown(async () => {
    await app.close()
    await db.destroy()
  })
  await app.register(policyCache, {
    db,
    tablePrefix,
    serverId,
    webhookSecret: SECRET,
    syncIntervalMs: 0,
    transport: { type: 'pg-notify', connection: POSTGRES_URL, ...settings },
    ...options
  })
  await app.ready()
  return {
    app,
    serverId,
    db,
    transport: async () => (await app.inject({ url: '/servers' })).json().transport
  }
}

/** `count` instances `n1`…, started one after the other; the tables are dropped with `admin` at the end. */
export async function startNodes (t: Test, admin: Kysely<any>, tablePrefix: string, count: number, settings: TransportSettings = {}): Promise<NotifyNode[]> {
  t.teardown(() => dropPrefixed(admin, tablePrefix))
  const nodes: NotifyNode[] = []
  for (let i = 1; i <= count; i++) nodes.push(await startNode(t, tablePrefix, `n${i}`, settings))
  return nodes
}

/** A plain pg client LISTENing on `channel` that records every payload; ended at the end of the test. */
export async function listen (t: Test, channel: string): Promise<{ payloads: string[] }> {
  const client = new pg.Client({ connectionString: POSTGRES_URL })
  client.on('error', () => {})
  await client.connect()
  t.teardown(() => client.end())
  const payloads: string[] = []
  client.on('notification', (message) => { if (message.channel === channel && message.payload !== undefined) payloads.push(message.payload) })
  await client.query(`LISTEN "${channel}"`)
  return { payloads }
}
