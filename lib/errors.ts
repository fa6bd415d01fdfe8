/**
 * The one catalogue of errors this plugin raises. Every code starts with `FST_POLICY_CACHE_` and
 * carries the HTTP status a route answers with. Backend failures are wrapped with `{ cause }`.
 */
import createError from '@fastify/error'

export const InvalidOptionError = createError<'FST_POLICY_CACHE_INVALID_OPTION', 500, [string, string, ({ cause: unknown })?]>(
  'FST_POLICY_CACHE_INVALID_OPTION', 'Invalid option "%s": %s', 500)

export const InvalidInputError = createError<'FST_POLICY_CACHE_INVALID_INPUT', 400, [string, string]>(
  'FST_POLICY_CACHE_INVALID_INPUT', 'Invalid %s: %s', 400)

export const GroupNotFoundError = createError<'FST_POLICY_CACHE_GROUP_NOT_FOUND', 404, [string, string]>(
  'FST_POLICY_CACHE_GROUP_NOT_FOUND', 'Group "%s" does not exist in tenant "%s"', 404)

export const RevisionAheadError = createError<'FST_POLICY_CACHE_REVISION_AHEAD', 412, [string, number, number]>(
  'FST_POLICY_CACHE_REVISION_AHEAD', 'Tenant "%s" is at revision %d in the database, behind the requested minRevision %d', 412)

export const StoreUnavailableError = createError<'FST_POLICY_CACHE_STORE_UNAVAILABLE', 503, [string, ({ cause: unknown })?]>(
  'FST_POLICY_CACHE_STORE_UNAVAILABLE', 'The policy database failed or did not answer: %s', 503)

export const UnauthorizedWebhookError = createError<'FST_POLICY_CACHE_UNAUTHORIZED', 401, []>(
  'FST_POLICY_CACHE_UNAUTHORIZED', 'Webhook authentication failed', 401)

export const ForbiddenError = createError<'FST_POLICY_CACHE_FORBIDDEN', 403, [string]>(
  'FST_POLICY_CACHE_FORBIDDEN', 'Permission "%s" is required', 403)

export const UnidentifiedError = createError<'FST_POLICY_CACHE_UNIDENTIFIED', 401, []>(
  'FST_POLICY_CACHE_UNIDENTIFIED', 'The request carries no identity', 401)

export const UnguardedRouteError = createError<'FST_POLICY_CACHE_UNGUARDED_ROUTE', 500, [string]>(
  'FST_POLICY_CACHE_UNGUARDED_ROUTE',
  'Route %s declares config.policy but the policy guard did not see it being declared: register fastify-policy-cache (and await it) before declaring guarded routes', 500)

export const RouteConflictError = createError<'FST_POLICY_CACHE_ROUTE_CONFLICT', 500, [string, string]>(
  'FST_POLICY_CACHE_ROUTE_CONFLICT', 'fastify-policy-cache and another route both declare %s; move or drop the plugin\'s with %s', 500)
