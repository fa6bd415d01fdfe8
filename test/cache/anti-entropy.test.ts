/**
 * The anti-entropy timer, on Node's mock timers: rounds every interval ± 10 %, never overlapping,
 * peers refreshed first, failures logged and survived, nothing after stop.
 */
import { mock } from 'node:test'
import { setImmediate as turn } from 'node:timers/promises'
import { test, type Test } from 'tap'
import { AntiEntropy, type AntiEntropyOptions } from '../../lib/cache/anti-entropy.js'

const INTERVAL = 1000

/** Mock `setTimeout` for this test only; `turn()` (a real setImmediate) lets promise chains settle. */
function mockTimers (t: Test) {
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => mock.timers.reset())
  return (ms: number) => mock.timers.tick(ms)
}

function recorder () {
  const logs: Array<{ level: 'info' | 'warn', obj: Record<string, unknown>, msg: string }> = []
  return {
    logs,
    log: {
      info: (obj: object, msg: string) => { logs.push({ level: 'info', obj: obj as Record<string, unknown>, msg }) },
      warn: (obj: object, msg: string) => { logs.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }) }
    }
  }
}

/** What a round that found nothing to do resolves with. */
const NOTHING = Object.freeze({ behind: [], repaired: [] })

function start (t: Test, options: Partial<AntiEntropyOptions> & Pick<AntiEntropyOptions, 'sync'>) {
  const { logs, log } = recorder()
  const antiEntropy = new AntiEntropy({ intervalMs: INTERVAL, log, ...options })
  t.teardown(() => antiEntropy.stop())
  antiEntropy.start()
  return { antiEntropy, logs }
}

test('the first round comes between 0.9 and 1.1 intervals; the next is scheduled when one ends', async (t) => {
  const tick = mockTimers(t)
  let rounds = 0
  start(t, { sync: async () => { rounds++; return NOTHING } })

  tick(INTERVAL * 0.9 - 1)
  t.equal(rounds, 0, 'not before 0.9 × the interval')
  tick(INTERVAL * 0.2 + 1)
  t.equal(rounds, 1, 'by 1.1 × the interval')
  await turn()
  tick(INTERVAL * 0.9 - 1)
  t.equal(rounds, 1, 'the next one is an interval later, not sooner')
  tick(INTERVAL * 0.2 + 1)
  t.equal(rounds, 2)
})

test('rounds never overlap: a slow round delays the next', async (t) => {
  const tick = mockTimers(t)
  let rounds = 0
  let finish!: () => void
  start(t, {
    sync: () => {
      rounds++
      return new Promise((resolve) => { finish = () => resolve(NOTHING) })
    }
  })
  tick(INTERVAL * 1.1)
  t.equal(rounds, 1)
  tick(INTERVAL * 10)
  await turn()
  t.equal(rounds, 1, 'no second round while the first runs')
  finish()
  await turn()
  tick(INTERVAL * 1.1)
  t.equal(rounds, 2, 'the next round an interval after the first ended')
})

test('each round syncs once; tenants caught up are logged', async (t) => {
  const tick = mockTimers(t)
  const calls: string[] = []
  const { logs } = start(t, {
    sync: async () => { calls.push('sync'); return { behind: ['t1', 't2'], repaired: [] } }
  })
  tick(INTERVAL * 1.1)
  await turn()
  tick(INTERVAL * 1.1)
  await turn()
  t.same(calls, ['sync', 'sync'])
  t.same(logs[0], { level: 'info', obj: { tenants: ['t1', 't2'] }, msg: 'policy-cache: sync caught up tenants that were behind' })
  t.equal(logs.length, 2)
})

test('tenants repaired (contents that differed from the database) are a warning', async (t) => {
  const tick = mockTimers(t)
  const { logs } = start(t, { sync: async () => ({ behind: [], repaired: ['t3'] }) })
  tick(INTERVAL * 1.1)
  await turn()
  t.same(logs, [{
    level: 'warn',
    obj: { tenants: ['t3'] },
    msg: 'policy-cache: sync reloaded tenants whose cached contents differed from the database (digest) or were ahead of it'
  }])
})

test('a round that catches nothing up logs nothing', async (t) => {
  const tick = mockTimers(t)
  let rounds = 0
  const { logs } = start(t, { sync: async () => { rounds++; return NOTHING } })
  tick(INTERVAL * 1.1)
  await turn()
  t.equal(rounds, 1)
  t.same(logs, [])
})

test('a failed sync is a warning, and the rounds go on', async (t) => {
  const tick = mockTimers(t)
  const syncError = new Error('database down')
  let syncs = 0
  const { logs } = start(t, {
    sync: async () => {
      syncs++
      if (syncs === 1) throw syncError
      return NOTHING
    }
  })
  tick(INTERVAL * 1.1)
  await turn()
  t.equal(syncs, 1)
  t.same(logs, [{ level: 'warn', obj: { err: syncError }, msg: 'policy-cache: sync failed' }])

  tick(INTERVAL * 1.1)
  await turn()
  t.equal(syncs, 2, 'still scheduling after failures')
})

test('stop: no round after it, even when it comes during a round', async (t) => {
  const tick = mockTimers(t)
  let rounds = 0
  let finish!: () => void
  const { antiEntropy } = start(t, {
    sync: () => {
      rounds++
      return new Promise((resolve) => { finish = () => resolve(NOTHING) })
    }
  })
  tick(INTERVAL * 1.1)
  t.equal(rounds, 1)
  antiEntropy.stop()
  finish()
  await turn()
  tick(INTERVAL * 10)
  t.equal(rounds, 1, 'the round in progress scheduled no other')

  let idle = 0
  const second = start(t, { sync: async () => { idle++; return NOTHING } })
  second.antiEntropy.stop()
  second.antiEntropy.stop()
  tick(INTERVAL * 10)
  t.equal(idle, 0, 'stopped before its first round; stop is idempotent')
})

test('an interval of 0 turns it off', async (t) => {
  const tick = mockTimers(t)
  let rounds = 0
  start(t, { intervalMs: 0, sync: async () => { rounds++; return NOTHING } })
  tick(86400000)
  t.equal(rounds, 0)
})

test('its timer does not keep the process alive', async (t) => {
  const timers = () => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length
  const before = timers()
  const { antiEntropy } = start(t, { intervalMs: 3600000, sync: async () => NOTHING })
  t.equal(timers(), before, 'unref\'d: not an active resource')
  antiEntropy.stop()
})
