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

/**
 * The message ids this receiver has handled, so that a replay (the sender's retry of a delivery
 * whose reply it did not get, or an attacker's copy) is not handled again. Bounded in total: only ids
 * are kept once handled (at most {@link REPLAY_MAX_IDS}, each ≤ 64 characters, for
 * {@link REPLAY_WINDOW_MS}), never the replies — a notice names up to 1000 tenants, and keeping each
 * reply let a stream of notices grow the heap by hundreds of MiB. A delivery still being handled is
 * kept as its pending reply, so a replay arriving meanwhile waits for it (bounded by the requests in
 * flight).
 */
export class ReplayGuard {
  readonly #handled: LRUCache<string, true>
  readonly #inFlight = new Map<string, Promise<NoticeReply['revisions']>>()

  constructor ({ maxIds = REPLAY_MAX_IDS, windowMs = REPLAY_WINDOW_MS }: { maxIds?: number, windowMs?: number } = {}) {
    this.#handled = new LRUCache({ max: maxIds, ttl: windowMs })
  }

  /** Ids remembered as handled, and deliveries being handled. */
  get size (): { handled: number, inFlight: number } {
    return { handled: this.#handled.size, inFlight: this.#inFlight.size }
  }

  /**
   * What to answer for `id`: `'handled'` when a delivery with this id was handled already, the pending
   * reply when one is being handled, or `undefined` when the id is new.
   */
  lookup (id: string): 'handled' | Promise<NoticeReply['revisions']> | undefined {
    return this.#inFlight.get(id) ?? (this.#handled.has(id) ? 'handled' : undefined)
  }

  /** Handles a new id: `handling` is its pending reply; once it resolves only the id is kept, once it rejects the id is forgotten (the sender's retry is handled). */
  async handle (id: string, handling: Promise<NoticeReply['revisions']>): Promise<NoticeReply['revisions']> {
    this.#inFlight.set(id, handling)
    try {
      const revisions = await handling
      this.#handled.set(id, true)
      return revisions
    } finally {
      this.#inFlight.delete(id)
    }
  }
}

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
  /** Where handled ids are remembered. Default: a new {@link ReplayGuard}. */
  replays?: ReplayGuard
  /**
   * Told of every verified, valid notice from another instance (its `origin` and `url`), replays
   * included: that peer is alive (the broadcaster revives it if it had given up on it for a while).
   */
  onContact?: (origin: string, url: string | undefined) => void
}

function header (request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  return typeof value === 'string' ? value : undefined
}

/**
 * Registers `POST /webhook/refresh`. A replay (an id verified and handled before, within
 * {@link REPLAY_WINDOW_MS}) answers 200 `{ serverId, revisions: {}, duplicate: true }` without calling
 * `handleNotice` again — one arriving while the first delivery is handled waits for it and answers
 * its revisions; a notice from this instance's own `origin` answers 200 with `revisions: {}`.
 */
export default async function webhookRoutes (fastify: FastifyInstance, opts: WebhookRoutesOptions): Promise<void> {
  const { keys, serverId, handleNotice } = opts
  const bodyLimit = opts.bodyLimit ?? DEFAULTS.webhookBodyLimit
  const verified = new WeakSet<FastifyRequest>()
  const replays = opts.replays ?? new ReplayGuard()
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

    opts.onContact?.(notice.origin, notice.url)
    const id = header(request, WEBHOOK_HEADERS.id) as string
    const earlier = replays.lookup(id)
    if (earlier === 'handled') return { serverId, revisions: {}, duplicate: true as const }
    if (earlier !== undefined) return { serverId, revisions: await earlier }
    return { serverId, revisions: await replays.handle(id, handleNotice(notice)) }
  })
}
