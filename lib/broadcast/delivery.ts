/**
 * One delivery attempt: a signed POST of a notice body to one peer's receiver over undici, bounded in
 * time and size, and what its outcome means for retrying (docs/protocol.md, "Sender robustness").
 */
import { Agent, request } from 'undici'
import type { NoticeReply } from './notice.js'
import { sign, WEBHOOK_HEADERS } from './signature.js'

/** Replies larger than this are treated as a failed delivery. */
const MAX_REPLY_BYTES = 1024 * 1024

/** A non-2xx answer, with the wait its `Retry-After` asks for (429 and 503 only). */
export class HttpStatusError extends Error {
  constructor (readonly statusCode: number, readonly retryAfterMs: number | undefined) {
    super(`HTTP ${statusCode}`)
  }
}

/** What a failed attempt means: retry (after `waitMs` at least), give this message up, or stop the peer. */
export function classify (err: unknown): { next: 'retry' | 'give-up' | 'gone', waitMs: number } {
  if (!(err instanceof HttpStatusError)) return { next: 'retry', waitMs: 0 }
  const { statusCode, retryAfterMs } = err
  if (statusCode === 410) return { next: 'gone', waitMs: 0 }
  // Other 4xx will not succeed by repeating the same request (408 and 429 are about timing).
  const permanent = statusCode >= 400 && statusCode <= 499 && statusCode !== 408 && statusCode !== 429
  return { next: permanent ? 'give-up' : 'retry', waitMs: retryAfterMs ?? 0 }
}

/** A failed attempt in one line for `/servers` (`lastError`): the error's code, when it has one, and message. */
export function describe (err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message
}

/**
 * The delay a `Retry-After` value (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) asks for, in
 * milliseconds from `nowMs`, capped at `capMs`; `undefined` when the header is absent or unreadable
 * (the caller then uses its own backoff). A date in the past means 0.
 */
export function retryAfterMs (header: string | string[] | undefined, nowMs: number, capMs: number): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim()
  if (value === undefined || value === '') return undefined
  let ms: number
  if (/^[0-9]+$/.test(value)) {
    ms = Number(value) * 1000
  } else {
    // Every HTTP-date form (IMF-fixdate, RFC 850, asctime) starts with a day name.
    if (!/^[A-Za-z]{3}/.test(value)) return undefined
    const at = Date.parse(value)
    if (Number.isNaN(at)) return undefined
    ms = at - nowMs
  }
  return Math.min(capMs, Math.max(0, ms))
}

/** What a {@link WebhookClient} is built from. */
export interface WebhookClientOptions {
  /** Signing keys (see `parseSecret`); every one signs each attempt. */
  keys: Buffer[]
  /** Bound on connecting, on waiting for the reply's headers, on each gap in its body and on the whole attempt. */
  requestTimeoutMs: number
  /** Longest wait a peer's `Retry-After` (on 429 or 503) is honoured for. */
  maxRetryAfterMs: number
}

/** A receiver's reply as far as the sender relies on it: a `serverId`, and `revisions` when the receiver sent them. */
export type DeliveryReply = Pick<NoticeReply, 'serverId'> & Partial<Pick<NoticeReply, 'revisions'>>

/** Sends signed notices to peers' receivers through one undici dispatcher (keep-alive, shared by every peer). */
export class WebhookClient {
  readonly #keys: Buffer[]
  readonly #requestTimeoutMs: number
  readonly #maxRetryAfterMs: number
  readonly #agent: Agent

  constructor (options: WebhookClientOptions) {
    this.#keys = options.keys
    this.#requestTimeoutMs = options.requestTimeoutMs
    this.#maxRetryAfterMs = options.maxRetryAfterMs
    // Keep-alive is undici's default; its 300 s header/body timeouts are not. No redirect interceptor:
    // a 3xx is a failed delivery.
    this.#agent = new Agent({
      connect: { timeout: this.#requestTimeoutMs },
      headersTimeout: this.#requestTimeoutMs,
      bodyTimeout: this.#requestTimeoutMs,
      maxResponseSize: MAX_REPLY_BYTES
    })
  }

  /**
   * One attempt: POSTs `body` to `endpoint` as message `id`, with a fresh timestamp and one signature
   * per key. Resolves with the receiver's reply on a 2xx; rejects with an {@link HttpStatusError} on
   * any other status, with undici's error on a network failure or timeout, and with an `Error` when a
   * 2xx reply is not a receiver's.
   */
  async post (endpoint: string, id: string, body: string): Promise<DeliveryReply> {
    const timestamp = Math.floor(Date.now() / 1000)
    const response = await request(endpoint, {
      dispatcher: this.#agent,
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [WEBHOOK_HEADERS.id]: id,
        [WEBHOOK_HEADERS.timestamp]: String(timestamp),
        [WEBHOOK_HEADERS.signature]: sign(this.#keys, id, timestamp, body)
      },
      body,
      signal: AbortSignal.timeout(this.#requestTimeoutMs)
    })
    if (response.statusCode < 200 || response.statusCode > 299) {
      await response.body.dump()
      const honoured = response.statusCode === 429 || response.statusCode === 503
      throw new HttpStatusError(response.statusCode, honoured
        ? retryAfterMs(response.headers['retry-after'], Date.now(), this.#maxRetryAfterMs)
        : undefined)
    }
    const reply = await response.body.json() as Partial<NoticeReply> | null
    if (typeof reply?.serverId !== 'string') throw new Error('the reply is not a webhook receiver\'s')
    return { serverId: reply.serverId, revisions: reply.revisions }
  }

  /** Aborts requests in flight and closes every connection. */
  close (): Promise<void> {
    return this.#agent.destroy()
  }
}
