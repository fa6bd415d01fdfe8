/**
 * Standard Webhooks v1 symmetric signatures (docs/protocol.md, "The webhook"): HMAC-SHA256 over
 * `id.timestamp.body`, base64-encoded, one `v1,<mac>` entry per key so secrets can be rotated.
 */
import { createHmac, randomFillSync, timingSafeEqual } from 'node:crypto'
import { InvalidOptionError } from '../errors.js'

/** The three headers that carry a webhook's authentication. */
export const WEBHOOK_HEADERS = Object.freeze({
  id: 'webhook-id',
  timestamp: 'webhook-timestamp',
  signature: 'webhook-signature'
} as const)

/** How far, in seconds, a webhook's timestamp may lie from the receiver's clock in either direction. */
export const TIMESTAMP_TOLERANCE_SECONDS = 300
/** The shortest key accepted, in bytes. */
export const MIN_SECRET_BYTES = 16

const SECRET_PREFIX = 'whsec_'
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/
const TIMESTAMP_RE = /^[0-9]{1,10}$/
const VERSION_PREFIX = 'v1,'

/** The signature headers of a received webhook, as read from the request. */
export interface SignatureHeaders {
  id?: string
  timestamp?: string
  signature?: string
}

/**
 * Turns a configured secret into key bytes: surrounding spaces trimmed; `whsec_<base64>` decodes the
 * base64 part (which must be canonical base64), anything else is taken as UTF-8. Throws
 * `FST_POLICY_CACHE_INVALID_OPTION` naming `optionName` for a secret that is not valid or shorter
 * than {@link MIN_SECRET_BYTES}; the message never contains the secret.
 */
export function parseSecret (secret: string, optionName: string): Buffer {
  if (typeof secret !== 'string') throw new InvalidOptionError(optionName, 'must be a string')
  const trimmed = secret.trim()
  let key: Buffer
  if (trimmed.startsWith(SECRET_PREFIX)) {
    const encoded = trimmed.slice(SECRET_PREFIX.length)
    key = Buffer.from(encoded, 'base64')
    if (key.toString('base64') !== encoded) {
      throw new InvalidOptionError(optionName, `a secret starting with "${SECRET_PREFIX}" must continue with valid base64`)
    }
  } else {
    key = Buffer.from(trimmed, 'utf8')
  }
  if (key.length < MIN_SECRET_BYTES) {
    throw new InvalidOptionError(optionName, `a secret must be at least ${MIN_SECRET_BYTES} bytes long`)
  }
  return key
}

/** HMAC-SHA256 of `id.timestamp.body` under `key` (a string body is taken as its UTF-8 bytes). */
function mac (key: Buffer, id: string, timestamp: number | string, body: string | Buffer): Buffer {
  return createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest()
}

/**
 * The `webhook-signature` header value for one message: `v1,<base64 mac>` per key, space-separated.
 */
export function sign (keys: readonly Buffer[], id: string, timestamp: number, body: string | Buffer): string {
  return keys.map((key) => VERSION_PREFIX + mac(key, id, timestamp, body).toString('base64')).join(' ')
}

/**
 * Whether a received webhook is authentic: all three headers present, a well-formed id, a canonical
 * timestamp within {@link TIMESTAMP_TOLERANCE_SECONDS} of `nowSeconds`, and some `v1,` entry of the
 * signature matching the MAC of `rawBody` under some key (constant-time compare). Entries of other
 * versions are skipped. A string body is verified as its UTF-8 bytes (a broker message's body, already
 * decoded: no copy back into a Buffer).
 */
export function verify (keys: readonly Buffer[], headers: SignatureHeaders, rawBody: string | Buffer, nowSeconds: number): boolean {
  const { id, timestamp, signature } = headers
  if (typeof id !== 'string' || typeof timestamp !== 'string' || typeof signature !== 'string') return false
  if (!ID_RE.test(id) || !TIMESTAMP_RE.test(timestamp)) return false
  if (Math.abs(nowSeconds - Number(timestamp)) > TIMESTAMP_TOLERANCE_SECONDS) return false

  const received = signature.split(' ')
    .filter((entry) => entry.startsWith(VERSION_PREFIX))
    .map((entry) => Buffer.from(entry.slice(VERSION_PREFIX.length), 'base64'))
  // Stryker disable next-line ConditionalExpression: equivalent — without a v1 entry the loops below compare nothing and return false
  if (received.length === 0) return false
  for (const key of keys) {
    const expected = mac(key, id, timestamp, rawBody)
    for (const candidate of received) {
      if (candidate.length === expected.length && timingSafeEqual(candidate, expected)) return true
    }
  }
  return false
}

/** Random bytes of a message id. */
const ID_BYTES = 24
/**
 * Random bytes for the next ids, filled at once: one call into the CSPRNG per {@link ID_POOL_IDS} ids
 * instead of one per id (on a fleet every notice and every NATS reply gets an id: a quarter of
 * `seal`'s cost went to `randomBytes`). Each id still takes 24 bytes never used for another.
 */
const ID_POOL_IDS = 128
const idPool = Buffer.alloc(ID_BYTES * ID_POOL_IDS)
let idPoolNext = idPool.length

/** A fresh message id: `msg_` and 24 random bytes in url-safe base64. */
export function newMessageId (): string {
  if (idPoolNext === idPool.length) {
    randomFillSync(idPool)
    idPoolNext = 0
  }
  const id = 'msg_' + idPool.toString('base64url', idPoolNext, idPoolNext + ID_BYTES)
  idPoolNext += ID_BYTES
  return id
}
