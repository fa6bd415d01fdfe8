/**
 * Registration's wait for the database, bounded: a database that refuses fails it with its root
 * cause in the message, one that hangs fails it after `startupTimeoutMs` — both as one
 * FST_POLICY_CACHE_STORE_UNAVAILABLE, well before Fastify's own plugin timeout would report a
 * plugin that "forgot to call done".
 */
import type { FastifyInstance } from 'fastify'
import { DEFAULTS } from './defaults.js'
import { InvalidOptionError, StoreUnavailableError } from './errors.js'

/**
 * Every message along an error's `cause` chain (and an AggregateError's errors), outermost first,
 * repeats dropped: `Policy store migration setup failed: connect ECONNREFUSED 127.0.0.1:5432`.
 */
export function causeChain (err: unknown): string {
  const messages: string[] = []
  const seen = new Set<unknown>()
  const visit = (value: unknown): void => {
    if (seen.has(value) || seen.size > 20) return
    seen.add(value)
    if (!(value instanceof Error)) {
      if (value !== undefined) messages.push(String(value))
      return
    }
    const own = value.message !== '' ? value.message : (value as { code?: unknown }).code
    if (typeof own === 'string' && !messages.includes(own)) messages.push(own)
    if (value instanceof AggregateError) {
      const inner = [...new Set(value.errors.map(causeChain))].filter((message) => !messages.includes(message))
      if (inner.length > 0) messages.push(inner.join('; '))
    }
    if (value.cause !== undefined) visit(value.cause)
  }
  visit(err)
  return messages.join(': ')
}

/**
 * The startup bound: the option, else the default — lowered to half of Fastify's `pluginTimeout`
 * when that is shorter. An explicit value at or above `pluginTimeout` is refused: Fastify would
 * abandon the plugin before this bound could report the cause.
 */
export function startupTimeout (fastify: FastifyInstance, given: number | undefined, resolved: number): number {
  const pluginTimeout = fastify.initialConfig.pluginTimeout ?? 0
  if (pluginTimeout <= 0 || resolved < pluginTimeout) return resolved
  if (given !== undefined) {
    throw new InvalidOptionError('startupTimeoutMs', `must be below Fastify's pluginTimeout (${pluginTimeout} ms), so that a database that does not answer fails with its cause`)
  }
  return Math.min(DEFAULTS.startupTimeoutMs, Math.floor(pluginTimeout / 2))
}

/**
 * Runs `work` (migrations, preloading) within `timeoutMs`. Its failure, or its not finishing in
 * time, rejects with FST_POLICY_CACHE_STORE_UNAVAILABLE whose message carries the root cause; what
 * it does after the deadline is ignored.
 */
export async function startWithin (timeoutMs: number, work: () => Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new StoreUnavailableError(
      `startup did not finish within ${timeoutMs} ms (startupTimeoutMs): the database did not answer in time`)), timeoutMs)
  })
  const working = work()
  // A late failure, after the deadline has already failed registration, is nobody's to handle.
  working.catch(() => {})
  try {
    await Promise.race([working, deadline])
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code
    if (typeof code === 'string' && code.startsWith('FST_POLICY_CACHE_')) throw err
    throw new StoreUnavailableError(`startup failed: ${causeChain(err)}`, { cause: err })
  } finally {
    clearTimeout(timer)
  }
}
