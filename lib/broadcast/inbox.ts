/**
 * What a broker transport does with each message it receives (docs/transports.md, "Receiving"):
 * open the envelope (lib/broadcast/envelope.ts); drop this instance's own messages by origin and
 * replayed ids; hand a verified notice to the engine through the webhook receiver's path
 * (`TransportSink.deliver`); turn an unverifiable one into a hint at most (`TransportSink.hint`:
 * named tenants read the changelog, nothing carried is applied). One per transport instance.
 */
import { openEnvelope } from './envelope.js'
import { ReplayGuard } from './receiver.js'
import type { TransportSink } from './transport.js'

/** Tenants one unverifiable message may make this instance look at, at most. */
export const MAX_HINT_TENANTS = 100

/** The part of a pino logger the inbox writes to. */
export interface InboxLogger {
  debug (obj: object, msg: string): void
  warn (obj: object, msg: string): void
}

/** What became of one message. */
export type InboxOutcome = 'delivered' | 'hint' | 'own' | 'duplicate' | 'invalid' | 'failed'

/** What an {@link Inbox} is built from. */
export interface InboxOptions {
  /** Verification keys (every configured secret). */
  keys: readonly Buffer[]
  /** This instance's id: messages with this origin are its own, dropped. */
  serverId: string
  /** Where notices and hints go. */
  sink: TransportSink
  log: InboxLogger
  /** Where handled ids are remembered. Default: a new {@link ReplayGuard}. */
  replays?: ReplayGuard
  /** The clock in Unix seconds (tests). Default: `Date.now() / 1000`. */
  nowSeconds?: () => number
}

/** Counters of an {@link Inbox}, by outcome; a notice or hint is counted once the engine has handled it. */
export interface InboxCounters {
  received: number
  hints: number
  dropped: number
}

/** Receives the messages of one broker transport. */
export class Inbox {
  readonly #keys: readonly Buffer[]
  readonly #serverId: string
  readonly #sink: TransportSink
  readonly #log: InboxLogger
  readonly #replays: ReplayGuard
  readonly #now: () => number
  /** Whether an unverifiable message was logged already: the first is a warning, the rest are counted. */
  #warnedUnverified = false
  readonly counters: InboxCounters = { received: 0, hints: 0, dropped: 0 }

  constructor (options: InboxOptions) {
    this.#keys = options.keys
    this.#serverId = options.serverId
    this.#sink = options.sink
    this.#log = options.log
    this.#replays = options.replays ?? new ReplayGuard()
    this.#now = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000))
  }

  /**
   * Handles one message's payload; resolves once the engine has handled it. Never rejects.
   * `answer`, when given, is called with this instance's revisions once a verified notice was
   * delivered (the NATS transport replies with them, as the webhook receiver does).
   */
  async receive (raw: string, answer?: (revisions: Record<string, number | null>) => void): Promise<InboxOutcome> {
    const opened = openEnvelope(this.#keys, raw, this.#now())
    if (opened.kind === 'invalid') {
      this.counters.dropped++
      this.#log.debug({ reason: opened.reason }, 'policy-cache: dropped a message that is not a notice')
      return 'invalid'
    }
    if (opened.kind === 'hint') {
      if (opened.origin === this.#serverId) {
        this.counters.dropped++
        return 'own'
      }
      if (!this.#warnedUnverified) {
        this.#warnedUnverified = true
        this.#log.warn({ origin: opened.origin, tenants: opened.tenants.length },
          'policy-cache: a message on the channel failed verification (forged, tampered, stale, or signed with another secret): nothing it carries is applied, its tenants only read the changelog; further ones are counted in /servers')
      }
      // Each tenant is an identifier already (the notice schema checks it, signed or not).
      const tenants = opened.tenants.slice(0, MAX_HINT_TENANTS)
      try {
        await this.#sink.hint(tenants)
        // Counted once handled: a reader of the counter sees its effect already.
        this.counters.hints++
        return 'hint'
      } catch (err) {
        this.#log.warn({ err }, 'policy-cache: reading the changelog for an unverified message failed; the sync heals')
        return 'failed'
      }
    }
    const { id, notice } = opened
    if (notice.origin === this.#serverId) {
      this.counters.dropped++
      return 'own'
    }
    const earlier = this.#replays.lookup(id)
    if (earlier !== undefined) {
      this.counters.dropped++
      return 'duplicate'
    }
    try {
      const revisions = await this.#replays.handle(id, this.#sink.deliver(notice))
      this.counters.received++
      answer?.(revisions)
      return 'delivered'
    } catch (err) {
      this.#log.warn({ err, origin: notice.origin }, 'policy-cache: handling a notice failed; the sync heals')
      return 'failed'
    }
  }
}
