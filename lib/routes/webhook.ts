/**
 * The webhook receiver, `POST /webhook/refresh` (DESIGN §5). Register it in its own encapsulated
 * context: it replaces the content-type parsers and the validator compiler of that context.
 *
 * Order of checks: content type (415), body size (413), signature over the raw bytes (401, one
 * identical reply for every authentication failure), JSON with prototype-poisoning protection (400),
 * schema (400), carried changes consistent with their `operation` (400 FST_POLICY_CACHE_INVALID_INPUT),
 * then own origin and replayed ids (200, nothing done), then `handleNotice`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { LRUCache } from 'lru-cache'
import { Type } from 'typebox'
import { UnauthorizedWebhookError } from '../errors.js'
import { GRANT_PATTERN, IDENTIFIER_PATTERN, OPERATIONS, PERMISSION_MAX_LENGTH } from '../model.js'
import { verify, WEBHOOK_HEADERS } from '../broadcast/signature.js'
import { carriedChange, MAX_NOTICE_CHANGES, WEBHOOK_PATH } from '../broadcast/types.js'
import type { Notice, NoticeReply } from '../broadcast/types.js'
import { validatorCompiler } from './schemas.js'

/** Default largest accepted webhook body, in bytes. */
export const DEFAULT_WEBHOOK_BODY_LIMIT = 64 * 1024
/** How long a verified message id is remembered: twice the timestamp tolerance, so no replay outlives it. */
export const REPLAY_WINDOW_MS = 600_000
/** How many message ids are remembered at most (the oldest are forgotten first). */
export const REPLAY_MAX_IDS = 100_000

/** What the receiver route is built from. */
export interface WebhookRoutesOptions {
  /** Verification keys (see `parseSecret`); a signature by any of them is accepted. */
  keys: Buffer[]
  /** This instance's id: sent in every reply; notices with this `origin` are ignored. */
  serverId: string
  /** Largest accepted body in bytes (413 above). Default 64 KiB. */
  bodyLimit?: number
  /**
   * Brings the local cache up to the notice's revisions and resolves with this instance's revision
   * for each tenant named (`null` for a tenant it does not cache). Called once per verified, new,
   * foreign notice; a rejection is a 500 and the id is forgotten so the sender's retry is handled.
   */
  handleNotice: (notice: Notice) => Promise<NoticeReply['revisions']>
}

const NoticeChangeSchema = Type.Object({
  tenant: Type.String({ pattern: IDENTIFIER_PATTERN, description: 'The tenant that changed' }),
  revision: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'The tenant\'s revision on the sender' }),
  operation: Type.Optional(Type.Enum(OPERATIONS, { description: 'The write that produced the revision; required when the entry carries the change' })),
  group: Type.Optional(Type.String({ pattern: IDENTIFIER_PATTERN, description: 'Carried change: the group written at this revision' })),
  permission: Type.Optional(Type.String({ pattern: GRANT_PATTERN, maxLength: PERMISSION_MAX_LENGTH, description: 'Carried change: the grant added or removed (add-permission, remove-permission only)' })),
  user: Type.Optional(Type.String({ pattern: IDENTIFIER_PATTERN, description: 'Carried change: the user assigned or unassigned (assign-user, unassign-user only)' }))
}, { additionalProperties: true })

const NoticeSchema = Type.Object({
  type: Type.Literal('policy.changed'),
  origin: Type.String({ pattern: IDENTIFIER_PATTERN, description: 'The sender\'s server id' }),
  changes: Type.Array(NoticeChangeSchema, { minItems: 1, maxItems: MAX_NOTICE_CHANGES })
}, {
  additionalProperties: true,
  description: 'A Standard Webhooks v1 message; unknown fields are ignored so newer senders can talk to older receivers'
})

const NoticeReplySchema = Type.Object({
  serverId: Type.String({ description: 'The receiver\'s server id' }),
  revisions: Type.Record(Type.String(), Type.Union([Type.Integer(), Type.Null()]), {
    description: 'The receiver\'s revision per tenant named, null when it does not cache the tenant'
  })
}, { additionalProperties: false })

function header (request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  return typeof value === 'string' ? value : undefined
}

/**
 * Registers `POST /webhook/refresh`. Replays (an id verified before, within
 * {@link REPLAY_WINDOW_MS}) answer 200 with the revisions the first delivery answered — waiting for it
 * when still in progress — without calling `handleNotice` again; a notice from this instance's own
 * `origin` answers 200 with `revisions: {}`.
 */
export default async function webhookRoutes (fastify: FastifyInstance, opts: WebhookRoutesOptions): Promise<void> {
  const { keys, serverId, handleNotice } = opts
  const bodyLimit = opts.bodyLimit ?? DEFAULT_WEBHOOK_BODY_LIMIT
  const verified = new WeakSet<FastifyRequest>()
  const seen = new LRUCache<string, Promise<NoticeReply['revisions']>>({ max: REPLAY_MAX_IDS, ttl: REPLAY_WINDOW_MS })
  const parseJson = fastify.getDefaultJsonParser('error', 'error') as
    (request: FastifyRequest, body: string, done: (err: Error | null, body?: unknown) => void) => void

  // Only JSON, and only once the signature over the exact bytes received holds.
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser<Buffer>('application/json', { parseAs: 'buffer', bodyLimit }, (request, rawBody, done) => {
    const headers = {
      id: header(request, WEBHOOK_HEADERS.id),
      timestamp: header(request, WEBHOOK_HEADERS.timestamp),
      signature: header(request, WEBHOOK_HEADERS.signature)
    }
    if (!verify(keys, headers, rawBody, Math.floor(Date.now() / 1000))) {
      done(new UnauthorizedWebhookError())
      return
    }
    verified.add(request)
    parseJson(request, rawBody.toString('utf8'), done)
  })
  // Known fields strictly (no type coercion), unknown ones ignored.
  fastify.setValidatorCompiler(validatorCompiler)

  fastify.withTypeProvider<TypeBoxTypeProvider>().post(WEBHOOK_PATH, {
    bodyLimit,
    schema: {
      description: 'Receives a signed policy.changed notice from a peer (Standard Webhooks v1: webhook-id, webhook-timestamp and webhook-signature headers) and answers once this instance has caught up',
      body: NoticeSchema,
      response: { 200: NoticeReplySchema }
    },
    // A request without a body never reaches the parser: it is unauthenticated too.
    preValidation: async (request) => {
      if (!verified.has(request)) throw new UnauthorizedWebhookError()
    }
  }, async (request) => {
    const notice = request.body
    // Every entry before anything is applied: one malformed carried change rejects the whole notice.
    for (const change of notice.changes) carriedChange(change)
    if (notice.origin === serverId) {
      // Our own notice came back, or another instance shares our serverId (their notices would be ignored).
      request.log.warn({ origin: notice.origin }, 'policy-cache: ignored a notice carrying this instance\'s own serverId; is SERVER_ID unique?')
      return { serverId, revisions: {} }
    }

    const id = header(request, WEBHOOK_HEADERS.id) as string
    const earlier = seen.get(id)
    if (earlier !== undefined) return { serverId, revisions: await earlier }

    const handling = handleNotice(notice)
    seen.set(id, handling)
    try {
      return { serverId, revisions: await handling }
    } catch (err) {
      seen.delete(id)
      throw err
    }
  })
}
