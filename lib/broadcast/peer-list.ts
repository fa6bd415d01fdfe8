/**
 * The peer list: which URLs this instance sends its notices to. Every URL is normalised (a bad one is
 * a coded startup error naming the option), duplicates are collapsed and this instance's own URL is
 * dropped — both logged as warnings, once per change of the list. A function-valued `peers` option is
 * resolved again on every `resolve()`.
 */
import { InvalidOptionError } from '../errors.js'
import type { PeersOption } from '../options.js'

/**
 * Normalises a peer URL to its origin plus path without a trailing slash. Only http and https, no
 * credentials, no query or fragment; anything else throws FST_POLICY_CACHE_INVALID_OPTION naming `name`.
 */
export function normalizePeerUrl (value: unknown, name = 'peers'): string {
  let url: URL
  try {
    url = new URL(String(value))
  } catch {
    throw new InvalidOptionError(name, `"${String(value)}" is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidOptionError(name, `"${url.protocol}" is not http or https`)
  if (url.username !== '' || url.password !== '') throw new InvalidOptionError(name, 'a peer URL must not carry credentials')
  if (url.search !== '' || url.hash !== '') throw new InvalidOptionError(name, 'a peer URL must not have a query or fragment')
  return url.origin + url.pathname.replace(/\/+$/, '')
}

/** A peer URL left out of the list, and why (logged as a warning at startup and on re-resolution). */
export interface DroppedPeer {
  url: string
  reason: 'publicUrl' | 'duplicate'
}

/**
 * Validates a resolved peer list: each URL normalised (a bad one throws, naming `name`), duplicates
 * collapsed and this instance's own URL dropped — both reported in `dropped`. The order of first
 * appearance is kept.
 */
export function resolvePeerList (list: readonly unknown[], publicUrl: string | undefined, name = 'peers'): { peers: string[], dropped: DroppedPeer[] } {
  if (!Array.isArray(list)) throw new InvalidOptionError(name, 'must be an array of URLs or a function returning one')
  const peers = new Set<string>()
  const dropped: DroppedPeer[] = []
  for (const url of list.map((value) => normalizePeerUrl(value, name))) {
    if (url === publicUrl) dropped.push({ url, reason: 'publicUrl' })
    else if (peers.has(url)) dropped.push({ url, reason: 'duplicate' })
    else peers.add(url)
  }
  return { peers: [...peers], dropped }
}

/** What a {@link PeerList} is built from: the resolved options. */
export interface PeerListOptions {
  /** A static list already passed through {@link resolvePeerList}, or the host's function. */
  peers: PeersOption
  /** What {@link resolvePeerList} dropped from a static list. */
  dropped: readonly DroppedPeer[]
  /** This instance's URL, dropped from what a function returns. */
  publicUrl: string | undefined
  /** Where dropped peers are reported. */
  log: { warn (obj: object, msg: string): void }
}

/** This instance's peers: the static list, or the host's function resolved anew on each call. */
export class PeerList {
  readonly #peers: PeersOption
  readonly #dropped: readonly DroppedPeer[]
  readonly #publicUrl: string | undefined
  readonly #log: PeerListOptions['log']
  /** The dropped peers warned about last, so an unchanged list is not warned about again. */
  #lastDropped: string | undefined

  constructor (options: PeerListOptions) {
    this.#peers = options.peers
    this.#dropped = options.dropped
    this.#publicUrl = options.publicUrl
    this.#log = options.log
  }

  /** Whether the list comes from a function, so that resolving it again may change it. */
  get dynamic (): boolean {
    return typeof this.#peers === 'function'
  }

  /**
   * The current peer URLs, warning about the ones left out when that set differs from the last
   * call's. A function's result is validated like a static list (a bad URL rejects, naming `peers`).
   */
  async resolve (): Promise<string[]> {
    if (typeof this.#peers !== 'function') {
      this.#warnDropped(this.#dropped)
      return [...this.#peers]
    }
    const { peers, dropped } = resolvePeerList(await this.#peers(), this.#publicUrl)
    this.#warnDropped(dropped)
    return peers
  }

  #warnDropped (dropped: readonly DroppedPeer[]): void {
    const key = JSON.stringify(dropped)
    if (key === this.#lastDropped) return
    this.#lastDropped = key
    for (const { url, reason } of dropped) {
      this.#log.warn({ peer: url, reason }, reason === 'publicUrl'
        ? 'policy-cache: a peer URL is this instance\'s publicUrl; dropped'
        : 'policy-cache: a peer URL is listed twice; collapsed')
    }
  }
}
