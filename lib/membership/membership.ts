/**
 * This instance's membership in the shared database (docs/membership.md): it registers before the
 * server listens, renews its row every `heartbeatMs` (± 10 %), reads one version row every `pollMs`
 * (± 10 %) and the whole set only when that version moved, leaves on close. Every time is the
 * database's; this process's clock only spaces the timers.
 *
 * With the database unreachable the last known set is kept and `status()` says `degraded`.
 */
import { normalizePeerUrl } from '../broadcast/peer-list.js'
import { isIdentifier } from '../model.js'
import type { HeartbeatOutcome, MemberIdentity, MemberRecord, MembershipStore } from '../store/types.js'

/** A live member as the peer set uses it. */
export interface LiveMember {
  serverId: string
  /** Normalised (`normalizePeerUrl`). */
  url: string
  incarnation: string
  /** Its last heartbeat, in ms of the database's clock. */
  heartbeatAt: number
}

/** What `/health` and `/servers` report of the membership. */
export interface MembershipStatus {
  /** `degraded`: the last heartbeat or poll failed (the last known set is kept), or another instance claims this serverId. */
  state: 'ok' | 'degraded'
  /** The last failure, or the conflict; null when `ok`. */
  reason: string | null
  /** The membership version the live set was read at. */
  version: number
  /** Live members (this instance left out) as last read. */
  members: number
}

/** Rows expired for longer than this many `ttlMs` are deleted (at most {@link PURGE_LIMIT} per heartbeat). */
const PURGE_AFTER_TTLS = 4
const PURGE_LIMIT = 100

export interface MembershipOptions {
  store: MembershipStore
  self: MemberIdentity
  heartbeatMs: number
  ttlMs: number
  pollMs: number
  /** Told the live set (this instance left out) whenever it changed. */
  onChange: (members: readonly LiveMember[]) => void
  /** Told after this instance (re)joined: writers may not have seen it yet, so a catch-up pass is due. */
  onJoined: () => void
  log: {
    info (obj: object, msg: string): void
    warn (obj: object, msg: string): void
    error (obj: object, msg: string): void
  }
}

/** ±10 % around `ms`. */
function jitter (ms: number): number {
  return ms * (0.9 + Math.random() * 0.2)
}

export class Membership {
  readonly #o: MembershipOptions
  #version = -1
  /** Database clock at the last read, and this process's monotonic clock then: heartbeat ages advance locally between reads. */
  #readAt = { db: 0, local: 0 }
  #live: LiveMember[] = []
  #beatTimer: NodeJS.Timeout | undefined
  #pollTimer: NodeJS.Timeout | undefined
  #stopped = false
  /** Heartbeats and polls in flight, awaited on close. */
  readonly #inflight = new Set<Promise<void>>()
  #beatFailure: string | null = null
  #pollFailure: string | null = null
  #conflict: string | null = null
  /** Warned-about rows (serverId, incarnation, url), so that one bad row is warned about once. */
  #warned = new Set<string>()

  constructor (options: MembershipOptions) {
    this.#o = options
  }

  /** Registers this instance (a new incarnation) and reads the set. Throws when the database fails: startup fails. */
  async join (): Promise<void> {
    const { store, self, ttlMs, log } = this.#o
    const { replaced } = await store.join(self, ttlMs)
    if (replaced !== undefined) {
      log.warn({ serverId: self.serverId, previous: { incarnation: replaced.incarnation, url: replaced.url } },
        'policy-cache: this serverId was still live under another incarnation (a restart before it expired, or another instance using the same serverId); replaced')
    }
    await this.#read()
    this.#o.onJoined()
  }

  /** Starts the heartbeat and the poll. */
  start (): void {
    this.#scheduleBeat()
    this.#schedulePoll()
  }

  /** How long ago the member's last heartbeat was, by the database's clock at the last read plus the time since. */
  heartbeatAgeMs (member: LiveMember): number {
    return Math.max(0, Math.round(this.#readAt.db - member.heartbeatAt + performance.now() - this.#readAt.local))
  }

  status (): MembershipStatus {
    const reason = this.#conflict ?? this.#beatFailure ?? this.#pollFailure
    return { state: reason === null ? 'ok' : 'degraded', reason, version: this.#version, members: this.#live.length }
  }

  /** One heartbeat now (then the set, if it moved). Never rejects: a failure is logged and reported by `status()`. */
  async beat (): Promise<void> {
    const { store, self, ttlMs, log } = this.#o
    if (this.#conflict !== null) {
      await this.poll()
      return
    }
    let outcome: HeartbeatOutcome
    try {
      outcome = await store.heartbeat(self, ttlMs, { afterMs: PURGE_AFTER_TTLS * ttlMs, limit: PURGE_LIMIT })
    } catch (err) {
      if (this.#beatFailure === null) log.warn({ err }, 'policy-cache: membership heartbeat failed; keeping the last known set')
      this.#beatFailure = `heartbeat failed: ${(err as Error)?.message ?? String(err)}`
      return
    }
    if (this.#beatFailure !== null) log.info({}, 'policy-cache: membership heartbeat succeeds again')
    this.#beatFailure = null
    if (outcome === 'replaced') {
      this.#conflict = `another instance holds serverId "${self.serverId}" (a newer incarnation): this one no longer heartbeats`
      log.error({ serverId: self.serverId, incarnation: self.incarnation },
        'policy-cache: another instance registered with this serverId; this instance stops renewing its row rather than fight over it (give each instance its own SERVER_ID)')
    } else if (outcome === 'rejoined') {
      log.info({ serverId: self.serverId }, 'policy-cache: this instance\'s membership row had expired or gone; registered again')
      this.#o.onJoined()
    }
    await this.poll()
  }

  /** Reads the version row; expires overdue rows; re-reads the set when the version moved. Never rejects. */
  async poll (): Promise<void> {
    const { store, log } = this.#o
    try {
      let head = await store.version()
      if (head.nextExpiry !== null && head.nextExpiry <= head.now) {
        await store.expire()
        head = await store.version()
      }
      if (head.version !== this.#version) await this.#read()
      if (this.#pollFailure !== null) log.info({}, 'policy-cache: membership reads succeed again')
      this.#pollFailure = null
    } catch (err) {
      if (this.#pollFailure === null) log.warn({ err }, 'policy-cache: reading the membership failed; keeping the last known set')
      this.#pollFailure = `membership read failed: ${(err as Error)?.message ?? String(err)}`
    }
  }

  /** Marks this instance leaving (others drop it at their next poll); stops the timers. Never rejects. */
  async leave (): Promise<void> {
    await this.#stop()
    if (this.#conflict !== null) return
    await this.#o.store.leave(this.#o.self).catch((err: unknown) => this.#o.log.warn({ err }, 'policy-cache: marking this instance leaving failed; it expires after ttlMs'))
  }

  /** Deletes this instance's row; stops the timers. Never rejects. */
  async close (): Promise<void> {
    await this.#stop()
    if (this.#conflict !== null) return
    await this.#o.store.remove(this.#o.self).catch((err: unknown) => this.#o.log.warn({ err }, 'policy-cache: removing this instance\'s membership row failed; it expires after ttlMs'))
  }

  async #stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#beatTimer)
    clearTimeout(this.#pollTimer)
    await Promise.all(this.#inflight)
  }

  async #read (): Promise<void> {
    const { version, now, members } = await this.#o.store.members()
    this.#version = version
    this.#readAt = { db: now, local: performance.now() }
    const live = this.#liveOf(members, now)
    const key = (list: readonly LiveMember[]) => list.map((m) => `${m.serverId} ${m.incarnation} ${m.url}`).join('\n')
    const changed = key(live) !== key(this.#live)
    this.#live = live
    if (changed) this.#o.onChange(live)
  }

  /** Active, unexpired rows other than this instance, with a valid id and URL; one row per URL (the newest). */
  #liveOf (rows: readonly MemberRecord[], now: number): LiveMember[] {
    const { self, log } = this.#o
    const byUrl = new Map<string, LiveMember>()
    for (const row of rows) {
      if (row.status !== 'active' || row.expiresAt <= now || row.serverId === self.serverId) continue
      let url: string
      try {
        if (!isIdentifier(row.serverId)) throw new Error(`serverId ${JSON.stringify(row.serverId)} is not an id`)
        url = normalizePeerUrl(row.url, 'membership url')
      } catch (err) {
        const seen = `${row.serverId}\n${row.incarnation}\n${row.url}`
        if (!this.#warned.has(seen)) {
          this.#warned.add(seen)
          log.warn({ serverId: row.serverId, url: row.url, reason: (err as Error).message }, 'policy-cache: a membership row is malformed; ignored, nothing is sent to it')
        }
        continue
      }
      if (url === self.url) continue
      const other = byUrl.get(url)
      if (other === undefined || row.heartbeatAt > other.heartbeatAt) {
        byUrl.set(url, { serverId: row.serverId, url, incarnation: row.incarnation, heartbeatAt: row.heartbeatAt })
      }
    }
    return [...byUrl.values()].sort((a, b) => a.serverId < b.serverId ? -1 : 1)
  }

  #track (work: Promise<void>): Promise<void> {
    this.#inflight.add(work)
    return work.finally(() => this.#inflight.delete(work))
  }

  #scheduleBeat (): void {
    if (this.#stopped) return
    this.#beatTimer = setTimeout(() => {
      this.#track(this.beat()).finally(() => this.#scheduleBeat())
    }, jitter(this.#o.heartbeatMs))
    this.#beatTimer.unref()
  }

  #schedulePoll (): void {
    if (this.#stopped) return
    this.#pollTimer = setTimeout(() => {
      this.#track(this.poll()).finally(() => this.#schedulePoll())
    }, jitter(this.#o.pollMs))
    this.#pollTimer.unref()
  }
}
