/**
 * The watch streams (`policyCache.watch`, `GET /tenants/:tenant/watch`): each change of a tenant as
 * this instance applies it, whichever way it came (an own write, a peer's notice, a catch-up from the
 * changelog, a reload), read back from the changelog so that every event is the audit feed's entry —
 * in revision order, without a gap or a duplicate.
 *
 * Per watched tenant, a hub follows the cached state (the cache's `onAdvance`): when it moves past
 * what the hub handed out, the hub reads the entries up to the cached revision — once, for all its
 * live watches — and hands each out. A watch that starts behind the hub (a client resuming after a
 * revision) first reads the changelog itself, a page at a time and only when its consumer has taken
 * the previous page, then joins the hub where it stands: the seam is one synchronous step, so nothing
 * is missed or repeated there. A watch whose changes were pruned gets a `reset` event and continues
 * from the hub's revision.
 *
 * Memory is bounded: a live watch holds at most `maxBuffered` events its consumer has not taken; one
 * more and it is dropped (its queue replaced by a final `end` event, FST_POLICY_CACHE_WATCH_OVERFLOW).
 * At most `maxWatchers` watches are open on the instance; watched tenants stay cached (`pin`).
 */
import { ClosingError, TooManyWatchersError, WatchOverflowError } from '../errors.js'
import type { AuditEntry } from '../model.js'

/** One event of a watch. */
export type WatchEvent =
  /** A change (or a batch's changes) committed at `entry.revision`, as the audit feed has it. */
  | { type: 'change', entry: AuditEntry }
  /**
   * The changes after the watch's position were pruned (`changelogRetention`): read the tenant again
   * (with `minRevision: revision`); the watch continues with the changes after `revision`.
   */
  | { type: 'reset', code: 'FST_POLICY_CACHE_CHANGES_PRUNED', message: string, oldestRevision: number | null, revision: number }
  /**
   * The last event of a watch that ended by itself: FST_POLICY_CACHE_WATCH_OVERFLOW (its consumer fell
   * `maxBuffered` events behind), FST_POLICY_CACHE_CLOSING (the instance is shutting down),
   * FST_POLICY_CACHE_STORE_UNAVAILABLE (the changelog could not be read). Resume with `after`.
   */
  | { type: 'end', code: string, message: string }

/** The final event of a watch that ended by itself. */
export type WatchEnd = Extract<WatchEvent, { type: 'end' }>

/** Where a watch starts. */
export interface WatchOptions {
  /**
   * Hand out the changes after this revision (a non-negative integer): those already committed are
   * read from the changelog first. Default: the revision this instance answers the tenant from now.
   */
  after?: number | undefined
}

/**
 * A tenant's changes, as an async iterable with one consumer. Its events wait in a bounded queue
 * until taken; `close()` (or leaving a `for await` loop) releases it.
 */
export interface Watch extends AsyncIterable<WatchEvent> {
  readonly tenant: string
  /** The revision the watch starts after: its first change is `after + 1`. */
  readonly after: number
  /** Events waiting for the consumer now (at most `maxBuffered`, plus a final `end`). */
  readonly buffered: number
  /** Settles when the watch ends by itself, with its final event; with undefined when closed by `close()`. */
  readonly ended: Promise<WatchEnd | undefined>
  /** Stops the watch and drops its waiting events. Idempotent. */
  close (): void
}

/** Entries of the changelog read at once, at most (the audit feed's largest page). */
const PAGE = 1000

export interface WatchersOptions {
  /** The audit feed's entries after `after`, at most `limit`; rejects with FST_POLICY_CACHE_CHANGES_PRUNED (`oldestRevision` set) or another coded error. */
  read: (tenant: string, after: number, limit: number) => Promise<{ entries: AuditEntry[] }>
  /** Keeps a watched tenant cached until `unpin` (TenantCache). */
  pin: (tenant: string) => void
  unpin: (tenant: string) => void
  maxWatchers: number
  maxBuffered: number
}

/** A watched tenant: what its live watches have been handed and how far the cache is. */
interface Hub {
  readonly tenant: string
  /** Every open watch of the tenant. */
  readonly watches: Set<Subscription>
  /** Those that joined the live feed: each is at `position` or beyond. */
  readonly live: Set<Subscription>
  /** The revision of the last entry handed to the live watches. */
  position: number
  /** The revision of the tenant's cached state. */
  target: number
  /** Whether a read for the live watches runs. */
  reading: boolean
}

function isPruned (err: unknown): err is { code: 'FST_POLICY_CACHE_CHANGES_PRUNED', message: string, oldestRevision: number | null } {
  return (err as { code?: unknown }).code === 'FST_POLICY_CACHE_CHANGES_PRUNED'
}

/** The `end` event of a failed read: its coded error (`read` passes only coded ones). */
function endOf (err: unknown): WatchEnd {
  const { code, message } = err as { code: string, message: string }
  return { type: 'end', code, message }
}

class Subscription implements Watch {
  readonly tenant: string
  readonly after: number
  readonly ended: Promise<WatchEnd | undefined>
  readonly hub: Hub
  /** The revision of the last change queued (or skipped by a reset). */
  position: number
  live = false
  /** No event is queued any more: the consumer takes what is left, then the iteration ends. */
  finished = false
  queue: WatchEvent[] = []
  readonly #owner: Watchers
  #wake: (() => void) | undefined
  #settle!: (end: WatchEnd | undefined) => void

  constructor (owner: Watchers, hub: Hub, after: number) {
    this.#owner = owner
    this.hub = hub
    this.tenant = hub.tenant
    this.after = after
    this.position = after
    this.ended = new Promise((resolve) => { this.#settle = resolve })
  }

  get buffered (): number {
    return this.queue.length
  }

  /** Queues an event for the consumer; past `maxBuffered` the watch is dropped instead. */
  enqueue (event: WatchEvent, max: number): void {
    if (this.queue.length >= max) {
      this.#owner.overflow(this)
      return
    }
    this.queue.push(event)
    this.wake()
  }

  /** Queues a change the watch has not had yet (a later one: the feed is in order). */
  push (entry: AuditEntry, max: number): void {
    if (entry.revision <= this.position) return
    this.position = entry.revision
    this.enqueue({ type: 'change', entry }, max)
  }

  /** No more events: the consumer takes `queue`, then the iteration ends. */
  finish (end: WatchEnd | undefined): void {
    this.finished = true
    this.#settle(end)
    this.wake()
  }

  wake (): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }

  close (): void {
    this.queue = []
    this.#owner.release(this, undefined)
  }

  async #next (): Promise<IteratorResult<WatchEvent, undefined>> {
    for (;;) {
      const event = this.queue.shift()
      if (event !== undefined) return { value: event, done: false }
      if (this.finished) return { value: undefined, done: true }
      if (this.live) {
        await new Promise<void>((resolve) => { this.#wake = resolve })
      } else {
        await this.#owner.catchUp(this)
      }
    }
  }

  [Symbol.asyncIterator] (): AsyncIterator<WatchEvent, undefined> {
    return {
      next: () => this.#next(),
      return: async () => {
        this.close()
        return { value: undefined, done: true }
      }
    }
  }
}

/** Every watch of an instance (see the file's comment). */
export class Watchers {
  readonly #options: WatchersOptions
  readonly #hubs = new Map<string, Hub>()
  #open = 0
  #dropped = 0
  #closed = false

  constructor (options: WatchersOptions) {
    this.#options = options
  }

  /**
   * Opens a watch of `tenant`: refuses beyond `maxWatchers` (503 FST_POLICY_CACHE_TOO_MANY_WATCHERS)
   * and once closed (503 FST_POLICY_CACHE_CLOSING); `load` brings the tenant into the cache (at
   * `after` at least) and answers its cached revision.
   */
  async open (tenant: string, after: number | undefined, load: () => Promise<number>): Promise<Watch> {
    const { maxWatchers, pin, unpin } = this.#options
    if (this.#closed) throw new ClosingError()
    if (this.#open >= maxWatchers) throw new TooManyWatchersError(maxWatchers)
    this.#open++
    pin(tenant)
    let revision: number
    try {
      revision = await load()
      if (this.#closed) throw new ClosingError()
    } catch (err) {
      this.#open--
      unpin(tenant)
      throw err
    }
    let hub = this.#hubs.get(tenant)
    if (hub === undefined) {
      hub = { tenant, watches: new Set(), live: new Set(), position: revision, target: revision, reading: false }
      this.#hubs.set(tenant, hub)
    }
    const watch = new Subscription(this, hub, after ?? hub.position)
    hub.watches.add(watch)
    // At or past what the hub handed out: it joins the live feed at once (a change it had is skipped).
    if (watch.position >= hub.position) this.#join(watch)
    return watch
  }

  /** The cache moved a tenant's state to `revision`: its live watches get the changes up to it. */
  advanced (tenant: string, revision: number): void {
    const hub = this.#hubs.get(tenant)
    if (hub === undefined || revision <= hub.target) return
    hub.target = revision
    this.#pump(hub)
  }

  /** Ends every watch with `end` (its events still queued are taken first) and refuses new ones. */
  close (end: WatchEnd): void {
    this.#closed = true
    for (const hub of [...this.#hubs.values()]) {
      for (const watch of [...hub.watches]) this.end(watch, end)
    }
  }

  /** Open watches, watches dropped for a slow consumer so far, and events waiting in all their queues. */
  stats (): { watchers: number, watchersDropped: number, watchBuffered: number } {
    let buffered = 0
    for (const hub of this.#hubs.values()) {
      for (const watch of hub.watches) buffered += watch.queue.length
    }
    return { watchers: this.#open, watchersDropped: this.#dropped, watchBuffered: buffered }
  }

  /** Ends an open watch by itself: `end` is queued after its events. */
  end (watch: Subscription, end: WatchEnd): void {
    watch.queue.push(end)
    this.release(watch, end)
  }

  /** A watch whose consumer fell `maxBuffered` events behind: its events dropped for one final `end`. */
  overflow (watch: Subscription): void {
    this.#dropped++
    const error = new WatchOverflowError(this.#options.maxBuffered)
    const end: WatchEnd = { type: 'end', code: error.code, message: error.message }
    watch.queue = [end]
    this.release(watch, end)
  }

  /** Takes a watch out of its hub (the hub and the pin go with its last watch). Idempotent. */
  release (watch: Subscription, end: WatchEnd | undefined): void {
    if (watch.finished) return
    watch.finish(end)
    const { hub } = watch
    hub.watches.delete(watch)
    hub.live.delete(watch)
    this.#open--
    if (hub.watches.size === 0) {
      this.#hubs.delete(hub.tenant)
      this.#options.unpin(hub.tenant)
    }
  }

  /**
   * One step of a watch behind its hub, run when its consumer has taken every queued event: reads the
   * next page of the changelog up to the hub's position, or joins the live feed once there.
   */
  async catchUp (watch: Subscription): Promise<void> {
    const { hub } = watch
    if (watch.position >= hub.position) {
      this.#join(watch)
      return
    }
    const { maxBuffered } = this.#options
    const limit = Math.min(hub.position - watch.position, maxBuffered, PAGE)
    const entries = await this.#options.read(hub.tenant, watch.position, limit).then((page) => page.entries, (err: unknown) => err)
    // Closed while it read: nothing more to do.
    if (watch.finished) return
    if (!Array.isArray(entries)) {
      if (isPruned(entries)) this.#reset(watch, entries, hub.position)
      else this.end(watch, endOf(entries))
      return
    }
    for (const entry of entries) watch.push(entry, maxBuffered)
    // The database behind the cache (a database restored from a backup): nothing more to read.
    if (entries.length === 0) this.#join(watch)
  }

  #join (watch: Subscription): void {
    const { hub } = watch
    watch.live = true
    hub.live.add(watch)
    watch.wake()
    if (hub.target > hub.position) this.#pump(hub)
  }

  /** A `reset` event: the changes after the watch's position are gone; it continues after `revision`. */
  #reset (watch: Subscription, err: { message: string, oldestRevision: number | null }, revision: number): void {
    watch.position = revision
    watch.enqueue({
      type: 'reset',
      code: 'FST_POLICY_CACHE_CHANGES_PRUNED',
      message: `${err.message}; read the tenant again (minRevision ${revision}): this watch continues after revision ${revision}`,
      oldestRevision: err.oldestRevision,
      revision
    }, this.#options.maxBuffered)
  }

  /** Reads the entries up to the cached revision for the hub's live watches, and hands them out; one run per hub at a time. */
  #pump (hub: Hub): void {
    if (hub.reading) return
    hub.reading = true
    this.#read(hub).finally(() => { hub.reading = false })
  }

  async #read (hub: Hub): Promise<void> {
    const { read, maxBuffered } = this.#options
    while (hub.position < hub.target && hub.live.size > 0) {
      let entries: AuditEntry[]
      try {
        ({ entries } = await read(hub.tenant, hub.position, Math.min(hub.target - hub.position, PAGE)))
      } catch (err) {
        if (isPruned(err)) {
          hub.position = hub.target
          for (const watch of [...hub.live]) this.#reset(watch, err, hub.target)
        } else {
          for (const watch of [...hub.live]) this.end(watch, endOf(err))
        }
        continue
      }
      // The database behind the cache (a forged notice, a database restored from a backup): wait for the next move.
      if (entries.length === 0) return
      for (const entry of entries) {
        hub.position = entry.revision
        for (const watch of [...hub.live]) watch.push(entry, maxBuffered)
      }
    }
  }
}
