/** Reading a watch (`policyCache.watch`, lib/cache/watchers.ts) in tests. */
import type { Watch, WatchEvent } from '../../lib/cache/watchers.js'

/** The next `count` events of a watch (fewer when it ends first). */
export async function take (watch: Watch, count: number): Promise<WatchEvent[]> {
  const events: WatchEvent[] = []
  const iterator = watch[Symbol.asyncIterator]()
  while (events.length < count) {
    const { value, done } = await iterator.next()
    if (done === true) break
    events.push(value)
  }
  return events
}

/** The revisions of change events (a reset as `reset@<revision>`, an end as `end@<code>`). */
export function revisions (events: WatchEvent[]): Array<number | string> {
  return events.map((event) => event.type === 'change' ? event.entry.revision : `${event.type}@${event.type === 'reset' ? event.revision : event.code}`)
}
