/** A raw Server-Sent Events client over node:http, for the watch stream's tests. */
import { once } from 'node:events'
import http, { type IncomingMessage } from 'node:http'

/** One event as received: its fields, `data` parsed as JSON. */
export interface SseEvent {
  event: string
  id: string | undefined
  data: any
}

export interface SseClient {
  response: IncomingMessage
  /** Comment lines received so far (heartbeats). */
  comments: string[]
  /** Resolves once `count` comment lines have come. */
  commentsUntil: (count: number) => Promise<void>
  /** The next event; rejects when the stream ends before one comes. */
  next: () => Promise<SseEvent>
  /** Events until (and with) the first that `until` accepts. */
  until: (until: (event: SseEvent) => boolean) => Promise<SseEvent[]>
  /** Resolves when the server ends the stream (or the connection closes). */
  ended: Promise<void>
  /** Closes the connection. */
  close: () => void
}

/**
 * Opens `url` as an event stream; resolves once the response's head arrived (any status: a refusal's
 * JSON body is then in `events`' rejection — read `response` instead).
 */
export async function openStream (url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const request = http.get(url, { headers: { accept: 'text/event-stream', ...headers } })
  const [response] = await once(request, 'response') as [IncomingMessage]
  response.setEncoding('utf8')
  const events: SseEvent[] = []
  const comments: string[] = []
  let waiting: (() => void) | undefined
  let done = false
  let text = ''
  const wake = () => {
    const w = waiting
    waiting = undefined
    w?.()
  }
  response.on('data', (chunk: string) => {
    text += chunk
    for (let end = text.indexOf('\n\n'); end !== -1; end = text.indexOf('\n\n')) {
      const block = text.slice(0, end)
      text = text.slice(end + 2)
      const fields: Record<string, string> = {}
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          comments.push(line.slice(1).trim())
          continue
        }
        const colon = line.indexOf(':')
        fields[line.slice(0, colon)] = line.slice(colon + 1).replace(/^ /, '')
      }
      if (fields.event !== undefined || fields.data !== undefined) {
        events.push({ event: fields.event ?? 'message', id: fields.id, data: fields.data === undefined ? undefined : JSON.parse(fields.data) })
      }
    }
    wake()
  })
  const ended = new Promise<void>((resolve) => {
    const finish = () => {
      done = true
      wake()
      resolve()
    }
    response.on('end', finish)
    response.on('close', finish)
    response.on('error', finish)
  })
  const next = async (): Promise<SseEvent> => {
    for (;;) {
      const event = events.shift()
      if (event !== undefined) return event
      if (done) throw new Error('the stream ended')
      await new Promise<void>((resolve) => { waiting = resolve })
    }
  }
  const until = async (accept: (event: SseEvent) => boolean): Promise<SseEvent[]> => {
    const seen: SseEvent[] = []
    for (;;) {
      const event = await next()
      seen.push(event)
      if (accept(event)) return seen
    }
  }
  const commentsUntil = async (count: number): Promise<void> => {
    while (comments.length < count) {
      if (done) throw new Error('the stream ended')
      await new Promise<void>((resolve) => { waiting = resolve })
    }
  }
  return { response, comments, commentsUntil, next, until, ended, close: () => request.destroy() }
}
