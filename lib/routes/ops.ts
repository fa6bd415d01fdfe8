/**
 * The ops routes — health, peer status, metrics — each mountable on its own. `/servers` is mounted
 * behind the host's route hooks (it names tenants and peer addresses); `/health` and `/metrics` are not.
 */
import type { FastifyInstance, FastifySchema } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { TransportStatus } from '../broadcast/transport.js'
import type { PolicyMetrics } from '../metrics.js'
import type { PolicyCache } from '../policy-cache.js'
import { HealthReply, ServersReply } from './schemas.js'

export interface HealthRouteOptions {
  engine: PolicyCache
  /** The membership's state; undefined when membership is off. */
  membership: (() => 'ok' | 'degraded') | undefined
  /** The transport's state. */
  transport: () => TransportStatus
  /** Where to mount it. */
  path: string
}

/** `GET <path>` (default `/health`): liveness and database reachability. */
export async function healthRoute (fastify: FastifyInstance, { engine, membership, transport, path }: HealthRouteOptions): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const startedAt = Date.now()

  app.get(path, {
    schema: {
      description: 'Liveness and database reachability; 503 when the database does not answer or a graceful shutdown began (`status: closing`); `status: degraded` (200) while writes fail on a database that answers reads, or while the transport\'s subscription is down',
      tags: ['ops'],
      response: { 200: HealthReply, 503: HealthReply }
    }
  }, async (_request, reply) => {
    const db = await engine.ping().then(() => 'ok' as const, () => 'unavailable' as const)
    const writes = engine.writesFailing() ? 'failing' as const : 'ok' as const
    const peers = engine.peers()
    const { type, state } = transport()
    const closing = engine.closing
    if (db !== 'ok' || closing) reply.code(503)
    return {
      status: closing ? 'closing' as const : db !== 'ok' ? 'unavailable' as const : writes !== 'ok' || state === 'down' ? 'degraded' as const : 'ok' as const,
      serverId: engine.serverId,
      uptimeMs: Date.now() - startedAt,
      db,
      writes,
      tenantsCached: engine.stats().tenants,
      peers: { total: peers.length, up: peers.filter((peer) => peer.state === 'up').length },
      membership: membership?.() ?? 'off' as const,
      transport: { type, state }
    }
  })
}

export interface ServersRouteOptions {
  engine: PolicyCache
  /** This instance's URL as peers see it, when configured. */
  publicUrl: string | undefined
  /** The transport's state. */
  transport: () => TransportStatus
  /** Where to mount it. */
  path: string
}

/** `GET <path>` (default `/servers`): this instance and each peer's delivery state. */
export async function serversRoute (fastify: FastifyInstance, { engine, publicUrl, transport, path }: ServersRouteOptions): Promise<void> {
  fastify.withTypeProvider<TypeBoxTypeProvider>().get(path, {
    schema: {
      description: 'This instance, each peer\'s delivery state and stats, and the transport\'s subscription',
      tags: ['ops'],
      response: { 200: ServersReply }
    }
  }, async () => ({
    self: { serverId: engine.serverId, url: publicUrl ?? null },
    peers: engine.peers(),
    transport: transport()
  }))
}

export interface MetricsRouteOptions {
  metrics: PolicyMetrics
  path: string
}

/** `GET <path>` (default `/metrics`): the Prometheus text exposition of the plugin's registry. */
export async function metricsRoute (fastify: FastifyInstance, { metrics, path }: MetricsRouteOptions): Promise<void> {
  // OpenAPI keywords only (no validation): a plain object, so Fastify's schema type takes it as is.
  const schema = {
    description: 'Prometheus metrics: checks, writes, cache, catch-ups, webhook deliveries, propagation latency, revision lag',
    tags: ['ops'],
    produces: ['text/plain']
  }
  fastify.get(path, { schema: schema as FastifySchema }, async (_request, reply) => {
    const body = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(body)
  })
}
