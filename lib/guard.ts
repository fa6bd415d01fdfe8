/**
 * The route guard: a preHandler that lets a request through only when its identity (the host's
 * `identify`) holds a permission. Host routes opt in with `config: { policy: 'documents:read' }`
 * (an onRoute hook adds the guard) or with `preHandler: app.policyCache.require('documents:read')`.
 *
 * It fails closed: a route declaring `config.policy` that the onRoute hook did not see (declared
 * before the plugin was registered) is refused by an onRequest hook, never served.
 *
 * A loaded tenant is decided synchronously (`checkSync`, no promise when `identify` is synchronous);
 * an unloaded one loads once, then every later request takes the synchronous path.
 */
import type { FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler, onRouteHookHandler, preHandlerHookHandler, RouteOptions } from 'fastify'
import { ForbiddenError, InvalidOptionError, UnguardedRouteError, UnidentifiedError } from './errors.js'
import { isIdentifier, isPermission } from './model.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A permission (e.g. `documents:read`, no `*`) the request's identity must hold: fastify-policy-cache
     * adds a preHandler that answers 401 without an identity and 403 without the permission.
     */
    policy?: string
  }
}

/** Set on the config of every route the onRoute hook guarded; a declared policy without it is refused. */
const GUARDED = Symbol('fastify-policy-cache.guarded')

/** Who a request acts as: a user of a tenant. */
export interface Identity {
  tenant: string
  user: string
}

/** The host's way to tell who a request is; `undefined` (or `null`) when it carries no identity. */
export type IdentifyFunction = (request: FastifyRequest) => Identity | undefined | null | Promise<Identity | undefined | null>

/** The part of the engine the guard uses. */
export interface GuardEngine {
  checkSync (tenant: string, user: string, permission: string): boolean | undefined
  check (tenant: string, user: string, permission: string): Promise<boolean>
}

function isIdentity (value: unknown): value is Identity {
  return typeof value === 'object' && value !== null &&
    typeof (value as Identity).tenant === 'string' && typeof (value as Identity).user === 'string'
}

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function'
}

/** Checks a permission given to the guard at startup: concrete (no `*`), well-formed. */
function assertGuardPermission (name: string, permission: unknown): asserts permission is string {
  if (!isPermission(permission)) {
    throw new InvalidOptionError(name, `${JSON.stringify(permission)} is not a concrete permission (segment(:segment)*, no "*")`)
  }
}

/**
 * A preHandler admitting requests whose identity holds `permission`: 401
 * FST_POLICY_CACHE_UNIDENTIFIED without an identity, 403 FST_POLICY_CACHE_FORBIDDEN without the
 * permission (an identity whose ids are malformed holds none), the store's 503 when the tenant cannot
 * be loaded. An error thrown by `identify` goes to the host's error handler as it is.
 */
export function createGuard (engine: GuardEngine, identify: IdentifyFunction | undefined, permission: string, name = 'permission'): preHandlerHookHandler {
  if (identify === undefined) throw new InvalidOptionError('identify', `is required to guard routes (permission "${String(permission)}")`)
  assertGuardPermission(name, permission)

  const decide = (identity: unknown, done: HookHandlerDoneFunction): void => {
    if (!isIdentity(identity)) {
      done(new UnidentifiedError())
      return
    }
    const { tenant, user } = identity
    const allowed = engine.checkSync(tenant, user, permission)
    if (allowed !== undefined) {
      done(allowed ? undefined : new ForbiddenError(permission))
      return
    }
    // Not loaded yet (or not a tenant id at all: it can never be loaded, and holds nothing).
    if (!isIdentifier(tenant) || !isIdentifier(user)) {
      done(new ForbiddenError(permission))
      return
    }
    engine.check(tenant, user, permission).then(
      (ok) => done(ok ? undefined : new ForbiddenError(permission)),
      (err: Error) => done(err)
    )
  }

  // Callback style on purpose: a synchronous identify on a loaded tenant costs no promise at all.
  return function policyGuard (request, _reply, done) {
    let identity: ReturnType<IdentifyFunction>
    try {
      identity = identify(request)
    } catch (err) {
      done(err as Error)
      return
    }
    if (isThenable(identity)) {
      identity.then((resolved) => decide(resolved, done), (err: Error) => done(err))
      return
    }
    decide(identity, done)
  }
}

/**
 * The onRoute hook guarding every route declared with `config.policy`. A guarded route without an
 * `identify` option, or with a malformed permission, fails at registration naming the route.
 */
export function guardRoutes (engine: GuardEngine, identify: IdentifyFunction | undefined): onRouteHookHandler {
  return function guardRoute (route: RouteOptions) {
    const policy: unknown = route.config?.policy
    if (policy === undefined) return
    const where = `${String(route.method)} ${route.url}`
    if (identify === undefined) {
      throw new InvalidOptionError('identify', `is required: route ${where} is guarded by config.policy ${JSON.stringify(policy)}`)
    }
    const guard = createGuard(engine, identify, policy as string, `config.policy of ${where}`)
    const existing = route.preHandler === undefined ? [] : Array.isArray(route.preHandler) ? route.preHandler : [route.preHandler]
    // After the route's own preHandlers: a host's authentication there runs before identify.
    route.preHandler = [...existing, guard]
    route.config = { ...route.config, [GUARDED]: true } as RouteOptions['config']
  }
}

/**
 * The onRequest hook that makes the guard fail closed. Fastify gives a context's request hooks to
 * every route of that context when the app gets ready — also to routes declared before the hook was
 * added, which the onRoute hook never saw. Such a route declaring `config.policy` was not guarded:
 * it answers 500 FST_POLICY_CACHE_UNGUARDED_ROUTE instead of running unguarded.
 */
export function refuseUnguarded (): onRequestHookHandler {
  return function policyGuardCheck (request, _reply, done) {
    const { config, method, url } = request.routeOptions
    // A 404 has no route config.
    const declared = config as { policy?: unknown, [GUARDED]?: true } | undefined
    if (declared?.policy !== undefined && declared[GUARDED] !== true) done(new UnguardedRouteError(`${method} ${url}`))
    else done()
  }
}
