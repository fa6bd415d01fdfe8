/**
 * A rolling restart under load (issue 10): three example-server processes on one database, finding
 * each other through its membership (no peer list), while callers keep writing to a random live
 * instance and checking on every instance with the latest revision they were told (`minRevision`).
 * Each instance is restarted in turn (SIGTERM, exit 0, started again with the same SERVER_ID and
 * port: a new incarnation), then one is killed (SIGKILL) and a replacement with a new SERVER_ID
 * joins. Then:
 *
 * 1. every acknowledged write is in the database's changelog at the revision it was answered, with
 *    its change and the instance it was sent to; whatever else the changelog holds is a write that
 *    was sent and failed (its commit outcome unknown to the caller); the final groups, grants and
 *    members are what replaying those writes in revision order gives;
 * 2. no check answered from a revision below its `minRevision`, and every check's answer is the
 *    replay's at the revision it reports;
 * 3. every live instance converges on the database: same revision and same view of every tenant;
 * 4. every graceful stop exits 0;
 * 5. every instance lists exactly the others in /servers, from the membership, with each one's
 *    current incarnation; the killed one leaves once its row expires.
 *
 * On SQLite the writes do not wait for the peers (`ACK_TIMEOUT_MS=0`): a check on another instance
 * right after a write is usually ahead of what that instance has been told, so (2) rests on the
 * `minRevision` catch-up (a cache answering as it is fails it dozens of times per run). On PostgreSQL
 * they wait up to 3 s for every peer's acknowledgement, so a graceful close has notices in flight.
 *
 * Failed writes and checks (refused connections, resets, 503 while an instance closes) are counted,
 * never asserted on. Waits are positive (health, /servers, acknowledged writes, convergence) with
 * deadlines far above what they take; no durations are asserted (bench/ measures them).
 */
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Kysely } from 'kysely'
import tap, { test, type Test } from 'tap'
import { startCluster, waitHealthy, waitPeers, type Cluster, type Instance } from '../../examples/demo.js'
import { createSqliteDb } from '../../lib/plugin.js'
import { dropPrefixed, POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'

tap.setTimeout(600000)

/** Short membership periods, so that a killed instance expires within seconds. */
const PERIODS = { MEMBERSHIP_HEARTBEAT_MS: '200', MEMBERSHIP_TTL_MS: '3000', MEMBERSHIP_POLL_MS: '100' }
/** Deadlines of the positive waits: far above what they take, even on a loaded 2-core machine. */
const START_DEADLINE_MS = 120000
const WAIT_DEADLINE_MS = 60000
/** Acknowledged writes to wait for between two steps, so that every incarnation serves load. */
const WRITES_PER_STEP = 6

const TENANTS = ['t1', 't2'] as const
const GROUPS = ['g1', 'g2'] as const
const USERS = ['u1', 'u2', 'u3'] as const
const PERMISSIONS = ['doc:read', 'doc:write', 'doc:delete'] as const
const CALLERS = 2
const PAUSE_MS = 100

type Change =
  | { op: 'create-group', group: string }
  | { op: 'assign-user' | 'unassign-user', group: string, user: string }
  | { op: 'add-permission' | 'remove-permission', group: string, permission: string }

interface Write {
  tenant: string
  change: Change
  /** The SERVER_ID of the instance it was sent to. */
  serverId: string
  /** Acknowledged: answered 2xx with a revision. */
  acked: boolean
  revision?: number
  changed?: boolean
  /** Why it failed: a status code and error code, or a network error. */
  failure?: string
  /** The step of the scenario it was sent in. */
  phase: string
}

interface Check {
  tenant: string
  user: string
  permission: string
  serverId: string
  minRevision: number
  revision: number
  allowed: boolean
}

/** A tenant's contents: group → its permissions and users. */
type State = Map<string, { permissions: Set<string>, users: Set<string> }>

/** A tenant view as `GET /tenants/:tenant` answers it (groups by name, lists sorted). */
interface View { revision: number, groups: Array<{ name: string, permissions: string[], users: string[], includes: string[] }> }

function pick<T> (items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)]
}

function randomChange (): Change {
  const group = pick(GROUPS)
  const op = pick(['assign-user', 'unassign-user', 'add-permission', 'remove-permission'] as const)
  return op === 'assign-user' || op === 'unassign-user' ? { op, group, user: pick(USERS) } : { op, group, permission: pick(PERMISSIONS) }
}

function describe (change: Change): string {
  return [change.op, change.group, 'user' in change ? change.user : '', 'permission' in change ? change.permission : ''].join(' ')
}

/** One JSON request that never throws: the status and body, or the network error. */
async function send (method: 'GET' | 'POST', url: string, body?: object, timeoutMs = 30000): Promise<{ status: number, body: any } | { error: string }> {
  try {
    const res = await fetch(url, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs)
    })
    const text = await res.text()
    let parsed: unknown = text
    try { parsed = JSON.parse(text) } catch {}
    return { status: res.status, body: parsed }
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    return { error: cause?.code ?? (err as Error).name }
  }
}

function apply (state: State, change: Change): void {
  if (change.op === 'create-group') {
    if (!state.has(change.group)) state.set(change.group, { permissions: new Set(), users: new Set() })
    return
  }
  const group = state.get(change.group)
  if (group === undefined) throw new Error(`${change.op} on group ${change.group}, which the replay does not have`)
  switch (change.op) {
    case 'assign-user': group.users.add(change.user); break
    case 'unassign-user': group.users.delete(change.user); break
    case 'add-permission': group.permissions.add(change.permission); break
    case 'remove-permission': group.permissions.delete(change.permission); break
  }
}

function copy (state: State): State {
  return new Map([...state].map(([name, g]) => [name, { permissions: new Set(g.permissions), users: new Set(g.users) }]))
}

function viewOf (state: State): View['groups'] {
  return [...state].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    .map(([name, g]) => ({ name, permissions: [...g.permissions].sort(), users: [...g.users].sort(), includes: [] }))
}

/** Whether `change`'s fact already holds in `state` (what a write that changed nothing found). */
function holds (state: State, change: Change): boolean {
  if (change.op === 'create-group') return state.has(change.group)
  const group = state.get(change.group)
  if (group === undefined) return false
  switch (change.op) {
    case 'assign-user': return group.users.has(change.user)
    case 'unassign-user': return !group.users.has(change.user)
    case 'add-permission': return group.permissions.has(change.permission)
    case 'remove-permission': return !group.permissions.has(change.permission)
  }
}

function allowed (state: State, user: string, permission: string): boolean {
  return [...state.values()].some((g) => g.users.has(user) && g.permissions.has(permission))
}

/** What the database holds of a tenant: its revision, changelog and contents. */
async function readTenant (db: Kysely<any>, prefix: string, tenant: string): Promise<{ revision: number, changelog: Array<{ revision: number, change: Change, origin: string }>, view: View['groups'] }> {
  const row = await db.selectFrom(`${prefix}tenants`).select('revision').where('tenant', '=', tenant).executeTakeFirst()
  const log = await db.selectFrom(`${prefix}changelog`).selectAll().where('tenant', '=', tenant).orderBy('revision').execute()
  const groups = await db.selectFrom(`${prefix}groups`).select('name').where('tenant', '=', tenant).execute()
  const grants = await db.selectFrom(`${prefix}grants`).selectAll().where('tenant', '=', tenant).execute()
  const members = await db.selectFrom(`${prefix}members`).selectAll().where('tenant', '=', tenant).execute()
  const state: State = new Map(groups.map((g) => [g.name as string, { permissions: new Set<string>(), users: new Set<string>() }]))
  for (const g of grants) state.get(g.group_name)?.permissions.add(g.permission)
  for (const m of members) state.get(m.group_name)?.users.add(m.user_id)
  return {
    revision: Number(row?.revision ?? 0),
    changelog: log.map((r) => ({
      revision: Number(r.revision),
      origin: r.origin as string,
      change: (r.op === 'assign-user' || r.op === 'unassign-user'
        ? { op: r.op, group: r.group_name, user: r.user_id }
        : r.op === 'add-permission' || r.op === 'remove-permission'
          ? { op: r.op, group: r.group_name, permission: r.permission }
          : { op: r.op, group: r.group_name }) as Change
    })),
    view: viewOf(state)
  }
}

/** The /servers peers of `instance` (empty when it does not answer). */
async function listed (instance: Instance): Promise<Array<{ url: string, source: string, incarnation: string | null }>> {
  const res = await send('GET', `${instance.url}/servers`, undefined, 5000)
  return 'status' in res && res.status === 200 ? res.body.peers : []
}

/**
 * Waits until every instance of `instances` lists exactly the others (waitPeers), each from the
 * membership, and all of them agree on each one's incarnation; returns incarnation by serverId.
 * Peers are matched by URL: a peer's `serverId` in /servers is what its replies said, null until
 * it has answered a notice.
 */
async function waitMembers (instances: readonly Instance[]): Promise<Map<string, string>> {
  await waitPeers(instances, WAIT_DEADLINE_MS)
  const deadline = Date.now() + WAIT_DEADLINE_MS
  for (;;) {
    const seen = new Map<string, Set<string>>()
    let complete = true
    for (const instance of instances) {
      const peers = await listed(instance)
      for (const other of instances.filter((o) => o !== instance)) {
        const peer = peers.find((p) => p.url === other.url)
        if (peer === undefined || peer.source !== 'membership' || peer.incarnation === null) {
          complete = false
          continue
        }
        const set = seen.get(other.serverId) ?? new Set()
        set.add(peer.incarnation)
        seen.set(other.serverId, set)
      }
    }
    if (complete && [...seen.values()].every((set) => set.size === 1)) {
      return new Map([...seen].map(([serverId, set]) => [serverId, [...set][0]]))
    }
    if (Date.now() > deadline) throw new Error(`the instances did not agree on each other's membership within ${WAIT_DEADLINE_MS} ms`)
    await sleep(100)
  }
}

/** Waits until none of `instances` lists `gone` in its /servers. */
async function waitGone (instances: readonly Instance[], gone: Instance): Promise<void> {
  const deadline = Date.now() + WAIT_DEADLINE_MS
  for (;;) {
    const lists = await Promise.all(instances.map(async (instance) => (await send('GET', `${instance.url}/servers`, undefined, 5000))))
    if (lists.every((res) => 'status' in res && res.status === 200 && !res.body.peers.some((p: { url: string }) => p.url === gone.url))) return
    if (Date.now() > deadline) throw new Error(`${gone.serverId} was still listed after ${WAIT_DEADLINE_MS} ms`)
    await sleep(100)
  }
}

interface Load {
  writes: Write[]
  checks: Check[]
  /** Checks that answered from below their minRevision, or 412 (the database behind a revision it acknowledged). */
  violations: string[]
  failedChecks: number
  /** The step of the scenario now, recorded with each write. */
  phase: string
  /** Resolves once `count` more writes have been acknowledged than now. */
  progress: (count: number) => Promise<void>
  stop: () => Promise<void>
}

/**
 * Starts `CALLERS` callers, each a loop until stopped: a random write to a random instance of
 * `targets` (read at every turn), then a check of that tenant on every target with `minRevision` =
 * the latest revision this caller was told for it, then a pause of `PAUSE_MS`.
 */
function startLoad (targets: Instance[]): Load {
  const writes: Write[] = []
  const checks: Check[] = []
  const violations: string[] = []
  let failedChecks = 0
  let acked = 0
  const stopping = new AbortController()
  const waiters: Array<{ at: number, resolve: () => void }> = []
  const onAck = (): void => {
    acked++
    for (const waiter of waiters.filter((w) => w.at <= acked)) {
      waiters.splice(waiters.indexOf(waiter), 1)
      waiter.resolve()
    }
  }

  const caller = async (): Promise<void> => {
    const latest = new Map<string, number>()
    const told = (tenant: string, revision: number): void => {
      if (revision > (latest.get(tenant) ?? 0)) latest.set(tenant, revision)
    }
    while (!stopping.signal.aborted) {
      const tenant = pick(TENANTS)
      const change = randomChange()
      const target = pick(targets)
      const { op, ...fields } = change
      const res = await send('POST', `${target.url}/${op}`, { tenant, ...fields })
      if ('status' in res && res.status >= 200 && res.status < 300) {
        writes.push({ phase: load.phase, tenant, change, serverId: target.serverId, acked: true, revision: res.body.revision, changed: res.body.changed })
        told(tenant, res.body.revision)
        onAck()
      } else {
        writes.push({ phase: load.phase, tenant, change, serverId: target.serverId, acked: false, failure: 'status' in res ? `${res.status} ${res.body?.code ?? ''}`.trim() : res.error })
      }
      const minRevision = latest.get(tenant) ?? 0
      await Promise.all([...targets].map(async (instance) => {
        const user = pick(USERS)
        const permission = pick(PERMISSIONS)
        const query = `tenant=${tenant}&user=${user}&permission=${permission}${minRevision > 0 ? `&minRevision=${minRevision}` : ''}`
        const answer = await send('GET', `${instance.url}/check-access?${query}`)
        if (!('status' in answer) || answer.status !== 200) {
          failedChecks++
          if ('status' in answer && answer.status === 412) violations.push(`${instance.serverId} answered 412 to minRevision=${minRevision} of ${tenant}, a revision it acknowledged`)
          return
        }
        const { revision } = answer.body as { revision: number }
        checks.push({ tenant, user, permission, serverId: instance.serverId, minRevision, revision, allowed: answer.body.allowed })
        if (revision < minRevision) violations.push(`${instance.serverId} answered ${tenant} from revision ${revision} < minRevision ${minRevision}`)
        told(tenant, revision)
      }))
      await sleep(PAUSE_MS)
    }
  }
  const load: Load = {
    phase: 'steady',
    writes,
    checks,
    violations,
    get failedChecks () { return failedChecks },
    progress: (count) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`fewer than ${count} writes acknowledged within ${WAIT_DEADLINE_MS} ms`)), WAIT_DEADLINE_MS).unref()
      waiters.push({ at: acked + count, resolve: () => { clearTimeout(timer); resolve() } })
    }),
    stop: async () => {
      stopping.abort()
      await Promise.all(callers)
    }
  }
  const callers = Array.from({ length: CALLERS }, caller)
  return load
}

/** Polls every instance's view of `tenant` until all equal `expected` (revision and groups). */
async function waitConverged (instances: readonly Instance[], tenant: string, expected: View): Promise<Map<string, View | string>> {
  const deadline = Date.now() + WAIT_DEADLINE_MS
  for (;;) {
    const views = new Map<string, View | string>()
    for (const instance of instances) {
      const res = await send('GET', `${instance.url}/tenants/${tenant}`, undefined, 5000)
      views.set(instance.serverId, 'status' in res && res.status === 200 ? { revision: res.body.revision, groups: res.body.groups } : JSON.stringify(res))
    }
    const equal = [...views.values()].every((view) => JSON.stringify(view) === JSON.stringify(expected))
    if (equal || Date.now() > deadline) return views
    await sleep(200)
  }
}

/** SIGTERM, and the exit code (or signal) once the process has exited. */
async function stopGracefully (instance: Instance): Promise<number | string> {
  instance.child.kill('SIGTERM')
  return await instance.exited
}

async function rollingRestart (t: Test, cluster: Cluster, db: Kysely<any>, prefix: string): Promise<void> {
  await waitHealthy(cluster, START_DEADLINE_MS)
  const targets = [...cluster.instances]
  let incarnations = await waitMembers(targets)
  t.equal(incarnations.size, 3, 'three members, each listed by the other two')

  // Setup: the groups, on one instance; acknowledged writes like the load's.
  const setup: Write[] = []
  for (const tenant of TENANTS) {
    for (const group of GROUPS) {
      const res = await send('POST', `${targets[0].url}/create-group`, { tenant, group })
      t.equal('status' in res && res.status, 200, `create ${tenant}/${group}`)
      if ('status' in res) setup.push({ phase: 'setup', tenant, change: { op: 'create-group', group }, serverId: targets[0].serverId, acked: true, revision: res.body.revision, changed: res.body.changed })
    }
  }

  const load = startLoad(targets)
  t.teardown(() => load.stop())
  await load.progress(WRITES_PER_STEP)

  // Each instance in turn: SIGTERM, exit 0, out of the others' send sets, then the same SERVER_ID
  // and port again, a new incarnation, in every /servers; load meanwhile on all.
  for (const old of [...targets]) {
    load.phase = `SIGTERM to ${old.serverId}`
    const exit = await stopGracefully(old)
    t.equal(exit, 0, `${old.serverId}: SIGTERM under load, exit 0`)
    targets.splice(targets.indexOf(old), 1)
    await waitPeers(targets, WAIT_DEADLINE_MS)
    load.phase = `${old.serverId} restarting`
    const again = await cluster.add(old.serverId, old.port)
    await waitHealthy({ ...cluster, instances: [again] }, START_DEADLINE_MS)
    targets.push(again)
    const now = await waitMembers(targets)
    t.not(now.get(again.serverId), incarnations.get(old.serverId), `${old.serverId} restarted on port ${old.port}: every other instance lists its new incarnation`)
    incarnations = now
    load.phase = 'steady'
    await load.progress(WRITES_PER_STEP)
  }

  // A crash: SIGKILL one, start a replacement with a new SERVER_ID on a new port.
  const killed = targets[1]
  load.phase = `SIGKILL to ${killed.serverId}`
  killed.child.kill('SIGKILL')
  const killedAt = Date.now()
  t.equal(await killed.exited, 'SIGKILL', `${killed.serverId} killed`)
  targets.splice(targets.indexOf(killed), 1)
  const replacement = await cluster.add('server-4')
  // While the replacement starts: the killed one's row expires out of the survivors' send sets.
  await waitGone(targets, killed)
  t.comment(`${killed.serverId} out of every survivor's /servers ${Date.now() - killedAt} ms after SIGKILL (ttl ${PERIODS.MEMBERSHIP_TTL_MS} ms; not asserted)`)
  await waitHealthy({ ...cluster, instances: [replacement] }, START_DEADLINE_MS)
  targets.push(replacement)
  incarnations = await waitMembers(targets)
  load.phase = 'steady'
  t.ok(incarnations.has('server-4') && !incarnations.has(killed.serverId), `server-4 is in every /servers, ${killed.serverId} in none`)
  const row = await db.selectFrom(`${prefix}instances`).select(['status']).where('server_id', '=', killed.serverId).executeTakeFirst()
  t.not(row?.status, 'active', `${killed.serverId}'s row expired (${row?.status ?? 'deleted'}), not left gracefully: nobody closed it`)
  await load.progress(WRITES_PER_STEP)
  await load.stop()

  const writes = [...setup, ...load.writes]
  const ackedWrites = writes.filter((w) => w.acked)
  const failed = writes.filter((w) => !w.acked)
  const failures = new Map<string, number>()
  for (const w of failed) failures.set(`${w.phase}: ${w.failure ?? ''}`, (failures.get(`${w.phase}: ${w.failure ?? ''}`) ?? 0) + 1)
  t.comment(`${ackedWrites.length} writes acknowledged, ${failed.length} failed (${[...failures].map(([why, n]) => `${why} ×${n}`).join('; ')}); ${load.checks.length} checks answered, ${load.failedChecks} failed`)

  // (2) No check below its minRevision.
  t.same(load.violations, [], 'no check answered from below the minRevision its caller was told')
  t.ok(load.checks.some((c) => c.minRevision > 0), 'checks carried a minRevision')

  for (const tenant of TENANTS) {
    const stored = await readTenant(db, prefix, tenant)

    // (1) Every acknowledged write is in the changelog at its revision, as sent, from its instance.
    t.same(stored.changelog.map((c) => c.revision), Array.from({ length: stored.revision }, (_, i) => i + 1), `${tenant}: the changelog is 1…${stored.revision}, gap-free`)
    const byRevision = new Map(stored.changelog.map((entry) => [entry.revision, entry]))
    const changedAcks = ackedWrites.filter((w) => w.tenant === tenant && w.changed === true)
    const missing = changedAcks.filter((w) => {
      const entry = byRevision.get(w.revision!)
      return entry === undefined || describe(entry.change) !== describe(w.change) || entry.origin !== w.serverId
    })
    t.same(missing.map((w) => `${w.revision}: ${describe(w.change)} on ${w.serverId}`), [], `${tenant}: every acknowledged write (${changedAcks.length}) is in the database at its revision`)
    t.equal(new Set(changedAcks.map((w) => w.revision)).size, changedAcks.length, `${tenant}: no two acknowledged writes share a revision`)

    // Whatever else was committed is a write that failed on its way back (sent, no answer).
    const acknowledgedRevisions = new Set(changedAcks.map((w) => w.revision))
    const candidates = failed.filter((w) => w.tenant === tenant)
    const unexplained: string[] = []
    let committedUnacknowledged = 0
    for (const entry of stored.changelog.filter((e) => !acknowledgedRevisions.has(e.revision))) {
      const i = candidates.findIndex((w) => describe(w.change) === describe(entry.change) && w.serverId === entry.origin)
      if (i === -1) unexplained.push(`${entry.revision}: ${describe(entry.change)} by ${entry.origin}`)
      else {
        candidates.splice(i, 1)
        committedUnacknowledged++
      }
    }
    t.same(unexplained, [], `${tenant}: the database holds no write but the acknowledged ones and ${committedUnacknowledged} sent whose answer was lost`)

    // Replay in revision order: the final contents, each unchanged write's fact, each check's answer.
    const states: State[] = [new Map()]
    for (const entry of stored.changelog) {
      const next = copy(states[states.length - 1])
      apply(next, entry.change)
      states.push(next)
    }
    t.same(stored.view, viewOf(states[stored.revision]), `${tenant}: groups, grants and members are the replay of the writes in revision order`)
    const wrongUnchanged = ackedWrites.filter((w) => w.tenant === tenant && w.changed === false && !holds(states[w.revision!], w.change))
    t.same(wrongUnchanged.map((w) => `${w.revision}: ${describe(w.change)}`), [], `${tenant}: a write answered "unchanged" found its fact already true at the revision it answered`)
    const wrongChecks = load.checks.filter((c) => c.tenant === tenant && (states[c.revision] === undefined || allowed(states[c.revision], c.user, c.permission) !== c.allowed))
    t.same(wrongChecks, [], `${tenant}: every check (${load.checks.filter((c) => c.tenant === tenant).length}) answered what the database held at the revision it reported`)

    // (3) Every live instance converges on the database.
    const expected: View = { revision: stored.revision, groups: stored.view }
    const views = await waitConverged(targets, tenant, expected)
    for (const [serverId, view] of views) t.same(view, expected, `${tenant}: ${serverId} converged on revision ${stored.revision}`)
  }

  // (4) The last graceful stops: exit 0 too.
  for (const instance of targets) t.equal(await stopGracefully(instance), 0, `${instance.serverId}: SIGTERM, exit 0`)

  // Nothing any incarnation wrote outside its JSON log: no crash, no unhandled rejection, no warning.
  t.same(cluster.instances.map((i) => i.stderr()).filter((text) => text !== ''), [], `nothing on the stderr of the ${cluster.instances.length} processes`)
  const errors = readFileSync(cluster.logFile, 'utf8').split('\n').filter((line) => /"level":(50|60)/.test(line))
  if (errors.length > 0) t.comment(`errors logged (not asserted):\n${errors.join('\n')}`)
}

test('rolling restart under load, SQLite, writes not waiting for peers: acknowledged writes kept, minRevision honoured, all converge', async (t) => {
  const cluster = await startCluster({ size: 3, env: { ...PERIODS, ACK_TIMEOUT_MS: '0', SYNC_INTERVAL_MS: '1000' } })
  t.teardown(async () => {
    await cluster.stop()
    rmSync(cluster.dir, { recursive: true, force: true })
  })
  // Opened once the servers have created the file and its tables (one connection, read-only use).
  await waitHealthy(cluster, START_DEADLINE_MS)
  const db = createSqliteDb(join(cluster.dir, 'policy.db'))
  t.teardown(() => db.destroy())
  await rollingRestart(t, cluster, db, 'policy_')
})

test('rolling restart under load, PostgreSQL, writes waiting for every peer', async (t) => {
  const db = await postgresDb()
  if (db === undefined) return unreachable(t, 'PostgreSQL', POSTGRES_URL)
  const prefix = randomPrefix()
  const cluster = await startCluster({ size: 3, policyDb: POSTGRES_URL, env: { ...PERIODS, ACK_TIMEOUT_MS: '3000', SYNC_INTERVAL_MS: '1000', POLICY_TABLE_PREFIX: prefix } })
  t.teardown(async () => {
    await cluster.stop()
    await dropPrefixed(db, prefix)
    await db.destroy()
    rmSync(cluster.dir, { recursive: true, force: true })
  })
  await rollingRestart(t, cluster, db, prefix)
})
