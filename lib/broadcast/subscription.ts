/**
 * What the broker transports (pg-notify.ts, nats.ts, redis.ts) share about their subscription, so
 * that each keeps only its client's mechanics: the inbox every message goes through; the state and
 * counters reported in `/servers`, `/health` and `/metrics`; a (re)subscription counted and followed
 * by the resync of every cached tenant; a loss recorded and logged; the probe timer; closing once.
 */
import { Inbox, type InboxLogger } from './inbox.js'
import type { TransportSink, TransportStatus, TransportType } from './transport.js'

/** The part of a pino logger a broker transport writes to. */
export interface BrokerLogger extends InboxLogger {
  info (obj: object, msg: string): void
}

/** What a {@link BrokerSubscription} is built from. */
export interface BrokerSubscriptionOptions {
  type: Exclude<TransportType, 'webhook'>
  /** Whether a write waits for acknowledgements (reported in the status). */
  acknowledged: boolean
  /** The channel or subject listened on. */
  channel: string
  /** The name the logs give the channel (`channel`, or `subject` for NATS). */
  logField: 'channel' | 'subject'
  /** Logged (info) at every resubscription after the first. */
  resubscribedMessage: string
  /** Verification keys (`webhookSecret`). */
  keys: readonly Buffer[]
  /** This instance's id: messages with it as origin are dropped. */
  serverId: string
  log: BrokerLogger
}

/** A failure's message. */
export function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** Rejects after `ms` unless `promise` settles first. */
export async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
    timer.unref()
  })
  // (A marker cannot reach a `finally` block, so the timer is cleared in `.finally`.)
  // Stryker disable next-line BlockStatement: the timer is unref()ed, and its late rejection lands on a settled race
  return await Promise.race([promise, timeout]).finally(() => { clearTimeout(timer) })
}

/** The subscription of one broker transport: its lifecycle and what it reports. */
export class BrokerSubscription {
  readonly #options: BrokerSubscriptionOptions
  /** `up`, `connecting`, `down` or `closed`, as the status reports it. */
  state: TransportStatus['state'] = 'connecting'
  /** The last failure (connection lost, probe failed, publish failed), null when none. */
  lastError: string | null = null
  /** Messages published. */
  published = 0
  #subscribedAt: string | null = null
  #subscriptions = 0
  #inbox: Inbox | undefined
  #sink: TransportSink | undefined
  #probeTimer: NodeJS.Timeout | undefined
  #closing = false

  constructor (options: BrokerSubscriptionOptions) {
    this.#options = options
  }

  /** Whether `close` was called: nothing is to be (re)subscribed, probed or sent any more. */
  get closing (): boolean {
    return this.#closing
  }

  /** Starts receiving: the inbox through which every message reaches `sink` from now on. */
  open (sink: TransportSink): Inbox {
    const { keys, serverId, log } = this.#options
    this.#sink = sink
    this.#inbox = new Inbox({ keys, serverId, sink, log })
    return this.#inbox
  }

  /** Records `err` as the last failure; returns its message. */
  failed (err: unknown): string {
    this.lastError = describe(err)
    return this.lastError
  }

  /**
   * The subscription is (again) known to deliver: counted, and every cached tenant resynced — what
   * came meanwhile may have been missed. A failing resync is logged: the periodic sync heals. After
   * `close` (a connection that came back while closing), nothing.
   */
  async subscribed (): Promise<void> {
    if (this.#closing) return
    const { log, channel, logField, resubscribedMessage } = this.#options
    this.state = 'up'
    this.#subscribedAt = new Date().toISOString()
    this.#subscriptions++
    if (this.#subscriptions > 1) log.info({ [logField]: channel, subscriptions: this.#subscriptions }, resubscribedMessage)
    try {
      await this.#sink?.resubscribed()
    } catch (err) {
      log.warn({ err }, 'policy-cache: the resync after subscribing failed; the sync heals')
    }
  }

  /** The subscription was lost (`reason`, by default the last failure): reported down, `message` logged as a warning. */
  lost (message: string, reason: string | null = this.lastError): void {
    const { log, channel, logField } = this.#options
    this.state = 'down'
    this.lastError = reason
    log.warn({ [logField]: channel, reason }, message)
  }

  /**
   * In `delayMs`: `check()`; once it resolved, the next one `probeIntervalMs` later while `again()`
   * says so; when it rejects, `failed(err)`. Replaces a probe scheduled before; nothing after `close`.
   */
  probe (delayMs: number, check: () => Promise<unknown>, failed: (err: unknown) => void, again: () => boolean = () => true): void {
    this.stopProbe()
    if (this.#closing) return
    this.#probeTimer = setTimeout(() => {
      check().then(() => { if (again()) this.probe(delayMs, check, failed, again) }, failed)
    }, delayMs)
    this.#probeTimer.unref()
  }

  stopProbe (): void {
    clearTimeout(this.#probeTimer)
  }

  /** Marks the subscription closed and stops probing; false when it was closed already (close is idempotent). */
  close (): boolean {
    if (this.#closing) return false
    this.#closing = true
    this.state = 'closed'
    this.stopProbe()
    return true
  }

  /** The status `/servers`, `/health` and `/metrics` report. */
  status (): TransportStatus {
    const { type, acknowledged, channel } = this.#options
    return {
      type,
      state: this.state,
      acknowledged,
      channel,
      subscribedAt: this.#subscribedAt,
      subscriptions: this.#subscriptions,
      lastError: this.lastError,
      published: this.published,
      ...(this.#inbox?.counters ?? { received: 0, hints: 0, dropped: 0 })
    }
  }
}
