/**
 * The `nats` transport (docs/transports.md): core NATS publish/subscribe with replies.
 *
 * Sending: `publish` sends the write's signed envelope once on the subject, with a reply subject
 * under this connection's own inbox; every other instance applies the notice through the engine
 * (the webhook receiver's path) and answers, signed, with the revisions it has — the webhook reply
 * `{ serverId, revisions }`. The write waits up to `ackTimeoutMs` for the replies of the live
 * instances: with `membership` on, the live member set (the database's); otherwise the instances
 * seen on the subject recently (each answers the presence probe every `probeIntervalMs`; one not
 * seen for three intervals, or that said it leaves, is no longer waited for; one that missed a
 * write's reply is counted but not waited for until it answers again). `peers` = `{ acked, total }`.
 *
 * Receiving: one subscription on the subject, each message through the {@link Inbox} (verified →
 * the engine; unverifiable → a changelog read at most; own origin dropped). nats.js reconnects by
 * itself and re-subscribes; on every reconnect (its status events) — and whenever the presence
 * probe, after failing, is answered again — every cached tenant is resynced. The probe is a
 * signed message on `<subject>.presence` that every instance, this one included, answers: this
 * instance's own answer proves that its subscriptions deliver.
 */
import { requireOptional } from '../optional-dependency.js'
import { encodeEnvelopes, openSigned, seal } from './envelope.js'
import type { NoticeChange } from './notice.js'
import type { AckSummary, PeerStatus } from './status.js'
import { BrokerSubscription, type BrokerLogger } from './subscription.js'
import type { Transport, TransportSink, TransportStatus } from './transport.js'

/** One message as nats.js delivers it. */
interface NatsMsg {
  subject: string
  reply?: string | undefined
  string (): string
  respond (payload: string): boolean
}

/** The part of a nats.js subscription the transport uses. */
interface NatsSubscription {
  unsubscribe (): void
}

/** The part of a nats.js connection the transport uses. */
export interface NatsConnectionLike {
  readonly info?: { max_payload: number } | undefined
  publish (subject: string, payload: string, options?: { reply?: string }): void
  subscribe (subject: string, options: { callback: (err: Error | null, msg: NatsMsg) => void }): NatsSubscription
  flush (): Promise<void>
  status (): AsyncIterable<{ type: string, server?: string }>
  close (): Promise<void>
  isClosed (): boolean
}

/** The part of the `@nats-io/transport-node` module the transport uses. */
interface NatsModule {
  connect (options: Record<string, unknown>): Promise<NatsConnectionLike>
  createInbox (prefix?: string): string
}

/** What a {@link NatsTransport} is built from (the `transport` option, resolved, and the instance's identity). */
export interface NatsTransportOptions {
  /** The NATS servers (`nats://host:port`). */
  servers: readonly string[]
  /** The subject notices are published on; presence probes use `<subject>.presence`. */
  subject: string
  /** Further nats.js connection options (credentials, TLS, …), passed as given. */
  connection: Readonly<Record<string, unknown>>
  /** This instance's id: the envelopes' `origin`; messages with it are dropped. */
  serverId: string
  /** The store's database id, read per message (known once the store is migrated). */
  databaseId: () => string | undefined
  /** This instance's URL, when configured: carried in notices like the webhook's. */
  publicUrl?: string | undefined
  /** Signing and verification keys (`webhookSecret`). */
  keys: readonly Buffer[]
  /** Longest a write waits for the replies. */
  ackTimeoutMs: number
  probeIntervalMs: number
  probeTimeoutMs: number
  /** Envelopes over this many bytes (or over the server's `max_payload`) carry only tenant + revision. */
  maxPayloadBytes: number
  /**
   * The serverIds of the live members (this one left out) when membership is on: the instances a
   * write waits for. Undefined: wait for the instances seen on the subject recently.
   */
  members?: (() => readonly string[]) | undefined
  log: BrokerLogger
  /** The client module to use instead of loading it (tests pass a fake); loaded with requireOptional when absent. */
  clientModule?: NatsModule | undefined
}

/** An instance seen on the subject. */
interface Seen {
  /** When it last answered or sent (ms). */
  at: number
  /** It did not answer the last write that waited for it: counted, not waited for, until it answers again. */
  missed: boolean
}

/** A write waiting for its replies. */
interface Pending {
  /** Envelopes sent: an instance acknowledges once it answered all of them. */
  envelopes: number
  replies: Map<string, number>
  /** The instances waited for. */
  expected: Set<string>
  /** Of them, those that have not answered every envelope yet: the write returns at 0. */
  waiting: number
  done: () => void
}

/** Seconds since the epoch. */
function nowSeconds (): number {
  return Math.floor(Date.now() / 1000)
}

/** Notices over core NATS, one publish per write, acknowledged by the live instances' replies. */
export class NatsTransport implements Transport {
  readonly type = 'nats' as const
  readonly #options: NatsTransportOptions
  readonly #nats: NatsModule
  readonly #subscription: BrokerSubscription
  #nc: NatsConnectionLike | undefined
  /** This connection's reply prefix: `<inbox>.<n>`, one per write or probe. */
  // Stryker disable next-line StringLiteral: set by start before any write or probe reads it
  #replyPrefix = ''
  #sequence = 0
  readonly #pending = new Map<string, Pending>()
  readonly #seen = new Map<string, Seen>()
  /** The probe waiting for this instance's own answer. */
  #probe: { reply: string, answered: () => void } | undefined

  /**
   * Loads `@nats-io/transport-node`: throws FST_POLICY_CACHE_MISSING_DEPENDENCY naming it when it is
   * not installed. Connects nothing until `start`.
   */
  constructor (options: NatsTransportOptions) {
    this.#options = options
    // Stryker disable next-line StringLiteral: shown only when the package is not installed: test/package/consumer.test.ts (a packed install without it) checks it, too slow for a mutation run
    this.#nats = options.clientModule ?? requireOptional<NatsModule>('@nats-io/transport-node', 'the nats transport')
    const { subject, keys, serverId, log } = options
    this.#subscription = new BrokerSubscription({
      type: 'nats',
      acknowledged: true,
      channel: subject,
      logField: 'subject',
      resubscribedMessage: 'policy-cache: subscribed on NATS again; resyncing every cached tenant',
      keys,
      serverId,
      log
    })
  }

  /** Connects, subscribes, resyncs once, and sends the first presence probe; rejects when the first connection fails. */
  async start (sink: TransportSink): Promise<void> {
    const { serverId, servers, subject, connection, probeIntervalMs } = this.#options
    const inbox = this.#subscription.open(sink)
    let nc: NatsConnectionLike
    try {
      nc = await this.#nats.connect({
        name: `policy-cache ${serverId}`,
        // nats.js pings the server itself: a dead TCP connection is noticed within two probe intervals.
        pingInterval: probeIntervalMs,
        maxPingOut: 2,
        ...connection,
        servers: [...servers],
        // Never give up: every reconnect resyncs.
        reconnect: true,
        maxReconnectAttempts: -1
      })
    } catch (err) {
      throw new Error(`the nats transport could not connect to ${servers.join(', ')}: ${this.#subscription.failed(err)}`, { cause: err })
    }
    // Closed while connecting (a registration that timed out): nobody else will close this connection.
    if (this.#subscription.closing) {
      await nc.close().catch(() => {})
      return
    }
    this.#nc = nc
    this.#replyPrefix = this.#nats.createInbox()
    nc.subscribe(`${this.#replyPrefix}.*`, { callback: (err, msg) => { if (err === null) this.#reply(msg) } })
    nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err !== null) return
        // The inbox never rejects; the catch only keeps a bug from becoming an unhandled rejection.
        // (A message without a reply subject — not one of ours — is answered nowhere: `respond` skips it.)
        inbox.receive(msg.string(), (revisions) => { this.#respond(msg, { serverId, revisions }) }).catch(() => {})
      }
    })
    nc.subscribe(`${subject}.presence`, { callback: (err, msg) => { if (err === null) this.#presence(msg) } })
    this.#watch(nc)
    // The server has the subscriptions once the flush's PONG is back: a notice published after it reaches us.
    await nc.flush()
    await this.#subscription.subscribed()
    // The first probe at once, asking every instance to answer: the others learn of this instance, and
    // it of them, before its first write.
    await this.#runProbe(true)
    // Then every `probeIntervalMs`, whatever the last one found.
    const probe = (): void => { this.#subscription.probe(probeIntervalMs, () => this.#runProbe(), probe) }
    probe()
  }

  /**
   * Sends the notice once and waits, at most `ackTimeoutMs`, for the replies of the live instances.
   * Never rejects (after `close`, or on a closed connection, it sends nothing and answers `{ 0, 0 }`).
   */
  async publish (changes: NoticeChange[]): Promise<AckSummary> {
    const nc = this.#nc
    // nats.js closes a connection only when told to (it reconnects forever): publishing cannot throw below.
    if (nc === undefined || this.#subscription.closing || nc.isClosed()) return { acked: 0, total: 0 }
    const { keys, serverId, databaseId, publicUrl, subject, ackTimeoutMs } = this.#options
    const limit = Math.min(this.#options.maxPayloadBytes, nc.info?.max_payload ?? Infinity)
    const expected = this.#expected()
    const reply = `${this.#replyPrefix}.${++this.#sequence}`
    // Within the limit (at least 512 bytes: one bare entry always fits); while disconnected, nats.js
    // buffers the messages and sends them on reconnect (the receivers' resync has healed them by then).
    const envelopes = encodeEnvelopes(keys, { origin: serverId, database: databaseId(), url: publicUrl }, changes, limit, nowSeconds())
    for (const envelope of envelopes) nc.publish(subject, envelope, { reply })
    this.#subscription.published += envelopes.length
    const replies = new Map<string, number>()
    if (expected.size > 0 && ackTimeoutMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ackTimeoutMs)
        timer.unref()
        this.#pending.set(reply, {
          envelopes: envelopes.length,
          replies,
          expected,
          waiting: expected.size,
          done: () => { clearTimeout(timer); resolve() }
        })
      })
      this.#pending.delete(reply)
    }
    const acked = new Set([...replies].filter(([, count]) => count >= envelopes.length).map(([id]) => id))
    for (const id of expected) {
      const seen = this.#seen.get(id)
      if (seen !== undefined && !acked.has(id)) seen.missed = true
    }
    const total = new Set([...expected, ...acked, ...this.#counted()]).size
    return { acked: acked.size, total }
  }

  /** No per-peer delivery state: the repliers are counted in each write's `peers`. */
  peers (): PeerStatus[] {
    return []
  }

  /** The connection's state and the message counters. */
  status (): TransportStatus {
    return this.#subscription.status()
  }

  /** Tells the others this instance leaves, stops probing, and closes the connection. Idempotent. */
  async close (): Promise<void> {
    if (!this.#subscription.close()) return
    for (const pending of this.#pending.values()) pending.done()
    const nc = this.#nc
    if (nc === undefined || nc.isClosed()) return
    nc.publish(`${this.#options.subject}.presence`, seal(this.#options.keys, JSON.stringify({ leave: this.#options.serverId }), nowSeconds()))
    // Sent when the server is there (bounded: with the broker away, the others forget this one after three probe intervals).
    await Promise.race([nc.flush().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 500).unref())])
    await nc.close().catch(() => {})
  }

  /** The instances a write waits for: the live members, or those seen recently that answered the last write. */
  #expected (): Set<string> {
    const { members, serverId } = this.#options
    if (members !== undefined) return new Set(members().filter((id) => id !== serverId))
    return new Set(this.#counted().filter((id) => this.#seen.get(id)?.missed !== true))
  }

  /** The instances seen within three probe intervals (this one left out); older ones are forgotten. */
  #counted (): string[] {
    if (this.#options.members !== undefined) return []
    const horizon = Date.now() - 3 * this.#options.probeIntervalMs
    const out: string[] = []
    for (const [id, seen] of this.#seen) {
      if (seen.at < horizon) this.#seen.delete(id)
      else out.push(id)
    }
    return out
  }

  #saw (id: string): void {
    if (id === this.#options.serverId) return
    // Updated in place: a write to 100 instances sees 99 replies.
    const seen = this.#seen.get(id)
    if (seen === undefined) {
      this.#seen.set(id, { at: Date.now(), missed: false })
    } else {
      seen.at = Date.now()
      seen.missed = false
    }
  }

  /**
   * Answers `msg` (when it has a reply subject) with a signed `{ serverId, revisions }`. Called from a
   * subscription's callback, so on an open connection: nats.js's publish does not throw there.
   */
  #respond (msg: NatsMsg, body: object): void {
    msg.respond(seal(this.#options.keys, JSON.stringify(body), nowSeconds()))
  }

  /** A reply to one of this instance's writes or probes: counted when it verifies. */
  #reply (msg: NatsMsg): void {
    const body = openSigned(this.#options.keys, msg.string(), nowSeconds()) as { serverId?: unknown } | undefined
    const id = body?.serverId
    if (typeof id !== 'string') return
    const probe = this.#probe
    if (id === this.#options.serverId) {
      if (probe !== undefined && probe.reply === msg.subject) probe.answered()
      return
    }
    this.#saw(id)
    const pending = this.#pending.get(msg.subject)
    if (pending === undefined) return
    const count = (pending.replies.get(id) ?? 0) + 1
    pending.replies.set(id, count)
    // Counted, not re-checked over every member per reply: a write to 100 instances gets 99 replies.
    if (count === pending.envelopes && pending.expected.has(id) && --pending.waiting === 0) pending.done()
  }

  /**
   * A presence probe or a leave, from a verified sender. A probe is answered when it is this
   * instance's own (the probe's round trip) or asks for answers (a new instance's first probe). The
   * others' periodic probes are not: every instance probes every interval, so each hears of every
   * other from its probes alone — answering them all was N × (N − 1) signed replies per interval.
   */
  #presence (msg: NatsMsg): void {
    const body = openSigned(this.#options.keys, msg.string(), nowSeconds()) as { presence?: unknown, leave?: unknown, answer?: unknown } | undefined
    if (typeof body?.leave === 'string') {
      this.#seen.delete(body.leave)
      return
    }
    if (typeof body?.presence !== 'string') return
    this.#saw(body.presence)
    const { serverId } = this.#options
    if (msg.reply !== undefined && (body.presence === serverId || body.answer === true)) this.#respond(msg, { serverId, revisions: {} })
  }

  /** Follows nats.js's status events: disconnect → down; reconnect (subscriptions restored) → resync. */
  #watch (nc: NatsConnectionLike): void {
    const subscription = this.#subscription
    const follow = async (): Promise<void> => {
      for await (const event of nc.status()) {
        if (subscription.closing) return
        if (event.type === 'disconnect') {
          subscription.lost('policy-cache: the NATS connection was lost; nats.js reconnects', `disconnected from ${String(event.server)}`)
        } else if (event.type === 'reconnect') {
          // nats.js re-sent the subscriptions; the flush makes sure the server has them before the resync reads.
          await nc.flush().catch(() => {})
          // (After close, subscribed() does nothing.)
          await subscription.subscribed()
        }
      }
    }
    follow().catch((err: unknown) => this.#options.log.warn({ err }, 'policy-cache: following the NATS connection\'s status failed'))
  }

  /** A presence probe that this instance must itself answer within `probeTimeoutMs`; with `ask`, every instance answers it. */
  async #runProbe (ask = false): Promise<void> {
    const nc = this.#nc
    const subscription = this.#subscription
    if (nc === undefined || subscription.closing || nc.isClosed()) return
    const { keys, serverId, subject, probeTimeoutMs } = this.#options
    const reply = `${this.#replyPrefix}.p${++this.#sequence}`
    const answered = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), probeTimeoutMs)
      timer.unref()
      this.#probe = { reply, answered: () => { clearTimeout(timer); resolve(true) } }
      nc.publish(`${subject}.presence`, seal(keys, JSON.stringify(ask ? { presence: serverId, answer: true } : { presence: serverId }), nowSeconds()), { reply })
    })
    this.#probe = undefined
    // After close the state is 'closed', neither 'down' nor 'up': nothing below acts.
    if (answered) {
      // Down by a failed probe while nats.js held the connection: what came meanwhile may be lost.
      // Stryker disable next-line OptionalChaining: this transport never reports 'down' without a reason
      if (subscription.state === 'down' && subscription.lastError?.startsWith('the presence probe') === true) await subscription.subscribed()
    } else if (subscription.state === 'up') {
      subscription.lost('policy-cache: the NATS subscription did not deliver the presence probe; resyncing once it does', `the presence probe was not answered within ${probeTimeoutMs} ms`)
    }
  }
}
