/**
 * PeerSet on its own (lib/broadcast/peer-set.ts): the URLs it hands to `apply` (seeds then members,
 * only when they change), and the re-resolution of a function-valued `peers` — scheduled only for a
 * function with a non-zero `refreshMs`, `refreshMs` ± 10 %, never again once stopped — on mocked timers.
 */
import { mock } from 'node:test'
import t, { type Test } from 'tap'
import { PeerList } from '../../lib/broadcast/peer-list.js'
import { PeerSet } from '../../lib/broadcast/peer-set.js'
import type { LiveMember } from '../../lib/membership/membership.js'

const log = { warn: (): void => {} }

const member = (url: string): LiveMember => ({ serverId: url.replace(/\W/g, ''), url, incarnation: 'i1', heartbeatAt: 0 })

/** A peer set over `seeds` (a list or a function), recording what it applies. */
function peerSet (seeds: string[] | (() => Promise<string[]>), refreshMs = 1000): { set: PeerSet, applied: string[][] } {
  const applied: string[][] = []
  const list = new PeerList({ peers: seeds, dropped: [], publicUrl: undefined, log })
  const set = new PeerSet({ seeds: list, initialSeeds: typeof seeds === 'function' ? [] : seeds, refreshMs, apply: (urls) => { applied.push(urls) }, log })
  return { set, applied }
}

/** Mocked setTimeout and Math.random (the jitter) for one test. */
function mockTimers (t: Test, random: number): void {
  mock.timers.enable({ apis: ['setTimeout'] })
  const realRandom = Math.random
  Math.random = () => random
  t.teardown(() => {
    mock.timers.reset()
    Math.random = realRandom
  })
}

/** Lets the promise callbacks of a refresh run. */
const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await Promise.resolve() }

t.test('apply is told the URLs only when they change: seeds first, then members', async (t) => {
  const { set, applied } = peerSet([])
  set.setMembers([])
  t.same(applied, [], 'no peers at all is no change')
  set.setMembers([member('http://10.0.0.2:3000')])
  set.setMembers([member('http://10.0.0.2:3000')])
  t.same(applied, [['http://10.0.0.2:3000']], 'the same members again change nothing')
  // Two URLs whose text run together reads as one are still two peers.
  set.setMembers([member('http://a.test/p'), member('http://b.test')])
  set.setMembers([member('http://a.test/phttp://b.test')])
  t.same(applied.slice(1), [['http://a.test/p', 'http://b.test'], ['http://a.test/phttp://b.test']])

  const seeded = peerSet(['http://10.0.0.1:3000'])
  seeded.set.setMembers([member('http://10.0.0.2:3000'), member('http://10.0.0.1:3000')])
  t.same(seeded.applied, [['http://10.0.0.1:3000', 'http://10.0.0.2:3000']], 'seeds first, a member among them once')
})

t.test('a static list, or refreshMs 0, is never resolved again', async (t) => {
  mockTimers(t, 0.5)
  const { set, applied } = peerSet(['http://10.0.0.1:3000'])
  set.start()
  mock.timers.tick(10_000)
  await settle()
  t.same(applied, [])

  let calls = 0
  const never = peerSet(async () => { calls++; return [] }, 0)
  never.set.start()
  mock.timers.tick(10_000)
  await settle()
  t.equal(calls, 0)
})

t.test('a function is resolved again every refreshMs ± 10 %, its answer applied', async (t) => {
  mockTimers(t, 1) // the jitter at its top: 1.1 × refreshMs
  let calls = 0
  const { set, applied } = peerSet(async () => [`http://10.0.0.${++calls}:3000`])
  set.start()
  mock.timers.tick(1099)
  await settle()
  t.equal(calls, 0, 'not before 1.1 × refreshMs')
  mock.timers.tick(1)
  await settle()
  t.equal(calls, 1)
  t.same(applied, [['http://10.0.0.1:3000']])
  mock.timers.tick(1100)
  await settle()
  t.equal(calls, 2, 'and again')
  await set.stop()
})

t.test('stop: no refresh after it, including the one a refresh in flight would schedule', async (t) => {
  mockTimers(t, 0.5)
  let calls = 0
  let release = (): void => {}
  const { set } = peerSet(async () => {
    calls++
    await new Promise<void>((resolve) => { release = resolve })
    return []
  })
  set.start()
  mock.timers.tick(1000)
  await settle()
  t.equal(calls, 1, 'a refresh in flight')
  let stopped = false
  const stopping = set.stop().then(() => { stopped = true })
  await settle()
  t.equal(stopped, false, 'stop waits for it')
  release()
  await stopping
  mock.timers.tick(10_000)
  await settle()
  t.equal(calls, 1, 'none scheduled after')

  const idle = peerSet(async () => { calls++; return [] })
  idle.set.start()
  await idle.set.stop()
  mock.timers.tick(10_000)
  await settle()
  t.equal(calls, 1, 'a pending timer is cleared')
})

t.test('a failing refresh is warned about once until one succeeds, then again at the next failure', async (t) => {
  const warnings: unknown[] = []
  let fail = true
  const list = new PeerList({ peers: async () => { if (fail) throw new Error('dns down'); return ['http://a.test'] }, dropped: [], publicUrl: undefined, log })
  const set = new PeerSet({ seeds: list, initialSeeds: [], refreshMs: 0, apply: () => {}, log: { warn: (entry: unknown) => { warnings.push(entry) } } })
  await set.refreshSeeds()
  await set.refreshSeeds()
  t.equal(warnings.length, 1, 'two failures in a row: one warning')
  fail = false
  await set.refreshSeeds()
  fail = true
  await set.refreshSeeds()
  t.equal(warnings.length, 2, 'a failure after a success is warned about again')
})
