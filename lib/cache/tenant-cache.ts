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
  /** Catch-ups that had to reload the whole tenant. */
  fullReloads: number
  /** Tenants dropped by the `maxTenants` bound. */
  evictions: number
}

/**
 * What one catch-up run may use: the change carried at the highest revision asked for, or null when
 * some caller needs the store's current revision (a sync, a `minRevision`, a notice carrying nothing).
 */
type Carried = LoggedChange | null

interface CatchUpSlot {
  /** A trailing run requested while one was running: its waiters and what it may use. */
  next?: { promise: Promise<void>, resolve: () => void, reject: (err: unknown) => void, carried: Carried }
}

/** What a run serving both `a` and `b` may use: the later carried change, or the changelog if either needs it. */
function merge (a: Carried, b: Carried): Carried {
  if (a === null || b === null) return null
  return b.revision > a.revision ? b : a
}

/** Never-written tenants remembered (answered without a query: denied, revision 0). */
export const MAX_ABSENT_TENANTS = 1000

export interface TenantCacheOptions {
  store: PolicyStore
  maxTenants: number
}

export class TenantCache {
  readonly #store: PolicyStore
  readonly #tenants: LRUCache<string, TenantState>
  /** Tenants at revision 0, apart from `#tenants` (see the file's comment). */
  readonly #absent: LRUCache<string, TenantState>
  readonly #loading = new Map<string, Promise<TenantState>>()
  readonly #catchUps = new Map<string, CatchUpSlot>()
  readonly #stats = { hits: 0, misses: 0, loads: 0, deltaCatchUps: 0, carriedCatchUps: 0, fullReloads: 0, evictions: 0 }
  /**
   * The tenant `peek` answered last and its state: while set, that tenant is the most recently used,
   * so answering it again needs no LRU bookkeeping. Forgotten on every install, eviction and clear.
   */
  #hotTenant: string | undefined
  #hotState: TenantState | undefined

  constructor ({ store, maxTenants }: TenantCacheOptions) {
    this.#store = store
    this.#tenants = new LRUCache({
      max: maxTenants,
      dispose: (_value, _key, reason) => {
        this.#forgetHot()
        if (reason === 'evict') this.#stats.evictions++
      }
    })
    this.#absent = new LRUCache({ max: MAX_ABSENT_TENANTS, dispose: () => this.#forgetHot() })
  }

  /** The cached state, real or absent, without touching recency. */
  #peekAny (tenant: string): TenantState | undefined {
    return this.#tenants.peek(tenant) ?? this.#absent.peek(tenant)
  }

  /** After an absent tenant's state was written to in place: it moves to the real LRU. */
  #settle (tenant: string, state: TenantState): void {
    if (state.revision > 0 && this.#absent.peek(tenant) === state) {
      this.#absent.delete(tenant)
      this.#tenants.set(tenant, state)
    }
  }

  /** The cached state of a tenant, or undefined; marks it recently used. The hot path. */
  peek (tenant: string): TenantState | undefined {
    if (tenant === this.#hotTenant) return this.#hotState
    const state = this.#tenants.get(tenant) ?? this.#absent.get(tenant)
    if (state !== undefined) {
      this.#hotTenant = tenant
      this.#hotState = state
    }
    return state
  }

  /** Like `peek`, for a reader: counts a hit when the tenant is cached (a miss is counted by `get`). */
  lookup (tenant: string): TenantState | undefined {
    const state = this.peek(tenant)
    if (state !== undefined) this.#stats.hits++
    return state
  }

  /** The cached state of a tenant, loading it once (single-flight) when absent. */
  async get (tenant: string): Promise<TenantState> {
    const cached = this.#tenants.get(tenant) ?? this.#absent.get(tenant)
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
   * Applies this instance's own committed write. When the cache is exactly one revision behind it
   * is applied in place; when further behind (another instance wrote meanwhile) the tenant catches
   * up from the store; an uncached tenant is left to load lazily.
   */
  async applyOwn (tenant: string, change: LoggedChange): Promise<void> {
    const pending = this.#loading.get(tenant)
    if (pending !== undefined) await pending
    const state = this.#peekAny(tenant)
    if (state === undefined || state.revision >= change.revision) return
    if (state.revision === change.revision - 1) {
      state.applyAll([change])
      this.#settle(tenant, state)
      return
    }
    await this.catchUp(tenant)
  }

  /**
   * A peer says `tenant` is at `revision`, optionally carrying the change committed at exactly that
   * revision. Returns this instance's revision afterwards, or null when the tenant is not cached (it
   * loads lazily, from the database, when first needed).
   */
  async noticed (tenant: string, revision: number, carried?: LoggedChange): Promise<number | null> {
    const pending = this.#loading.get(tenant)
    if (pending !== undefined) await pending
    const state = this.#peekAny(tenant)
    if (state === undefined) return null
    if (state.revision < revision) await this.#catchUp(tenant, carried?.revision === revision ? carried : null)
    return this.#peekAny(tenant)?.revision ?? null
  }

  /**
   * Brings a cached tenant up to the store's current revision. Coalesced: while a catch-up of this
   * tenant runs, every further call shares one trailing run, which starts when the current one ends.
   */
  catchUp (tenant: string): Promise<void> {
    return this.#catchUp(tenant, null)
  }

  /** Reloads a tenant from a full snapshot (cached or not) and returns its revision. */
  async reload (tenant: string): Promise<number> {
    const snapshot = await this.#store.snapshot(tenant)
    this.#stats.fullReloads++
    return this.#install(tenant, new TenantState(snapshot)).revision
  }

  /**
   * Anti-entropy: reads the revisions of every cached tenant in one query and catches up those
   * behind. Returns the tenants that were behind.
   */
  async sync (): Promise<string[]> {
    const cached = this.tenants()
    const absent = [...this.#absent.keys()]
    if (cached.length === 0 && absent.length === 0) return []
    const revisions = await this.#store.revisions([...cached, ...absent])
    // An absent tenant written since catches up like any other, and moves to the real LRU.
    const behind = [...cached, ...absent].filter((tenant) => {
      const state = this.#peekAny(tenant)
      return state !== undefined && (revisions.get(tenant) ?? 0) > state.revision
    })
    await Promise.all(behind.map((tenant) => this.catchUp(tenant)))
    return behind
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

  /** `catchUp`, where a run asked for only by notices carrying changes may apply the latest of them. */
  #catchUp (tenant: string, carried: Carried): Promise<void> {
    const slot = this.#catchUps.get(tenant)
    if (slot !== undefined) {
      if (slot.next === undefined) {
        let resolve!: () => void
        let reject!: (err: unknown) => void
        const promise = new Promise<void>((_resolve, _reject) => { resolve = _resolve; reject = _reject })
        slot.next = { promise, resolve, reject, carried }
      } else {
        slot.next.carried = merge(slot.next.carried, carried)
      }
      return slot.next.promise
    }
    const fresh: CatchUpSlot = {}
    this.#catchUps.set(tenant, fresh)
    return this.#run(tenant, fresh, carried)
  }

  async #run (tenant: string, slot: CatchUpSlot, carried: Carried): Promise<void> {
    try {
      await this.#catchUpOnce(tenant, carried)
    } finally {
      const next = slot.next
      if (next === undefined) {
        this.#catchUps.delete(tenant)
      } else {
        slot.next = undefined
        this.#run(tenant, slot, next.carried).then(next.resolve, next.reject)
      }
    }
  }

  async #catchUpOnce (tenant: string, carried: Carried): Promise<void> {
    const pending = this.#loading.get(tenant)
    if (pending !== undefined) await pending
    for (;;) {
      const state = this.#peekAny(tenant)
      if (state === undefined) return
      if (carried !== null) {
        // Every caller of this run asked for at most `carried.revision`.
        if (state.revision >= carried.revision) return
        if (state.applyAll([carried])) {
          this.#stats.carriedCatchUps++
          this.#settle(tenant, state)
          return
        }
        // More than one revision behind: the changelog fills the gap.
      }
      const changes = await this.#store.changesSince(tenant, state.revision)
      // A reload (or an eviction and load) swapped the state meanwhile: applying the delta to the
      // replaced one would lose it, so catch up the state cached now.
      if (this.#peekAny(tenant) !== state) continue
      if (changes !== null && state.applyAll(changes)) {
        this.#stats.deltaCatchUps++
        this.#settle(tenant, state)
        return
      }
      await this.reload(tenant)
      return
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
    this.#forgetHot()
    if (state.revision === 0) {
      this.#absent.set(tenant, state)
    } else {
      this.#absent.delete(tenant)
      this.#tenants.set(tenant, state)
    }
    return state
  }
}
