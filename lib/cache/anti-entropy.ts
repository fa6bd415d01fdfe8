/**
 * Anti-entropy (docs/protocol.md, "Anti-entropy"): every `intervalMs` ± 10 % one round asks for the
 * revisions and digests of all cached tenants in one query, catches up those behind and reloads those
 * whose contents differ from the database's. It heals lost notices, a peer that was down, a crash
 * between commit and notify, and any divergence of contents (a forged notice, a bug, a restore). Rounds never overlap: the next is
 * scheduled when one ends. The timer is unref'd, so it never keeps the process alive.
 */

/** What an {@link AntiEntropy} is built from. */
export interface AntiEntropyOptions {
  /** Milliseconds between rounds (± 10 % jitter); 0 turns anti-entropy off. */
  intervalMs: number
  /** One round's work: catch up the cached tenants that are behind and repair those that differ. */
  sync: () => Promise<{ behind: string[], repaired: string[] }>
  /** Where caught-up tenants (info), repaired tenants and failed rounds (warn) are reported. */
  log: {
    info (obj: object, msg: string): void
    warn (obj: object, msg: string): void
  }
}

/** The anti-entropy timer: `start` once, `stop` on close. */
export class AntiEntropy {
  readonly #options: AntiEntropyOptions
  #timer: NodeJS.Timeout | undefined
  #stopped = false

  constructor (options: AntiEntropyOptions) {
    this.#options = options
  }

  /** Schedules the first round (nothing when `intervalMs` is 0). */
  start (): void {
    this.#schedule()
  }

  /** Cancels the next round; a round in progress finishes but schedules no other. Idempotent. */
  stop (): void {
    this.#stopped = true
    clearTimeout(this.#timer)
  }

  #schedule (): void {
    const { intervalMs } = this.#options
    if (this.#stopped || intervalMs === 0) return
    const delay = intervalMs * (0.9 + Math.random() * 0.2)
    this.#timer = setTimeout(() => {
      this.#round()
        .catch((err) => this.#options.log.warn({ err }, 'policy-cache: sync failed'))
        .finally(() => this.#schedule())
    }, delay)
    this.#timer.unref()
  }

  async #round (): Promise<void> {
    const { sync, log } = this.#options
    const { behind, repaired } = await sync()
    if (behind.length > 0) log.info({ tenants: behind }, 'policy-cache: sync caught up tenants that were behind')
    if (repaired.length > 0) {
      log.warn({ tenants: repaired }, 'policy-cache: sync reloaded tenants whose cached contents differed from the database (digest) or were ahead of it')
    }
  }
}
