/**
 * The one catalogue of errors this plugin raises. Every code starts with `FST_POLICY_CACHE_` and
 * carries the HTTP status a route answers with. Backend failures are wrapped with `{ cause }`.
 *
 * Each class is annotated with `FastifyErrorConstructor` (a named type import) rather than left to
 * inference: the inferred type is written `createError.FastifyErrorConstructor` in the emitted
 * .d.ts, a namespace that only exists when a host resolves @fastify/error's CommonJS `export =`
 * (nodenext); under `bundler` or `node10` resolution the default import is a plain function and
 * every class turned into TS2503 errors (or `any` with skipLibCheck).
 */
import createError, { type FastifyErrorConstructor } from '@fastify/error'

/** The `{ cause }` an error may carry as its last constructor argument. */
type Cause = { cause: unknown }

export const InvalidOptionError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_INVALID_OPTION', statusCode: 500 }, [string, string, Cause?]> =
  createError('FST_POLICY_CACHE_INVALID_OPTION', 'Invalid option "%s": %s', 500)

export const InvalidInputError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_INVALID_INPUT', statusCode: 400 }, [string, string]> =
  createError('FST_POLICY_CACHE_INVALID_INPUT', 'Invalid %s: %s', 400)

export const GroupNotFoundError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_GROUP_NOT_FOUND', statusCode: 404 }, [string, string]> =
  createError('FST_POLICY_CACHE_GROUP_NOT_FOUND', 'Group "%s" does not exist in tenant "%s"', 404)

export const TenantNotFoundError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_TENANT_NOT_FOUND', statusCode: 404 }, [string]> =
  createError('FST_POLICY_CACHE_TENANT_NOT_FOUND', 'Tenant "%s" does not exist (never written, or deleted)', 404)

export const RevisionAheadError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_REVISION_AHEAD', statusCode: 412 }, [string, number, number]> =
  createError('FST_POLICY_CACHE_REVISION_AHEAD', 'Tenant "%s" is at revision %d in the database, behind the requested minRevision %d', 412)

export const RevisionConflictError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_REVISION_CONFLICT', statusCode: 409 }, [string, number, number]> =
  createError('FST_POLICY_CACHE_REVISION_CONFLICT',
    'Tenant "%s" is at revision %d, not at ifRevision %d: nothing was written; read the tenant again and retry', 409)

export const InclusionCycleError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_INCLUSION_CYCLE', statusCode: 409 }, [string, string, string, string]> =
  createError('FST_POLICY_CACHE_INCLUSION_CYCLE',
    'Group "%s" cannot include "%s" in tenant "%s": it would close the cycle %s; nothing was written', 409)

export const BatchTooLargeError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_BATCH_TOO_LARGE', statusCode: 413 }, [number, number]> =
  createError('FST_POLICY_CACHE_BATCH_TOO_LARGE', 'A batch of %d changes is over maxBatchChanges (%d): split it', 413)

export const ImportTooLargeError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_IMPORT_TOO_LARGE', statusCode: 413 }, [number, number]> =
  createError('FST_POLICY_CACHE_IMPORT_TOO_LARGE', 'A document of %d facts (groups, grants and memberships) is over maxImportFacts (%d)', 413)

export const CheckBatchTooLargeError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_CHECK_BATCH_TOO_LARGE', statusCode: 413 }, [number, number]> =
  createError('FST_POLICY_CACHE_CHECK_BATCH_TOO_LARGE', 'A batch of %d checks is over maxBatchChecks (%d): split it', 413)

export const StoreUnavailableError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_STORE_UNAVAILABLE', statusCode: 503 }, [string, Cause?]> =
  createError('FST_POLICY_CACHE_STORE_UNAVAILABLE', 'The policy database failed or did not answer: %s', 503)

export const ForeignDatabaseError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_FOREIGN_DATABASE', statusCode: 409 }, [string]> =
  createError('FST_POLICY_CACHE_FOREIGN_DATABASE',
    'The notice of server "%s" comes from another database than this instance\'s: two deployments share a webhook secret and one lists the other as a peer', 409)

export const ChangesPrunedError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_CHANGES_PRUNED', statusCode: 410 }, [string, number, string]> =
  createError('FST_POLICY_CACHE_CHANGES_PRUNED',
    'The changelog of tenant "%s" no longer holds the revisions after %d: %s (changelogRetention)', 410)

export const WriteOutcomeUnknownError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_WRITE_OUTCOME_UNKNOWN', statusCode: 503 }, [string, number]> =
  createError('FST_POLICY_CACHE_WRITE_OUTCOME_UNKNOWN',
    'The policy database did not finish the write to tenant "%s" within %d ms (writeTimeoutMs): its outcome is unknown — it may still commit. Read the tenant\'s revision before deciding; retrying is safe (a write already applied changes nothing)', 503)

export const ClosingError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_CLOSING', statusCode: 503 }, []> =
  createError('FST_POLICY_CACHE_CLOSING', 'This instance is shutting down and takes no new writes or watch streams; send the request to another instance', 503)

export const TooManyWatchersError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_TOO_MANY_WATCHERS', statusCode: 503 }, [number]> =
  createError('FST_POLICY_CACHE_TOO_MANY_WATCHERS', 'This instance serves %d watch streams already (watch.maxWatchers): retry later, or on another instance', 503)

export const WatchOverflowError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_WATCH_OVERFLOW', statusCode: 503 }, [number]> =
  createError('FST_POLICY_CACHE_WATCH_OVERFLOW',
    'The watch stream did not take its events: %d were waiting (watch.maxBuffered), so it was closed; reconnect with Last-Event-ID to resume from the changelog', 503)

export const DnsPeersError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_DNS_PEERS', statusCode: 503 }, [string, string, Cause?]> =
  createError('FST_POLICY_CACHE_DNS_PEERS', 'Resolving the peers\' DNS name "%s" failed: %s', 503)

export const UnauthorizedWebhookError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_UNAUTHORIZED', statusCode: 401 }, []> =
  createError('FST_POLICY_CACHE_UNAUTHORIZED', 'Webhook authentication failed', 401)

export const ForbiddenError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_FORBIDDEN', statusCode: 403 }, [string]> =
  createError('FST_POLICY_CACHE_FORBIDDEN', 'Permission "%s" is required', 403)

export const UnidentifiedError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_UNIDENTIFIED', statusCode: 401 }, []> =
  createError('FST_POLICY_CACHE_UNIDENTIFIED', 'The request carries no identity', 401)

export const MissingDependencyError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_MISSING_DEPENDENCY', statusCode: 500 }, [string, string, string, Cause?]> =
  createError('FST_POLICY_CACHE_MISSING_DEPENDENCY', 'The package "%s" is needed for %s but is not installed: npm install %s', 500)

export const UnguardedRouteError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_UNGUARDED_ROUTE', statusCode: 500 }, [string]> =
  createError('FST_POLICY_CACHE_UNGUARDED_ROUTE',
    'Route %s declares config.policy but the policy guard did not see it being declared: register fastify-policy-cache (and await it) before declaring guarded routes', 500)

export const RouteConflictError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_ROUTE_CONFLICT', statusCode: 500 }, [string, string]> =
  createError('FST_POLICY_CACHE_ROUTE_CONFLICT', 'fastify-policy-cache and another route both declare %s; move or drop the plugin\'s with %s', 500)

export const BoardBusyError: FastifyErrorConstructor<{ code: 'FST_POLICY_CACHE_BOARD_BUSY', statusCode: 503 }, [string]> =
  createError('FST_POLICY_CACHE_BOARD_BUSY', 'The policy board opens no further live stream: %s', 503)
