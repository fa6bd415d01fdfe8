/**
 * Pagination of the listings and the reverse lookup: an opaque cursor (the base64url of the last key
 * a page held) and a limit. Keys are served sorted, so a cursor means "the keys after this one" at
 * whatever revision the next page is served from (README.md, "Listing and lookup").
 */
import { DEFAULTS } from './defaults.js'
import { InvalidInputError } from './errors.js'

/** How a listing is asked for: `limit` (1 to {@link DEFAULTS.page}.maxLimit, default its `limit`), the previous page's `next`, `minRevision`. */
export interface PageOptions {
  /** Most items in the page. Default 100, at most 1000. */
  limit?: number | undefined
  /** The `next` of the previous page; absent for the first. */
  cursor?: string | undefined
  /** Answer from revision ≥ minRevision: a cache behind it catches up from the database first. */
  minRevision?: number | undefined
}

/**
 * Bounds a cursor before it is decoded. (Its anchors only spare the decoding of a long cursor: the
 * canonical re-encoding in `decodeCursor` refuses whatever they would let through.)
 */
// Stryker disable next-line Regex: see above — the same answers, more work
const BASE64URL = /^[A-Za-z0-9_-]{1,400}$/

/** The cursor that resumes after `key`. */
export function encodeCursor (key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url')
}

/**
 * The key a cursor resumes after (undefined without a cursor). A cursor that is not one this module
 * made — not base64url, not canonical, or not naming a key `isKey` accepts — is a coded 400
 * (FST_POLICY_CACHE_INVALID_INPUT, naming `cursor`).
 */
export function decodeCursor (cursor: unknown, isKey: (key: string) => boolean): string | undefined {
  if (cursor === undefined) return undefined
  if (typeof cursor === 'string' && BASE64URL.test(cursor)) {
    const key = Buffer.from(cursor, 'base64url').toString('utf8')
    if (encodeCursor(key) === cursor && isKey(key)) return key
  }
  throw new InvalidInputError('cursor', 'must be the `next` of a previous page')
}

/** The page size asked for, or the default; a coded 400 for anything but an integer from 1 to the maximum. */
export function pageLimit (limit: unknown): number {
  if (limit === undefined) return DEFAULTS.page.limit
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > DEFAULTS.page.maxLimit) {
    throw new InvalidInputError('limit', `must be an integer from 1 to ${DEFAULTS.page.maxLimit}`)
  }
  return limit
}

/** A page's `next`: the cursor after its last key, or null on the last page. */
export function nextCursor (last: string | undefined): string | null {
  return last === undefined ? null : encodeCursor(last)
}
