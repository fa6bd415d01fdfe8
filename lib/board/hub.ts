/**
 * The policy board's live data (README "Policy board"): what each member of the cluster reports about
 * itself, gathered into one snapshot per tenant, and the live streams that receive one every
 * `intervalMs`.
 *
 * The instance serving a board asks every peer for its report with a request signed like a notice
 * (the webhook secret's keys, Standard Webhooks headers): its own `/servers` knows each peer's
 * delivery state, not which revision the peer answers a tenant from. One round of requests per tick,
 * whatever the number of open streams, and only while a stream is open.
 */
import { performance } from 'node:perf_hooks'
import { LRUCache } from 'lru-cache'
import { BoardBusyError } from '../errors.js'
import type { DeliveryEvent, PeerStatus } from '../broadcast/status.js'
import type { NoticeChange } from '../broadcast/notice.js'
import { newMessageId, sign, verify, WEBHOOK_HEADERS, type SignatureHeaders } from '../broadcast/signature.js'
import type { TransportStatus } from '../broadcast/transport.js'

/** Writes whose propagation each instance remembers for the board. */
export const PROPAGATION_WRITES = 20
/** Longest the board waits for a peer's report. */
export const MEMBER_TIMEOUT_MS = 1000
/** Largest member report read, in bytes. */
const MAX_REPORT_BYTES = 256 * 1024
/** Members remembered after they left the peer set (shown as `left`), and for how long. */
const LEFT_MEMBERS = 64
const LEFT_TTL_MS = 600_000

/** One write committed on an instance and how long each peer took to acknowledge its revision. */
export interface PropagationSample {
  /** The serverId of the instance that committed it. */
  origin: string
  tenant: string
  revision: number
  /** When it was committed (epoch ms, the origin's clock). */
  at: number
  /** Each acknowledging peer, by URL, and the milliseconds from the commit to its acknowledgement. */
  acks: Array<{ peer: string, ms: number }>
}

/** What an instance reports about itself to the board (`GET <board>/api/member`, signed). */
export interface MemberReport {
  serverId: string
  /** This start's incarnation (membership), or null without membership. */
  incarnation: string | null
  uptimeMs: number
  /** A graceful shutdown began. */
  closing: boolean
  transport: { type: TransportStatus['type'], state: TransportStatus['state'] }
  /** The revision each asked tenant is answered from here; null when it is not cached. */
  revisions: Record<string, number | null>
  propagation: PropagationSample[]
}

/** One member of the cluster on the board. */
export interface BoardMember {
  serverId: string | null
  url: string | null
  /** The instance serving the board. */
  self: boolean
  /** `self`, the peer's delivery state, or `left`: no longer in the peer set (gone from the membership). */
  state: 'self' | PeerStatus['state'] | 'left'
  /** Whether it answered the board's request for its report just now. */
  reachable: boolean
  source: PeerStatus['source'] | null
  incarnation: string | null
  heartbeatAgeMs: number | null
  delivered: number | null
  failed: number | null
  latencyMs: number | null
  transport: MemberReport['transport'] | null
  uptimeMs: number | null
  closing: boolean
  /** The selected tenant's revision there (null: not cached there, or not known). */
  revision: number | null
  /** How far behind the newest revision any member answers from (null when unknown). */
  lag: number | null
}

/** A board snapshot: the cluster as seen from this instance, for one tenant. */
export interface BoardSnapshot {
  /** When it was taken (epoch ms). */
  at: number
  self: string
  tenant: string | null
  /** The highest revision any member answers the tenant from. */
  newest: number | null
  members: BoardMember[]
  /** The latest writes of every member that reported, newest first. */
  propagation: PropagationSample[]
  /** Tenants cached here (the most recently used first), to pick from. */
  tenants: Array<{ tenant: string, revision: number }>
}

/** What the hub reads from the engine and the transport. */
export interface BoardSources {
  serverId: string
  /** This instance's URL as peers see it (`publicUrl`), if known. */
  url: string | null
  incarnation: string | null
  /** Signing keys of the member requests; none: peers are not asked. */
  keys: readonly Buffer[]
  /** The board's path under a member's URL (`/policy-board`), where each peer serves its report. */
  path: string
  maxStreams: number
  intervalMs: number
  closing: () => boolean
  peers: () => PeerStatus[]
  cachedRevision: (tenant: string) => number | null
  cachedRevisions: (limit: number) => Array<[string, number]>
  transport: () => TransportStatus
  log: { debug: (obj: object, msg: string) => void }
}

/** A live stream: its tenant and where its snapshots go. */
interface Stream {
  tenant: string | null
  send: (snapshot: BoardSnapshot) => void
  end: () => void
}

/** What the signature of a member request covers: the board's purpose and the tenants asked. */
function signedContent (tenants: string): string {
  return `policy-board.member:${tenants}`
}

/** Remembers the latest writes committed here and their acknowledgements, for the propagation chart. */
export class PropagationLog {
  readonly #origin: string
  /** Oldest first; at most {@link PROPAGATION_WRITES}. */
  readonly #writes: Array<PropagationSample & { started: number }> = []

  constructor (origin: string) {
    this.#origin = origin
  }

  /** Writes handed to the transport, right after their commit. */
  committed (changes: readonly NoticeChange[]): void {
    const started = performance.now()
    for (const { tenant, revision } of changes) {
      this.#writes.push({ origin: this.#origin, tenant, revision, at: Date.now(), acks: [], started })
      if (this.#writes.length > PROPAGATION_WRITES) this.#writes.shift()
    }
  }

  /** The broadcaster's observer: a delivery acknowledges the writes it carried. */
  readonly observe = (event: DeliveryEvent): void => {
    if (event.kind !== 'delivered') return
    const now = performance.now()
    for (const { tenant, revision } of event.changes) {
      const write = this.#writes.find((w) => w.tenant === tenant && w.revision === revision)
      if (write !== undefined && !write.acks.some((ack) => ack.peer === event.peer)) {
        write.acks.push({ peer: event.peer, ms: Math.round((now - write.started) * 10) / 10 })
      }
    }
  }

  /** The remembered writes, newest first. */
  samples (): PropagationSample[] {
    return this.#writes.map(({ started: _started, acks, ...write }) => ({ ...write, acks: acks.map((ack) => ({ ...ack })) })).reverse()
  }
}

export class BoardHub {
  readonly #sources: BoardSources
  readonly #log: PropagationLog
  readonly #startedAt = Date.now()
  readonly #streams = new Set<Stream>()
  /** Peers seen in an earlier snapshot, by URL: shown as `left` once gone from the peer set. */
  readonly #seen = new LRUCache<string, BoardMember>({ max: LEFT_MEMBERS, ttl: LEFT_TTL_MS })
  #timer: NodeJS.Timeout | undefined
  #ticking = false
  #closed = false

  constructor (sources: BoardSources) {
    this.#sources = sources
    this.#log = new PropagationLog(sources.serverId)
  }

  /** Writes handed to the transport (their propagation starts). */
  committed (changes: readonly NoticeChange[]): void {
    this.#log.committed(changes)
  }

  /** The broadcaster's observer. */
  readonly observe = (event: DeliveryEvent): void => this.#log.observe(event)

  /** This instance's report on `tenants`. */
  report (tenants: readonly string[]): MemberReport {
    const { type, state } = this.#sources.transport()
    return {
      serverId: this.#sources.serverId,
      incarnation: this.#sources.incarnation,
      uptimeMs: Date.now() - this.#startedAt,
      closing: this.#sources.closing(),
      transport: { type, state },
      revisions: Object.fromEntries(tenants.map((tenant) => [tenant, this.#sources.cachedRevision(tenant)])),
      propagation: this.#log.samples()
    }
  }

  /** Whether a member request carries a valid signature over the tenants it asks for. */
  verify (headers: SignatureHeaders, tenants: string): boolean {
    return verify(this.#sources.keys, headers, signedContent(tenants), Math.floor(Date.now() / 1000))
  }

  /** A peer's report, or undefined when it does not answer in time, refuses, or serves no board. */
  async #ask (url: string, tenants: readonly string[]): Promise<MemberReport | undefined> {
    const list = tenants.join(',')
    const id = newMessageId()
    const timestamp = Math.floor(Date.now() / 1000)
    try {
      const response = await fetch(`${url}${this.#sources.path}/api/member?tenants=${encodeURIComponent(list)}`, {
        headers: {
          [WEBHOOK_HEADERS.id]: id,
          [WEBHOOK_HEADERS.timestamp]: String(timestamp),
          [WEBHOOK_HEADERS.signature]: sign(this.#sources.keys, id, timestamp, signedContent(list))
        },
        signal: AbortSignal.timeout(MEMBER_TIMEOUT_MS)
      })
      const text = await response.text()
      if (response.status !== 200 || text.length > MAX_REPORT_BYTES) throw new Error(`HTTP ${response.status}`)
      return JSON.parse(text) as MemberReport
    } catch (err) {
      this.#sources.log.debug({ peer: url, err }, 'policy-cache: the board could not read a peer\'s report')
      return undefined
    }
  }

  /** One snapshot per tenant asked (`null`: none selected), asking every peer once. */
  async snapshots (tenants: ReadonlyArray<string | null>): Promise<Map<string | null, BoardSnapshot>> {
    const named = [...new Set(tenants.filter((tenant): tenant is string => tenant !== null))]
    const peers = this.#sources.peers()
    const asked = this.#sources.keys.length === 0 ? [] : peers.filter((peer) => peer.state !== 'gone')
    const reports = new Map<string, MemberReport>()
    await Promise.all(asked.map(async (peer) => {
      const report = await this.#ask(peer.url, named)
      if (report !== undefined) reports.set(peer.url, report)
    }))
    const own = this.report(named)
    const at = Date.now()

    const present = new Set(peers.map((peer) => peer.url))
    const left = [...this.#seen.entries()].filter(([url]) => !present.has(url)).map(([, member]) => member)
    const propagation = [own, ...reports.values()].flatMap((report) => report.propagation)
      .sort((a, b) => b.at - a.at).slice(0, PROPAGATION_WRITES)
    const cached = this.#sources.cachedRevisions(20).map(([tenant, revision]) => ({ tenant, revision }))

    const selfMember: BoardMember = {
      serverId: own.serverId,
      url: this.#sources.url,
      self: true,
      state: 'self',
      reachable: true,
      source: null,
      incarnation: own.incarnation,
      heartbeatAgeMs: null,
      delivered: null,
      failed: null,
      latencyMs: null,
      transport: own.transport,
      uptimeMs: own.uptimeMs,
      closing: own.closing,
      revision: null,
      lag: null
    }
    const peerMembers = peers.map((peer): BoardMember => {
      const report = reports.get(peer.url)
      const member: BoardMember = {
        serverId: peer.serverId ?? report?.serverId ?? null,
        url: peer.url,
        self: false,
        state: peer.state,
        reachable: report !== undefined,
        source: peer.source,
        incarnation: peer.incarnation ?? report?.incarnation ?? null,
        heartbeatAgeMs: peer.heartbeatAgeMs,
        delivered: peer.delivered,
        failed: peer.failed,
        latencyMs: peer.latencyMs,
        transport: report?.transport ?? null,
        uptimeMs: report?.uptimeMs ?? null,
        closing: report?.closing ?? false,
        revision: null,
        lag: null
      }
      this.#seen.set(peer.url, member)
      return member
    })
    const reportOf = (member: BoardMember): MemberReport | undefined => member.self ? own : reports.get(member.url as string)

    const result = new Map<string | null, BoardSnapshot>()
    for (const tenant of new Set(tenants)) {
      const members = [selfMember, ...peerMembers].map((member) => ({
        ...member,
        revision: tenant === null ? null : reportOf(member)?.revisions[tenant] ?? null
      }))
      const known = members.map((member) => member.revision).filter((revision): revision is number => revision !== null)
      const newest = known.length === 0 ? null : Math.max(...known)
      for (const member of members) if (member.revision !== null) member.lag = (newest as number) - member.revision
      for (const member of left) members.push({ ...member, state: 'left', reachable: false })
      result.set(tenant, { at, self: own.serverId, tenant, newest, members, propagation, tenants: cached })
    }
    return result
  }

  /** A snapshot for one tenant (or none). */
  async snapshot (tenant: string | null): Promise<BoardSnapshot> {
    return (await this.snapshots([tenant])).get(tenant) as BoardSnapshot
  }

  /**
   * Opens a live stream: `send` gets a snapshot at once and then every `intervalMs`, until `end` is
   * called by {@link close} or the returned function. Throws FST_POLICY_CACHE_BOARD_BUSY when
   * `maxStreams` are open or the instance is shutting down.
   */
  open (tenant: string | null, send: Stream['send'], end: Stream['end']): () => void {
    if (this.#closed || this.#sources.closing()) throw new BoardBusyError('this instance is shutting down')
    if (this.#streams.size >= this.#sources.maxStreams) {
      throw new BoardBusyError(`${this.#sources.maxStreams} are open (board.maxStreams); close a board elsewhere`)
    }
    const stream: Stream = { tenant, send, end }
    this.#streams.add(stream)
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => { this.#tick() }, this.#sources.intervalMs)
      this.#timer.unref()
    }
    this.#tick()
    return () => this.#remove(stream)
  }

  #remove (stream: Stream): void {
    this.#streams.delete(stream)
    if (this.#streams.size === 0) {
      clearInterval(this.#timer)
      this.#timer = undefined
    }
  }

  /** Sends every stream its snapshot; a tick still gathering when the next is due makes that one skip. */
  #tick (): void {
    if (this.#ticking) return
    this.#ticking = true
    const streams = [...this.#streams]
    this.snapshots(streams.map((stream) => stream.tenant))
      .then((snapshots) => {
        for (const stream of streams) {
          if (this.#streams.has(stream)) stream.send(snapshots.get(stream.tenant) as BoardSnapshot)
        }
      })
      .catch((err: unknown) => { this.#sources.log.debug({ err }, 'policy-cache: a board snapshot failed') })
      .finally(() => { this.#ticking = false })
  }

  /** Ends every live stream and refuses new ones (a graceful shutdown, `app.close()`). Idempotent. */
  close (): void {
    this.#closed = true
    for (const stream of [...this.#streams]) {
      this.#remove(stream)
      stream.end()
    }
  }
}
