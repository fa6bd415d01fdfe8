/**
 * lib/cache/watchers.ts on its own, with a changelog of the test's (a read function it can hold):
 * one read at a time per tenant, the pins, the buffered count, a close racing a load, and a
 * changelog behind the cache. test/cache/watch.test.ts covers the same through the plugin.
 */
import { setImmediate as turn } from 'node:timers/promises'
import { test } from 'tap'
import { Watchers, type WatchEvent } from '../../lib/cache/watchers.js'
import type { AuditEntry } from '../../lib/model.js'
import { take } from '../helpers/watch.js'

function entry (revision: number): AuditEntry {
  return { revision, change: { op: 'create-group', group: `g${revision}` }, origin: 'test', actor: null, committedAt: 0 }
}

/** Watchers over a changelog of `count` entries (more can be appended); each read can be held. */
function setup (count: number, { maxWatchers = 10, maxBuffered = 100 } = {}) {
  const log = Array.from({ length: count }, (_, i) => entry(i + 1))
  const pins: string[] = []
  let reads = 0
  let gate: Promise<void> | undefined
  const watchers = new Watchers({
    maxWatchers,
    maxBuffered,
    pin: (tenant) => pins.push(`pin ${tenant}`),
    unpin: (tenant) => pins.push(`unpin ${tenant}`),
    read: async (_tenant, after, limit) => {
      reads++
      await gate
      return { entries: log.filter((e) => e.revision > after).slice(0, limit) }
    }
  })
  return {
    watchers,
    log,
    pins,
    reads: () => reads,
    /** Holds every read until the function returned is called. */
    hold: () => {
      let release!: () => void
      gate = new Promise((resolve) => { release = resolve })
      return () => { gate = undefined; release() }
    }
  }
}

const revisionsOf = (events: WatchEvent[]) => events.map((event) => event.type === 'change' ? event.entry.revision : event.type)

test('the live feed reads once at a time per tenant: moves during a read are served by it or the next, each change once', async (t) => {
  const { watchers, log, reads, hold } = setup(2)
  const watch = await watchers.open('t1', undefined, async () => 2)
  const release = hold()
  log.push(entry(3), entry(4), entry(5))
  watchers.advanced('t1', 3)
  watchers.advanced('t1', 4)
  watchers.advanced('t1', 5)
  await turn()
  t.equal(reads(), 1, 'one read runs; the moves during it do not start another')
  release()
  t.same(revisionsOf(await take(watch, 3)), [3, 4, 5])
  t.equal(watch.buffered, 0)
  watch.close()
})

test('stats count the events waiting in every watch\'s queue', async (t) => {
  const { watchers, log } = setup(0)
  const a = await watchers.open('t1', undefined, async () => 0)
  const b = await watchers.open('t2', undefined, async () => 0)
  log.push(entry(1), entry(2))
  watchers.advanced('t1', 2)
  watchers.advanced('t2', 1)
  for (let i = 0; i < 5; i++) await turn()
  t.same(watchers.stats(), { watchers: 2, watchersDropped: 0, watchBuffered: 3 })
  await take(a, 1)
  t.equal(watchers.stats().watchBuffered, 2)
  a.close()
  b.close()
  t.same(watchers.stats(), { watchers: 0, watchersDropped: 0, watchBuffered: 0 })
})

test('a tenant is pinned while it has a watch, and unpinned with its last', async (t) => {
  const { watchers, pins } = setup(0)
  const a = await watchers.open('t1', undefined, async () => 0)
  const b = await watchers.open('t1', undefined, async () => 0)
  a.close()
  t.same(pins, ['pin t1', 'pin t1'], 'one watch left: still pinned')
  b.close()
  b.close()
  t.same(pins, ['pin t1', 'pin t1', 'unpin t1'])
  const c = await watchers.open('t1', undefined, async () => 0)
  c.close()
  t.same(pins.slice(3), ['pin t1', 'unpin t1'], 'a new watch after the last left: a new hub, a new pin')
})

test('closed while the tenant loads: the watch is refused and holds nothing', async (t) => {
  const { watchers, pins } = setup(0)
  let loaded!: (revision: number) => void
  const opening = watchers.open('t1', undefined, () => new Promise<number>((resolve) => { loaded = resolve }))
  await turn()
  watchers.close({ type: 'end', code: 'FST_POLICY_CACHE_CLOSING', message: 'closing' })
  loaded(0)
  await t.rejects(opening, { code: 'FST_POLICY_CACHE_CLOSING' })
  t.same(pins, ['pin t1', 'unpin t1'])
  t.equal(watchers.stats().watchers, 0)
})

test('once closed, a watch is refused before its tenant is pinned or loaded', async (t) => {
  const { watchers, pins } = setup(0)
  watchers.close({ type: 'end', code: 'FST_POLICY_CACHE_CLOSING', message: 'closing' })
  let loads = 0
  await t.rejects(watchers.open('t1', undefined, async () => { loads++; return 0 }), { code: 'FST_POLICY_CACHE_CLOSING' })
  t.equal(loads, 0, 'nothing loaded')
  t.same(pins, [], 'nothing pinned')
})

test('a changelog behind the cache: the live feed stops reading until the next move', async (t) => {
  const { watchers, log, reads } = setup(1)
  const watch = await watchers.open('t1', undefined, async () => 1)
  // The cache says 3, the changelog holds only 1.
  watchers.advanced('t1', 3)
  for (let i = 0; i < 20; i++) await turn()
  t.equal(reads(), 1, 'one read found nothing; no loop')
  log.push(entry(2), entry(3))
  watchers.advanced('t1', 4)
  t.same(revisionsOf(await take(watch, 2)), [2, 3])
  watch.close()
})
