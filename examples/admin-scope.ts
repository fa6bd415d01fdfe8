/**
 * Scoping an administrator to their tenants: a preHandler for the plugin's `routeHooks` that lets a
 * policy request through only when the tenant it names is one the caller administers.
 *
 * It runs as a preHandler (after validation), so the tenant is read from the already validated
 * body (writes, refresh, an import's document — whose tenant, when present, is the one imported into),
 * query string (check) or params (views, the audit feed, export, deletion). `GET /tenants` names no
 * tenant: only an admin of all tenants (`'*'`) lists them. Pair it with an onRequest hook that
 * authenticates the caller (a bearer token, @fastify/jwt's `request.jwtVerify()`, @fastify/auth).
 */
import type { FastifyRequest, preHandlerHookHandler } from 'fastify'
import { errors } from '../lib/plugin.js'

/** The tenant a policy request is about: every policy route names exactly one. */
export function requestTenant (request: FastifyRequest): string | undefined {
  for (const part of [request.body, request.query, request.params]) {
    const tenant = (part as { tenant?: unknown } | undefined)?.tenant
    if (typeof tenant === 'string') return tenant
  }
  return undefined
}

/**
 * A preHandler admitting a request only when `tenantsOf(request)` (the authenticated caller's
 * tenants, `'*'` for all) includes the request's tenant: 401 without a caller, 403 otherwise.
 */
export function tenantScope (tenantsOf: (request: FastifyRequest) => readonly string[] | undefined): preHandlerHookHandler {
  return async (request) => {
    const tenants = tenantsOf(request)
    if (tenants === undefined) throw new errors.UnidentifiedError()
    const tenant = requestTenant(request)
    if (tenants.includes('*') || (tenant !== undefined && tenants.includes(tenant))) return
    throw new errors.ForbiddenError(`policy:admin of tenant ${tenant ?? '?'}`)
  }
}
