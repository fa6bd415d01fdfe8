/**
 * The webhook receiver, `POST /webhook/refresh` (docs/protocol.md, "Receiver"). Register it in its own
 * encapsulated context: it replaces the content-type parsers and the validator compiler of that context.
 *
 * Order of checks: content type (415), body size (413), signature over the raw bytes (401, one
 * identical reply for every authentication failure), JSON with prototype-poisoning protection (400),
 * schema (400), `decodeNotice`: carried changes consistent with their `operation` (400
 * FST_POLICY_CACHE_INVALID_INPUT), then own origin and replayed ids (200, nothing done), then
 * `handleNotice` with the decoded notice.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { LRUCache } from 'lru-cache'
import { DEFAULTS } from '../defaults.js'
import { UnauthorizedWebhookError } from '../errors.js'
import { validatorCompiler } from '../routes/schemas.js'
import { decodeNotice, NoticeReplySchema, NoticeSchema, WEBHOOK_PATH, type NoticeReply, type ReceivedNotice } from './notice.js'
import { verify, WEBHOOK_HEADERS } from './signature.js'

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
   * for each tenant named (`null` for a tenant it does not cache). Called once per verified, valid,
   * new, foreign notice, already decoded; a rejection is a 500 and the id is forgotten so the sender's
   * retry is handled.
   */
  handleNotice: (notice: ReceivedNotice) => Promise<NoticeReply['revisions']>
}

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
  const bodyLimit = opts.bodyLimit ?? DEFAULTS.webhookBodyLimit
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
    // Every entry before anything is applied: one malformed carried change rejects the whole notice.
    const notice = decodeNotice(request.body)
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
