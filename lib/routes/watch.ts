/**
 * `GET /tenants/:tenant/watch`: the engine's `watch` as Server-Sent Events. The route only frames
 * events and writes them at the pace of the client's socket; the bounds (open streams, events
 * waiting per stream) are the engine's.
 *
 * Events: `ready` (id: the revision the stream starts after), `change` (id: its revision, data: the
 * audit feed's entry — one event per revision, a batch's changes in one), `reset` (id: the revision
 * the stream continues after) and a final `end` with a code; a comment every `heartbeatMs`.
 */
import { once } from 'node:events'
import type { OutgoingHttpHeaders } from 'node:http'
import type { FastifyReply } from 'fastify'
import { InvalidInputError } from '../errors.js'
import type { AuditEntry, Change } from '../model.js'
import type { PolicyCache } from '../policy-cache.js'
import type { WatchEvent } from '../cache/watchers.js'
import { REVISION_TEXT_PATTERN } from './schemas.js'

const REVISION_TEXT = new RegExp(REVISION_TEXT_PATTERN)

/** An audit entry as the feed's reply and the watch stream carry it: `operation` and its fields, or a batch's `changes`, named as on the wire. */
export function wireEntry ({ revision, change, origin, actor, committedAt }: AuditEntry) {
  const wire = ({ op, ...fields }: Change) => ({ operation: op, ...fields })
  const body = change.op === 'batch' ? { changes: change.changes.map(wire) } : wire(change)
  return { revision, ...body, origin, actor, committedAt }
}

/** One Server-Sent Event: `id` (when given), `event` and one `data` line of JSON (which never holds a line break). */
function frame (event: string, id: number | undefined, data: object): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
}

/** A watch event as a Server-Sent Event. */
export function sseFrame (event: WatchEvent): string {
  switch (event.type) {
    case 'change':
      return frame('change', event.entry.revision, wireEntry(event.entry))
    case 'reset': {
      const { type: _type, ...data } = event
      return frame('reset', event.revision, data)
    }
    case 'end':
      return frame('end', undefined, { code: event.code, message: event.message })
  }
}

/**
 * Where a stream resumes: the `Last-Event-ID` header (what an EventSource sends when it reconnects)
 * wins over the `after` query parameter; a header that is not a revision → 400.
 */
export function resumeAfter (lastEventId: unknown, after: string | undefined): number | undefined {
  if (lastEventId !== undefined) {
    if (!REVISION_TEXT.test(String(lastEventId))) throw new InvalidInputError('Last-Event-ID', 'must be a revision (a non-negative integer), the id of an event of this stream')
    return Number(lastEventId)
  }
  return after === undefined ? undefined : Number(after)
}

/**
 * Opens the watch (its refusals are the route's coded error replies), then takes the reply over and
 * streams until the watch ends, the client goes or the instance closes. Writes wait for the socket
 * to drain: meanwhile the engine queues the events, and drops a stream whose client falls
 * `maxBuffered` behind. A stream ended while its client does not read is destroyed: at once on
 * shutdown, after `heartbeatMs` otherwise (time for the client to read its final event).
 */
export async function streamWatch (engine: PolicyCache, reply: FastifyReply, tenant: string, after: number | undefined, heartbeatMs: number): Promise<void> {
  const watch = await engine.watch(tenant, { after })
  reply.hijack()
  const res = reply.raw
  // The client went while the watch opened.
  if (res.destroyed) {
    watch.close()
    return
  }
  res.writeHead(200, {
    // Headers the host's hooks set (CORS, …): Fastify never stores an undefined one.
    ...reply.getHeaders() as OutgoingHttpHeaders,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    // nginx: pass each event on at once.
    'x-accel-buffering': 'no',
    'policy-revision': String(watch.after)
  })
  // HEAD (Fastify's twin of the GET route): the headers only, nothing held open.
  if (reply.request.method === 'HEAD') {
    watch.close()
    res.end()
    return
  }
  res.write(frame('ready', watch.after, { tenant, revision: watch.after }))
  const heartbeat = setInterval(() => {
    if (!res.writableNeedDrain) res.write(': heartbeat\n\n')
  }, heartbeatMs).unref()
  // Ends a wait for the socket when the watch ends by itself or is closed.
  const stopped = new AbortController()
  watch.ended.then(() => stopped.abort(), () => {})
  res.on('close', () => {
    clearInterval(heartbeat)
    watch.close()
  })
  let last: WatchEvent | undefined
  for await (const event of watch) {
    last = event
    if (!res.write(sseFrame(event)) && event.type !== 'end') {
      await once(res, 'drain', { signal: stopped.signal }).catch(() => {})
    }
  }
  clearInterval(heartbeat)
  if (res.destroyed) return
  // (Read before `end()`, which clears it.)
  const backedUp = res.writableNeedDrain
  res.end()
  if (!backedUp) return
  // The client does not read: its final event may never be taken.
  if (last?.type === 'end' && last.code === 'FST_POLICY_CACHE_CLOSING') {
    res.destroy()
  } else {
    const timer = setTimeout(() => res.destroy(), heartbeatMs).unref()
    res.on('close', () => clearTimeout(timer))
  }
}
