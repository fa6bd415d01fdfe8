/**
 * Mounts the plugin's routes as the `routes` option shapes them: the policy routes, each ops route
 * and the webhook receiver, each in its own encapsulated context under the register prefix.
 *
 * A route of the plugin and a host route with the same method and path fail registration with
 * FST_POLICY_CACHE_ROUTE_CONFLICT naming the option that moves or drops the plugin's, whichever is
 * declared first: the plugin checks `hasRoute` for each of its own, then refuses later host routes
 * that take one of them (an onRoute hook in the host's scope).
 */
import type { FastifyInstance, onRouteHookHandler, RouteOptions } from 'fastify'
import { RouteConflictError } from '../errors.js'
import type { PolicyMetrics } from '../metrics.js'
import type { ResolvedOptions } from '../options.js'
import type { PolicyCache } from '../policy-cache.js'
import { healthRoute, metricsRoute, serversRoute } from './ops.js'
import policyRoutes from './policy.js'
import webhookRoutes from '../broadcast/receiver.js'
import type { NoticeReply, ReceivedNotice } from '../broadcast/notice.js'
import type { TransportStatus } from '../broadcast/transport.js'

export interface MountOptions {
  engine: PolicyCache
  opts: ResolvedOptions
  metrics: PolicyMetrics | undefined
  /** The register prefix the host gave the plugin. */
  prefix: string | undefined
  /** Told when a peer's notice arrives (see `Broadcaster.contact`). */
  onContact?: (origin: string, url: string | undefined) => void
  /** The membership's state for `/health`; undefined when membership is off. */
  membership?: (() => 'ok' | 'degraded') | undefined
  /** The transport's state, for `/health` and `/servers`. */
  transport: () => TransportStatus
  /** Where the webhook receiver hands a verified notice (the webhook transport, or the engine's path). */
  deliver: (notice: ReceivedNotice) => Promise<NoticeReply['revisions']>
}

/** `METHOD url` of each route the plugin mounted → how to move or drop it. */
type Claimed = Map<string, string>

function methodsOf (route: RouteOptions): string[] {
  return typeof route.method === 'string' ? [route.method] : [...route.method]
}

/** onRoute hook of one of the plugin's contexts: claims each of its routes, refusing one the app has already. */
function claim (instance: FastifyInstance, claimed: Claimed, option: string): onRouteHookHandler {
  return function claimRoute (route) {
    for (const method of methodsOf(route)) {
      // Fastify's own HEAD twin of a GET route yields to a host's HEAD route: nothing to claim.
      if (method === 'HEAD') continue
      const key = `${method} ${route.url}`
      if (instance.hasRoute({ method, url: route.url, constraints: route.constraints })) throw new RouteConflictError(key, option)
      claimed.set(key, option)
    }
  }
}

/** onRoute hook of the host's scope: a host route taking a method and path the plugin mounted fails naming the option. */
function refuseConflicts (claimed: Claimed): onRouteHookHandler {
  return function policyRouteConflict (route) {
    for (const method of methodsOf(route)) {
      const option = claimed.get(`${method} ${route.url}`)
      if (option !== undefined) throw new RouteConflictError(`${method} ${route.url}`, option)
    }
  }
}

/** The host's `routeHooks`, appended to one of the plugin's contexts. */
function addRouteHooks (instance: FastifyInstance, opts: ResolvedOptions): void {
  for (const hook of opts.routeHooks.onRequest) instance.addHook('onRequest', hook)
  for (const hook of opts.routeHooks.preHandler) instance.addHook('preHandler', hook)
}

export async function mountRoutes (fastify: FastifyInstance, { engine, opts, metrics, prefix, onContact, membership, transport, deliver }: MountOptions): Promise<void> {
  const { routes } = opts
  const claimed: Claimed = new Map()
  const group = async (option: string, mount: (instance: FastifyInstance) => PromiseLike<unknown>): Promise<void> => {
    await fastify.register(async (instance) => {
      instance.addHook('onRoute', claim(instance, claimed, option))
      await mount(instance)
    }, { prefix })
  }

  if (routes.policy !== undefined) {
    const { prefix: policyPrefix } = routes.policy
    await group('the option "routes.policy" (a prefix, or false)', async (guarded) => {
      addRouteHooks(guarded, opts)
      await guarded.register(policyRoutes, { engine, bodyLimit: opts.policyBodyLimit, maxBatchChanges: opts.maxBatchChanges, maxBatchChecks: opts.maxBatchChecks, maxImportFacts: opts.maxImportFacts, identify: opts.identify, heartbeatMs: opts.watch.heartbeatMs, prefix: policyPrefix })
    })
  }
  const ops = routes.ops
  if (ops?.health !== undefined) {
    const path = ops.health
    await group('the option "routes.ops.health" (another path, or false)', (instance) =>
      instance.register(healthRoute, { engine, membership, transport, path, prefix: ops.prefix }))
  }
  if (ops?.servers !== undefined) {
    const path = ops.servers
    // Behind the host's route hooks like the policy routes: it names tenants and peer addresses.
    await group('the option "routes.ops.servers" (another path, or false)', async (instance) => {
      addRouteHooks(instance, opts)
      await instance.register(serversRoute, { engine, publicUrl: opts.publicUrl, transport, path, prefix: ops.prefix })
    })
  }
  if (metrics !== undefined && opts.metrics !== undefined) {
    const path = opts.metrics.path
    await group('the option "metrics.path"', (instance) => instance.register(metricsRoute, { metrics, path }))
  }
  if (routes.webhook) {
    await group('the register "prefix" (peers then list this instance with it) or "routes.webhook" (false)', (instance) =>
      instance.register(webhookRoutes, {
        keys: [...opts.keys],
        serverId: opts.serverId,
        bodyLimit: opts.webhookBodyLimit,
        onContact,
        handleNotice: deliver
      }))
  }
  // After the plugin's own contexts exist: only the host's later routes pass through it.
  fastify.addHook('onRoute', refuseConflicts(claimed))
}
