/**
 * The cached tenants: an LRU of TenantStates with single-flight loading, coalesced catch-up (by the
 * change a notice carried when exactly one revision behind it, else from the store's changelog, a
 * full reload only when the log no longer reaches), and the anti-entropy sync that polls the
 * revisions of every cached tenant in one query.
 *
 * Invariants: a tenant's cached revision never goes backwards; at most one catch-up per tenant runs
 * at a time, and notices arriving meanwhile share exactly one trailing run.
 *
 * Tenants never written (revision 0) are remembered apart, in a small LRU of their own
 * ({@link MAX_ABSENT_TENANTS}): a flood of requests for tenants that do not exist cannot evict real
 * ones from the `maxTenants` LRU. An absent tenant catches up like a cached one (its own write, a
 * peer's notice, the sync) and then moves to the real LRU.
 */
import { LRUCache } from 'lru-cache'
import type { LoggedChange } from '../model.js'
import type { PolicyStore } from '../store/types.js'
import { TenantState } from './tenant-state.js'

/** Counters for `/health`, stats and metrics. */
export interface CacheStats {
  /** Tenants held now. */
  tenants: number
  hits: number
  misses: number
  /** Initial loads from a snapshot. */
  loads: number
  /** Catch-ups served from the changelog. */
  deltaCatchUps: number
  /** Catch-ups served by the change a peer's notice carried (no database read). */
  carriedCatchUps: number
  /** Catch-ups that had to reload the whole tenant, refreshes and repairs. */
  fullReloads: number
  /** Reloads because the cached contents differed from the database's (digest, or a revision ahead of it). */
  repairs: number
  /** Tenants dropped by the `maxTenants` bound. */
  evictions: number
}

/**
 * What one catch-up run may use: the change a notice carried at the highest revision asked for, with
 * the digest the tenant has after it, or null when some caller needs the store's current revision (a
 * sync, a `minRevision`, a notice carrying nothing).
 */
type Carried = { change: LoggedChange, digest: string } | null

/** What a run of a tenant's single-flight slot does; requests queued meanwhile merge into one. */
interface Request {
  /** Bring the tenant up to the store's revision (or to the carried change's). */
  catchUp: boolean
  /** Meaningful only with `catchUp`. */
  carried: Carried
  /**
   * Read a full snapshot and install it whatever its revision: `always` (a `refresh`), or `repair` of
   * a state found diverging from the database — done only if that state is still the one cached
   * (a state installed since came from the database after the request, and serves it).
   */
  reload?: { kind: 'always' } | { kind: 'repair', suspect: TenantState, spaced: boolean }
}

interface CatchUpSlot {
  /** A trailing run requested while one was running: its waiters and what it does. */
  next?: { promise: Promise<void>, resolve: () => void, reject: (err: unknown) => void, request: Request }
}

/** What a run serving both `a` and `b` may use: the later carried change, or the changelog if either needs it. */
function mergeCarried (a: Carried, b: Carried): Carried {
  if (a === null || b === null) return null
  // Stryker disable next-line EqualityOperator: two changes carried at one revision are both a peer's word (applied only unverified)
  return b.change.revision > a.change.revision ? b : a
}

/** One request doing what `a` and `b` (asked later) both asked for. */
function merge (a: Request, b: Request): Request {
  const carried = !a.catchUp ? b.carried : !b.catchUp ? a.carried : mergeCarried(a.carried, b.carried)
  const reload = a.reload?.kind === 'always' ? a.reload : b.reload ?? a.reload
  return { catchUp: a.catchUp || b.catchUp, carried, reload }
}

/** Repairs of one tenant that notices asked for are at least this far apart (a flood cannot cost a reload each). */
export const REPAIR_SPACING_MS = 1000
/** Snapshots a reload reads at most when the cached state moved past each one while it was read. */
const RELOAD_ATTEMPTS = 3

/** Resolves after `ms` without keeping the process alive. */
function pause (ms: number): Promise<void> {
  return new Promise((resolve) => { setTimeout(resolve, ms).unref() })
}

/** What `sync` found. */
export interface SyncResult {
  /** Cached tenants behind the database, caught up. */
  behind: string[]
  /** Cached tenants whose contents differed from the database's (digest) or were ahead of it, reloaded. */
  repaired: string[]
}

export interface TenantCacheOptions {
  store: PolicyStore
  maxTenants: number
  /** Least time between two repairs of one tenant asked for by notices. Default {@link REPAIR_SPACING_MS}. */
  repairSpacingMs?: number
  /**
   * Told, synchronously, each time a tenant's cached state moves (a change applied in place, a load,
   * a reload, a repair), with its revision now: the watch streams (lib/cache/watchers.ts) follow it.
   */
  onAdvance?: ((tenant: string, revision: number) => void) | undefined
}

/** Never-written tenants remembered (answered without a query: denied, revision 0). */
export const MAX_ABSENT_TENANTS = 1000

export class TenantCache {
  readonly #store: PolicyStore
  readonly #tenants: LRUCache<string, TenantState>
  /** Tenants at revision 0, apart from `#tenants` (see the file's comment). */
  readonly #absent: LRUCache<string, TenantState>
  readonly #loading = new Map<string, Promise<TenantState>>()
  readonly #catchUps = new Map<string, CatchUpSlot>()
  readonly #stats = { hits: 0, misses: 0, loads: 0, deltaCatchUps: 0, carriedCatchUps: 0, fullReloads: 0, repairs: 0, evictions: 0 }
  readonly #repairSpacingMs: number
  /** States installed by a repair, and when: the next repair a notice asks for waits until then + spacing. */
  readonly #repairedAt = new WeakMap<TenantState, number>()
  /**
   * The tenant `peek` answered last and its state: while set, that tenant is the most recently used,
   * so answering it again needs no LRU bookkeeping. Forgotten on every install, eviction and clear.
   */
  #hotTenant: string | undefined
  #hotState: TenantState | undefined
  /**
   * Pinned tenants (watched: `pin`), with how many pins each and its state now: they stay cached
   * while pinned, whatever the LRU bounds drop, so that notices and the sync keep moving them.
   */
  readonly #pinned = new Map<string, { pins: number, state: TenantState | undefined }>()
  readonly #onAdvance: ((tenant: string, revision: number) => void) | undefined

  constructor ({ store, maxTenants, repairSpacingMs = REPAIR_SPACING_MS, onAdvance }: TenantCacheOptions) {
    this.#store = store
    this.#repairSpacingMs = repairSpacingMs
    this.#onAdvance = onAdvance
    this.#tenants = new LRUCache({
      max: maxTenants,
      dispose: (_value, _key, reason) => {
        this.#forgetHot()
        if (reason === 'evict') this.#stats.evictions++
      }
    })
    // Only `#put` adds to it, and forgets the hot tenant first: an eviction from it needs no dispose.
    this.#absent = new LRUCache({ max: MAX_ABSENT_TENANTS })
  }

  /** The cached state, real, absent or pinned, without touching recency. */
  #peekAny (tenant: string): TenantState | undefined {
    return this.#tenants.peek(tenant) ?? this.#absent.peek(tenant) ?? this.#pinned.get(tenant)?.state
  }

  /** After a tenant's cached state moved: its revision to the listener. */
  #moved (tenant: string, state: TenantState): void {
    this.#onAdvance?.(tenant, state.revision)
  }

  /**
   * Keeps a tenant in memory, once cached (now or by its next load), until as many `unpin` calls:
   * the LRU bounds (`maxTenants`, the absent tenants') may drop it from their lists, but it is still
   * found, caught up by notices and synced.
   */
  pin (tenant: string): void {
    const pinned = this.#pinned.get(tenant)
    if (pinned === undefined) this.#pinned.set(tenant, { pins: 1, state: this.#peekAny(tenant) })
    else pinned.pins++
  }

  /** Releases one `pin` of the tenant. */
  unpin (tenant: string): void {
    const pinned = this.#pinned.get(tenant)
    if (pinned !== undefined && --pinned.pins === 0) this.#pinned.delete(tenant)
  }

  /** After an absent tenant's state was written to in place: it moves to the real LRU. */
  #settle (tenant: string, state: TenantState): void {
    if (state.revision > 0 && this.#absent.peek(tenant) === state) {
      this.#absent.delete(tenant)
      this.#tenants.set(tenant, state)
    }
  }

  /** Caches `state` in the LRU its revision belongs to: the absent tenants' at 0, the real one above. */
  #put (tenant: string, state: TenantState): void {
    this.#forgetHot()
    if (state.revision === 0) {
      this.#tenants.delete(tenant)
      this.#absent.set(tenant, state)
    } else {
      this.#absent.delete(tenant)
      this.#tenants.set(tenant, state)
    }
    const pinned = this.#pinned.get(tenant)
    if (pinned !== undefined) pinned.state = state
    this.#moved(tenant, state)
  }

  /** The cached state of a tenant, or undefined; marks it recently used. The hot path. */
  peek (tenant: string): TenantState | undefined {
    // Stryker disable next-line ConditionalExpression: the slot only spares the LRU lookups; never taking it answers the same
    if (tenant === this.#hotTenant) return this.#hotState
    const state = this.#tenants.get(tenant) ?? this.#absent.get(tenant) ?? this.#pinned.get(tenant)?.state
    // Stryker disable next-line all: which answers fill the slot changes speed only (every install forgets it)
    if (state !== undefined) {
      this.#hotTenant = tenant
      this.#hotState = state
    }
    return state
  }

  /** The revision a cached tenant is answered from, or null when it is not cached; loads nothing, marks nothing used. */
  cachedRevision (tenant: string): number | null {
    return this.#peekAny(tenant)?.revision ?? null
  }

  /** Like `peek`, for a reader: counts a hit when the tenant is cached (a miss is counted by `get`). */
  lookup (tenant: string): TenantState | undefined {
    const state = this.peek(tenant)
    if (state !== undefined) this.#stats.hits++
    return state
  }

  /** The cached state of a tenant, loading it once (single-flight) when absent. */
  async get (tenant: string): Promise<TenantState> {
    const cached = this.#tenants.get(tenant) ?? this.#absent.get(tenant) ?? this.#pinned.get(tenant)?.state
    if (cached !== undefined) {
      this.#stats.hits++
      return cached
    }
    this.#stats.misses++
    return await this.#load(tenant)
  }

  /** Tenants cached now, most recently used first. */
  tenants (): string[] {
    return [...this.#tenants.keys()]
  }

  /** Up to `limit` cached tenants with their revisions, most recently used first (recency untouched). */
  revisions (limit: number): Array<[string, number]> {
    const out: Array<[string, number]> = []
    for (const [tenant, state] of this.#tenants.entries()) {
      if (out.length >= limit) break
      out.push([tenant, state.revision])
    }
    return out
  }

  stats (): CacheStats {
    return { tenants: this.#tenants.size, ...this.#stats }
  }

  /**
   * Applies this instance's own committed write, `digest` being the tenant's digest after it in the
   * database. When the cache is exactly one revision behind it is applied in place; when further
   * behind (another instance wrote meanwhile) the tenant catches up from the store; an uncached
   * tenant is left to load lazily. Cached contents whose digest then differs from `digest` are
   * reloaded from the database.
   */
  async applyOwn (tenant: string, change: LoggedChange, digest: string): Promise<void> {
    await this.#loading.get(tenant)
    const state = this.#peekAny(tenant)
    if (state === undefined || state.revision >= change.revision) return
    if (state.revision === change.revision - 1) {
      state.applyAll([change])
      this.#settle(tenant, state)
      this.#moved(tenant, state)
    } else {
      await this.catchUp(tenant)
    }
    await this.#checkDigest(tenant, change.revision, digest, false)
  }

  /**
   * A peer says `tenant` is at `revision`, with contents of digest `digest`, optionally carrying the
   * change committed at exactly that revision. A carried change is applied only when the result has
   * that digest; otherwise, or without one, the changelog is read. Cached contents found at
   * `revision` with another digest that did not come from the database are reloaded (repairs asked by
   * notices are spaced by `repairSpacingMs`): an instance never answers, nor acknowledges, a revision
   * whose contents it does not hold. Returns this instance's revision afterwards, or null when the
   * tenant is not cached (it loads lazily, from the database, when first needed).
   */
  async noticed (tenant: string, revision: number, digest?: string, carried?: LoggedChange): Promise<number | null> {
    await this.#loading.get(tenant)
    const state = this.#peekAny(tenant)
    if (state === undefined) return null
    if (state.revision < revision) {
      const usable = carried?.revision === revision && digest !== undefined ? { change: carried, digest } : null
      await this.#request(tenant, { catchUp: true, carried: usable })
    }
    if (digest !== undefined) await this.#checkDigest(tenant, revision, digest, true)
    return this.#peekAny(tenant)?.revision ?? null
  }

  /**
   * Brings a cached tenant up to the store's current revision. Coalesced: while a catch-up of this
   * tenant runs, every further call shares one trailing run, which starts when the current one ends.
   */
  catchUp (tenant: string): Promise<void> {
    return this.#request(tenant, { catchUp: true, carried: null })
  }

  /**
   * Reloads a tenant from a full snapshot (cached or not), installing what the database holds even at
   * the same or a lower revision (a database restored from a backup), and returns its revision.
   * Coalesced with the tenant's catch-ups.
   */
  async reload (tenant: string): Promise<number> {
    // Stryker disable next-line BooleanLiteral: a run that reloads always returns before its catch-up is read
    await this.#request(tenant, { catchUp: false, carried: null, reload: { kind: 'always' } })
    return this.#peekAny(tenant)?.revision ?? 0
  }

  /**
   * Anti-entropy: reads the revision and digest of every cached tenant in one query, catches up those
   * behind, and reloads those whose contents differ from the database's at the same revision, or that
   * are ahead of it (a forged notice, a database restored from a backup).
   */
  async sync (): Promise<SyncResult> {
    // Absent tenants too: one written since catches up like any other, and moves to the real LRU.
    // Pinned ones too, even when the LRU bounds dropped them.
    const cached = [...new Set([...this.tenants(), ...this.#absent.keys(), ...this.#pinned.keys()])]
    const result: SyncResult = { behind: [], repaired: [] }
    if (cached.length === 0) return result
    // Each state as it was before the query: a state that moves meanwhile is judged next round.
    const before = new Map(cached.map((tenant) => {
      const state = this.#peekAny(tenant)
      return [tenant, { state, revision: state?.revision }]
    }))
    const versions = await this.#store.revisions(cached)
    await Promise.all(cached.map(async (tenant) => {
      const version = versions.get(tenant)
      let state = this.#peekAny(tenant)
      if (version === undefined || state === undefined) return
      if (state.revision < version.revision) {
        result.behind.push(tenant)
        await this.catchUp(tenant)
        state = this.#peekAny(tenant)
        if (state === undefined) return
      }
      const was = before.get(tenant)
      const ahead = state.revision > version.revision && was?.state === state && was.revision === state.revision
      const differs = state.revision === version.revision && state.digest !== version.digest
      if (state.revision === version.revision && !differs) state.verified = true
      if (ahead || differs) {
        result.repaired.push(tenant)
        await this.#request(tenant, { catchUp: false, carried: null, reload: { kind: 'repair', suspect: state, spaced: false } })
      }
    }))
    return result
  }

  /** Drops every cached tenant. */
  clear (): void {
    this.#forgetHot()
    this.#tenants.clear()
    this.#absent.clear()
  }

  #forgetHot (): void {
    this.#hotTenant = undefined
    this.#hotState = undefined
  }

  /**
   * After a catch-up: when the cached tenant is at `revision` and its digest is not `digest`, the
   * cached contents are wrong — or, for a notice (`fromNotice`), the notice is: a state whose contents
   * came from the database is kept then, any other (a carried change was applied) is reloaded.
   */
  async #checkDigest (tenant: string, revision: number, digest: string, fromNotice: boolean): Promise<void> {
    const state = this.#peekAny(tenant)
    if (state === undefined || state.revision !== revision) return
    if (state.digest === digest) {
      // The database's digest at this revision (an own write's) vouches for the contents.
      if (!fromNotice) state.verified = true
      return
    }
    if (fromNotice && state.verified) return
    await this.#request(tenant, { catchUp: false, carried: null, reload: { kind: 'repair', suspect: state, spaced: fromNotice } })
  }

  /** Runs `request` in the tenant's single-flight slot: now, or merged into the one trailing run. */
  #request (tenant: string, request: Request): Promise<void> {
    const slot = this.#catchUps.get(tenant)
    if (slot !== undefined) {
      if (slot.next === undefined) {
        let resolve!: () => void
        let reject!: (err: unknown) => void
        const promise = new Promise<void>((_resolve, _reject) => { resolve = _resolve; reject = _reject })
        slot.next = { promise, resolve, reject, request }
      } else {
        slot.next.request = merge(slot.next.request, request)
      }
      return slot.next.promise
    }
    const fresh: CatchUpSlot = {}
    this.#catchUps.set(tenant, fresh)
    return this.#run(tenant, fresh, request)
  }

  async #run (tenant: string, slot: CatchUpSlot, request: Request): Promise<void> {
    try {
      await this.#once(tenant, request)
    } finally {
      const next = slot.next
      if (next === undefined) {
        this.#catchUps.delete(tenant)
      } else {
        slot.next = undefined
        this.#run(tenant, slot, next.request).then(next.resolve, next.reject)
      }
    }
  }

  async #once (tenant: string, { catchUp, carried, reload }: Request): Promise<void> {
    const pending = this.#loading.get(tenant)
    if (pending !== undefined) await pending
    if (reload?.kind === 'always') {
      await this.#reloadNow(tenant)
      return
    }
    if (reload?.kind === 'repair' && this.#peekAny(tenant) === reload.suspect) {
      const since = this.#repairedAt.get(reload.suspect)
      const waitMs = reload.spaced && since !== undefined ? since + this.#repairSpacingMs - performance.now() : 0
      if (waitMs > 0) await pause(waitMs)
      if (this.#peekAny(tenant) === reload.suspect) {
        this.#stats.repairs++
        this.#repairedAt.set(await this.#reloadNow(tenant), performance.now())
        return
      }
    }
    if (catchUp) await this.#catchUpOnce(tenant, carried)
  }

  async #catchUpOnce (tenant: string, carried: Carried): Promise<void> {
    for (;;) {
      const state = this.#peekAny(tenant)
      if (state === undefined) return
      if (carried !== null) {
        const { change, digest } = carried
        // Every caller of this run asked for at most `change.revision`.
        if (state.revision >= change.revision) return
        // Only contiguous, and only when the result is what the writer says it holds.
        if (state.revision === change.revision - 1 && state.digestAfter(change) === digest) {
          state.applyAll([change])
          // A peer's word, not the database's: anti-entropy compares it with the database.
          state.verified = false
          this.#stats.carriedCatchUps++
          this.#settle(tenant, state)
          this.#moved(tenant, state)
          return
        }
        // More than one revision behind, or not the writer's contents: the changelog decides.
      }
      const changes = await this.#store.changesSince(tenant, state.revision)
      // A reload (or an eviction and load) swapped the state meanwhile: applying the delta to the
      // replaced one would lose it, so catch up the state cached now. (Defensive: reloads share the
      // slot, and a load that swapped it read its snapshot after this run was asked for.)
      // Stryker disable next-line ConditionalExpression: equivalent, as just said
      if (this.#peekAny(tenant) !== state) continue
      if (changes !== null && state.applyAll(changes)) {
        this.#stats.deltaCatchUps++
        this.#settle(tenant, state)
        this.#moved(tenant, state)
        return
      }
      await this.#reloadNow(tenant)
      return
    }
  }

  /**
   * Reads a snapshot and installs it, whatever the cached revision — unless the cached state moved
   * past it while it was read (an own write applied in place, a first load): then it reads again.
   * Runs in the tenant's slot, so no catch-up interleaves.
   */
  async #reloadNow (tenant: string): Promise<TenantState> {
    for (let attempt = 1; ; attempt++) {
      const before = this.#peekAny(tenant)
      const revision = before?.revision
      const snapshot = await this.#store.snapshot(tenant)
      const current = this.#peekAny(tenant)
      const moved = current !== before || current?.revision !== revision
      if (moved && current !== undefined && current.revision > snapshot.revision && attempt < RELOAD_ATTEMPTS) continue
      this.#stats.fullReloads++
      const state = new TenantState(snapshot)
      this.#put(tenant, state)
      return state
    }
  }

  #load (tenant: string): Promise<TenantState> {
    let pending = this.#loading.get(tenant)
    if (pending === undefined) {
      pending = this.#store.snapshot(tenant)
        .then((snapshot) => {
          this.#stats.loads++
          return this.#install(tenant, new TenantState(snapshot))
        })
        .finally(() => this.#loading.delete(tenant))
      this.#loading.set(tenant, pending)
    }
    return pending
  }

  /** Swaps in a freshly built state unless the cached one is already at or past it. */
  #install (tenant: string, state: TenantState): TenantState {
    const current = this.#peekAny(tenant)
    if (current !== undefined && current.revision >= state.revision) return current
    this.#put(tenant, state)
    return state
  }
}
