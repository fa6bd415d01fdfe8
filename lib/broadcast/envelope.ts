/**
 * The signed envelope of broker transports (pg-notify now; NATS and Redis later): the notice body
 * of the webhook (lib/broadcast/notice.ts) with its Standard Webhooks id, timestamp and signature
 * carried alongside it, since NOTIFY and pub/sub messages have no headers of their own that a
 * database or broker user could not forge. Encoded and decoded here only (docs/transports.md,
 * "The envelope"):
 *
 *   swv1 LF <webhook-id> LF <webhook-timestamp> LF <webhook-signature> LF <notice body>
 *
 * The signature is exactly the webhook's: `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>` per key.
 */
import { Compile } from 'typebox/compile'
import { decodeNotice, encodeNotice, NoticeSchema, type Notice, type NoticeChange, type ReceivedNotice } from './notice.js'
import { newMessageId, sign, verify } from './signature.js'

/** The first line of every envelope: the format's version. */
export const ENVELOPE_VERSION = 'swv1'

const checkNotice = Compile(NoticeSchema)

/** Who sends: the notice's `origin`, and its database id and URL when known. */
export interface EnvelopeSender {
  origin: string
  database?: string | undefined
  url?: string | undefined
}

/** One signed envelope around `body`, timestamped `nowSeconds` (any body: NATS replies and presence use it too). */
export function seal (keys: readonly Buffer[], body: string, nowSeconds: number): string {
  const id = newMessageId()
  return [ENVELOPE_VERSION, id, String(nowSeconds), sign(keys, id, nowSeconds, body), body].join('\n')
}

/** Only tenant + revision, the highest per tenant: what a receiver needs to read the changelog. */
function bare (changes: readonly NoticeChange[]): NoticeChange[] {
  const highest = new Map<string, number>()
  for (const { tenant, revision } of changes) highest.set(tenant, Math.max(highest.get(tenant) ?? 0, revision))
  return [...highest].map(([tenant, revision]) => ({ tenant, revision }))
}

/**
 * The envelopes that carry `changes`, each at most `maxBytes` (UTF-8): one envelope with the full
 * entries when it fits; else entries reduced to tenant + revision (the receivers read the changelog),
 * split into as many envelopes as needed. Throws when a single bare entry cannot fit (`maxBytes` far
 * too small: the option's minimum rules that out).
 */
export function encodeEnvelopes (keys: readonly Buffer[], sender: EnvelopeSender, changes: readonly NoticeChange[], maxBytes: number, nowSeconds: number): string[] {
  const from = { database: sender.database, url: sender.url }
  const whole = seal(keys, encodeNotice(sender.origin, [...changes], from), nowSeconds)
  if (Buffer.byteLength(whole) <= maxBytes) return [whole]
  const out: string[] = []
  const pack = (entries: NoticeChange[]): void => {
    const envelope = seal(keys, encodeNotice(sender.origin, entries, from), nowSeconds)
    if (Buffer.byteLength(envelope) <= maxBytes) {
      out.push(envelope)
      return
    }
    if (entries.length === 1) throw new RangeError(`one notice entry does not fit in ${maxBytes} bytes`)
    const half = Math.ceil(entries.length / 2)
    pack(entries.slice(0, half))
    pack(entries.slice(half))
  }
  pack(bare(changes))
  return out
}

/** What a received envelope turned out to be. */
export type OpenedEnvelope =
  /** Signed by one of our keys, well-formed: deliver it as the webhook receiver would. */
  | { kind: 'notice', id: string, notice: ReceivedNotice }
  /**
   * Well-formed but not verifiable (no valid signature, stale timestamp, or carried data that does
   * not decode): at most a hint — the tenants and revisions it names, nothing else.
   */
  | { kind: 'hint', origin: string, tenants: Array<{ tenant: string, revision: number }> }
  /** Not an envelope, or a body that is not a notice: nothing to do. */
  | { kind: 'invalid', reason: string }

/** Lines of an envelope: version, id, timestamp, signature, then the body (everything after). */
function split (raw: string): [string, string, string, string] | undefined {
  const lines: string[] = []
  let start = 0
  for (let i = 0; i < 4; i++) {
    const end = raw.indexOf('\n', start)
    if (end === -1) return undefined
    lines.push(raw.slice(start, end))
    start = end + 1
  }
  if (lines[0] !== ENVELOPE_VERSION) return undefined
  return [lines[1], lines[2], lines[3], raw.slice(start)]
}

/**
 * The body of a signed envelope whose signature verifies under one of `keys` (the webhook's rules),
 * parsed as JSON; undefined for anything else. For messages that are not notices (NATS replies and
 * presence): no hint is taken from an unverifiable one. Never throws.
 */
export function openSigned (keys: readonly Buffer[], raw: string, nowSeconds: number): unknown {
  const parts = split(raw)
  if (parts === undefined) return undefined
  const [id, timestamp, signature, body] = parts
  if (!verify(keys, { id, timestamp, signature }, body, nowSeconds)) return undefined
  try {
    return JSON.parse(body) as unknown
  } catch {
    // Not JSON: undefined, below.
  }
  return undefined
}

/**
 * Opens a received envelope: checks the signature over the body's exact bytes with the webhook's
 * rules (`verify`: id pattern, timestamp within 300 s, any key), then the body against the
 * webhook's schema and `decodeNotice`. Never throws.
 */
export function openEnvelope (keys: readonly Buffer[], raw: string, nowSeconds: number): OpenedEnvelope {
  const parts = split(raw)
  if (parts === undefined) return { kind: 'invalid', reason: 'not an envelope' }
  const [id, timestamp, signature, body] = parts
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    return { kind: 'invalid', reason: 'the body is not JSON' }
  }
  if (!checkNotice.Check(parsed)) return { kind: 'invalid', reason: 'the body is not a notice' }
  const notice = parsed as Notice
  const hint = (): OpenedEnvelope => ({
    kind: 'hint',
    origin: notice.origin,
    tenants: notice.changes.map(({ tenant, revision }) => ({ tenant, revision }))
  })
  if (!verify(keys, { id, timestamp, signature }, body, nowSeconds)) return hint()
  try {
    return { kind: 'notice', id, notice: decodeNotice(notice) }
  } catch {
    // Signed by a key we hold, yet carrying malformed data: a bug or a leaked key; trust no carried change.
    return hint()
  }
}
