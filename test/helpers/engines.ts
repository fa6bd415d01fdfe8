/**
 * Two engines on one in-memory store, without HTTP: `a`'s notices are recorded (`sent`) and handed to
 * `b` by `deliver`, decoded as the receiver hands them over; `reads` says what the store was asked
 * since its last call. For tests of what a peer does with a notice.
 */
import { decodeEntry, type NoticeChange } from '../../lib/broadcast/notice.js'
import { PolicyCache } from '../../lib/policy-cache.js'
import { InstrumentedStore } from './instrumented-store.js'

export function twoEngines () {
  const store = new InstrumentedStore()
  const sent: NoticeChange[][] = []
  const engine = (serverId: string, notify: (changes: NoticeChange[]) => void) => new PolicyCache({
    store,
    serverId,
    maxTenants: 100,
    catchUpTimeoutMs: 2000,
    log: { warn: () => {} },
    notifier: { notify: async (changes) => { notify(changes); return { acked: 0, total: 0 } }, status: () => [] }
  })
  const a = engine('a', (changes) => sent.push(changes))
  const b = engine('b', () => {})
  /** What the store was asked since the last call. */
  let seen = { ...store.calls }
  const reads = () => {
    const now = { ...store.calls }
    const delta = { snapshot: now.snapshot - seen.snapshot, changesSince: now.changesSince - seen.changesSince }
    seen = now
    return delta
  }
  /** B receives the entries as the receiver hands them over: decoded. */
  const deliver = (changes: NoticeChange[]) => b.noticed(changes.map(decodeEntry))
  return { store, a, b, sent, reads, deliver }
}
