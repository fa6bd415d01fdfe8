/**
 * The webhook transport, the default (docs/protocol.md, docs/transports.md): one signed HTTP request
 * per peer per notice, through the {@link Broadcaster}; a write waits for the acknowledgements of the
 * peers believed up, at most `ackTimeoutMs`. Receiving is the `POST /webhook/refresh` route
 * (receiver.ts), which hands each verified notice to {@link WebhookTransport.receive}. Unchanged on
 * the wire: this class only puts the broadcaster behind the {@link Transport} interface.
 */
import type { Broadcaster } from './broadcaster.js'
import type { NoticeChange, NoticeReply, ReceivedNotice } from './notice.js'
import type { AckSummary, PeerStatus } from './status.js'
import type { Transport, TransportSink, TransportStatus } from './transport.js'

/** What a {@link WebhookTransport} is built from. */
export interface WebhookTransportOptions {
  /** Sends the notices; closed with the transport. */
  broadcaster: Broadcaster
  /** Adds where each peer comes from (static, membership) to the broadcaster's statuses. Default: as is. */
  annotate?: (statuses: PeerStatus[]) => PeerStatus[]
}

/** Notices over signed webhooks: acknowledged, one request per peer. */
export class WebhookTransport implements Transport {
  readonly type = 'webhook' as const
  readonly #broadcaster: Broadcaster
  readonly #annotate: (statuses: PeerStatus[]) => PeerStatus[]
  #sink: TransportSink | undefined
  #startedAt: string | null = null
  #received = 0
  #closed = false

  constructor (options: WebhookTransportOptions) {
    this.#broadcaster = options.broadcaster
    this.#annotate = options.annotate ?? ((statuses) => statuses)
  }

  /** Nothing to subscribe to: the receiver is an HTTP route. Resolves at once. */
  async start (sink: TransportSink): Promise<void> {
    this.#sink = sink
    this.#startedAt = new Date().toISOString()
  }

  /**
   * A verified notice the receiver route accepted: handed to the engine (the sink). Rejects before
   * `start`, and with the sink's coded errors (the route answers them).
   */
  async receive (notice: ReceivedNotice): Promise<NoticeReply['revisions']> {
    if (this.#sink === undefined) throw new Error('the webhook transport is not started')
    this.#received++
    return await this.#sink.deliver(notice)
  }

  /** Queues the notice for every peer and waits for the acknowledgements (see `Broadcaster.notify`). */
  publish (changes: NoticeChange[]): Promise<AckSummary> {
    return this.#broadcaster.notify(changes)
  }

  /** Every peer's delivery state, annotated with its source. */
  peers (): PeerStatus[] {
    return this.#annotate(this.#broadcaster.status())
  }

  /** `up` once started (the route serves), `closed` after `close`; no channel, no subscription to lose. */
  status (): TransportStatus {
    return {
      type: 'webhook',
      state: this.#closed ? 'closed' : this.#startedAt === null ? 'connecting' : 'up',
      acknowledged: true,
      channel: null,
      subscribedAt: this.#startedAt,
      subscriptions: this.#startedAt === null ? 0 : 1,
      lastError: null,
      published: 0,
      received: this.#received,
      hints: 0,
      dropped: 0
    }
  }

  /** Closes the broadcaster (pending retries, in-flight requests). Idempotent. */
  async close (): Promise<void> {
    this.#closed = true
    await this.#broadcaster.close()
  }
}
