/**
 * The peer set: the one place that decides where notices go (docs/membership.md). It is the static
 * `peers` (seeds; a function-valued one resolved again every `refreshMs` ± 10 %, on its own
 * schedule) ∪ the live members of the database's membership, this instance left out by URL (and,
 * for members, by serverId). Every change is handed to `apply` (the broadcaster's `setPeers`).
 */
import type { LiveMember } from '../membership/membership.js'
import type { PeerList } from './peer-list.js'
import type { PeerStatus } from './status.js'

export interface PeerSetOptions {
  /** The static peers: a list, or the host's function. */
  seeds: PeerList
  /** Seeds already resolved at startup. */
  initialSeeds: readonly string[]
  /** Re-resolution interval of a function-valued `peers`; 0: never again. */
  refreshMs: number
  /** Told the new URL list whenever it changes. */
  apply: (urls: string[]) => void
  /** Heartbeat age of a member, for `/servers`. */
  heartbeatAgeMs?: (member: LiveMember) => number
  log: { warn (obj: object, msg: string): void }
}

export class PeerSet {
  readonly #o: PeerSetOptions
  #seeds: readonly string[]
  #members: readonly LiveMember[] = []
  #applied = ''
  #timer: NodeJS.Timeout | undefined
  #stopped = false
  #refreshing: Promise<void> = Promise.resolve()
  #refreshFailed = false

  constructor (options: PeerSetOptions) {
    this.#o = options
    this.#seeds = [...options.initialSeeds]
  }

  /** The URLs notices go to: seeds first (in their order), then members not among them. */
  urls (): string[] {
    const urls = new Set(this.#seeds)
    for (const member of this.#members) urls.add(member.url)
    return [...urls]
  }

  /** Replaces the live members (this instance already left out by the membership). */
  setMembers (members: readonly LiveMember[]): void {
    this.#members = members
    this.#apply()
  }

  /** Resolves a function-valued `peers` again. Never rejects: a failure keeps the last seeds, warned about once until one succeeds. */
  async refreshSeeds (): Promise<void> {
    try {
      this.#seeds = await this.#o.seeds.resolve()
      this.#refreshFailed = false
    } catch (err) {
      if (!this.#refreshFailed) this.#o.log.warn({ err }, 'policy-cache: resolving peers failed; keeping the last list')
      this.#refreshFailed = true
      return
    }
    this.#apply()
  }

  /** Starts re-resolving a function-valued `peers` (nothing for a static list or `refreshMs` 0). */
  start (): void {
    if (!this.#o.seeds.dynamic || this.#o.refreshMs === 0) return
    this.#schedule()
  }

  /** Stops the refresh timer; waits for a refresh in flight. Idempotent. */
  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    await this.#refreshing
  }

  /**
   * Each peer's status with where it came from, its incarnation and heartbeat age (members); a
   * member's serverId is its row's until the peer itself answers with one.
   */
  annotate (statuses: PeerStatus[]): PeerStatus[] {
    const seeds = new Set(this.#seeds)
    const members = new Map(this.#members.map((member) => [member.url, member]))
    return statuses.map((status) => {
      const member = members.get(status.url)
      const source = member === undefined ? 'static' : seeds.has(status.url) ? 'both' : 'membership'
      return {
        ...status,
        serverId: status.serverId ?? member?.serverId ?? null,
        source,
        incarnation: member?.incarnation ?? null,
        heartbeatAgeMs: member === undefined || this.#o.heartbeatAgeMs === undefined ? null : this.#o.heartbeatAgeMs(member)
      }
    })
  }

  #apply (): void {
    const urls = this.urls()
    const key = urls.join('\n')
    if (key === this.#applied) return
    this.#applied = key
    this.#o.apply(urls)
  }

  #schedule (): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#refreshing = this.refreshSeeds().finally(() => this.#schedule())
    }, this.#o.refreshMs * (0.9 + Math.random() * 0.2))
    this.#timer.unref()
  }
}
