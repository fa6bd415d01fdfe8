/**
 * Reading a peer's `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
 */

/**
 * The delay a `Retry-After` value asks for, in milliseconds from `nowMs`, capped at `capMs`; `undefined`
 * when the header is absent or unreadable (the caller then uses its own backoff). A date in the past
 * means 0.
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
