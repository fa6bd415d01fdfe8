/**
 * Peers from DNS: a Kubernetes headless Service (`clusterIP: None`) answers its DNS name with one
 * address record per pod, so that name is a peer list the orchestrator keeps true. `dnsPeers()`
 * turns it into the function-valued `peers` option, which the peer set resolves again every
 * `peerRefreshMs` (docs/membership.md, "Kubernetes").
 */
import { Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'
import { DEFAULTS } from '../defaults.js'
import { DnsPeersError, InvalidOptionError } from '../errors.js'
import { knownKeys, routePrefix } from '../options.js'
import { normalizePeerUrl } from './peer-list.js'

/** Which address records {@link dnsPeers} turns into peer URLs. */
export type DnsPeersFamily = 'auto' | 'ipv4' | 'ipv6' | 'both'

/** Options of {@link dnsPeers}. */
export interface DnsPeersOptions {
  /**
   * The headless Service's fully qualified DNS name, e.g. `policy.default.svc.cluster.local` (the
   * resolver's search domains are not applied, so a short name does not resolve).
   */
  name: string
  /** The port every pod listens on (a headless Service gives all its pods one port). */
  port: number
  /** The peers' scheme. Default `'http'`. */
  protocol?: 'http' | 'https' | undefined
  /** The plugin's register prefix on the peers (`/policy`), when it is mounted under one. Default none. */
  path?: string | undefined
  /** DNS servers to ask (`['10.96.0.10', '127.0.0.1:5353']`). Default: the system's (`/etc/resolv.conf`). */
  servers?: readonly string[] | undefined
  /**
   * Which records: `'auto'` (default) the A records, or the AAAA records when there are no A records
   * (one URL per pod on IPv4, IPv6 and dual-stack clusters); `'ipv4'` A only; `'ipv6'` AAAA only;
   * `'both'` A and AAAA (a dual-stack pod is then listed twice).
   */
  family?: DnsPeersFamily | undefined
  /** Longest one resolution waits for the DNS servers, in milliseconds; then it rejects. Default 2000. */
  timeoutMs?: number | undefined
}

const OPTION_KEYS: ReadonlyArray<keyof DnsPeersOptions> = ['name', 'port', 'protocol', 'path', 'servers', 'family', 'timeoutMs']
const FAMILIES: readonly DnsPeersFamily[] = ['auto', 'ipv4', 'ipv6', 'both']
/** A DNS name: dot-separated labels of letters, digits, `-` and `_` (not at a label's ends), ≤ 253 characters. */
const DNS_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/
/** The answers that mean "no such pods right now" rather than "DNS failed". */
const NO_RECORDS = new Set(['ENOTFOUND', 'ENODATA'])

/** One lookup's records; a name with none (NXDOMAIN, or no records of this type) is an empty list. */
async function records (lookup: Promise<string[]>): Promise<string[]> {
  try {
    return await lookup
  } catch (err) {
    if (NO_RECORDS.has(String((err as { code?: unknown }).code))) return []
    throw err
  }
}

/** The addresses of `name` in `family`, from `resolver`. */
async function addresses (resolver: Resolver, name: string, family: DnsPeersFamily): Promise<string[]> {
  switch (family) {
    case 'ipv4':
      return await records(resolver.resolve4(name))
    case 'ipv6':
      return await records(resolver.resolve6(name))
    case 'both':
      return (await Promise.all([records(resolver.resolve4(name)), records(resolver.resolve6(name))])).flat()
    case 'auto': {
      // Both asked at once; the AAAA answer only matters when there are no A records.
      const ipv6 = records(resolver.resolve6(name))
      ipv6.catch(() => {})
      const ipv4 = await records(resolver.resolve4(name))
      return ipv4.length > 0 ? ipv4 : await ipv6
    }
  }
}

/**
 * A function for the `peers` option that resolves a headless Service's DNS name into peer URLs
 * (`http://10.1.2.3:3000`, `http://[fd00::3]:3000/policy`), sorted and without duplicates. Pass the
 * instance's own URL as `publicUrl` so that the plugin drops it from the answer.
 *
 * A name with no records (NXDOMAIN, or no address of the family: a Deployment scaled to zero, or
 * with no ready pod yet) resolves to `[]`. Any other failure — no answer within `timeoutMs`,
 * SERVFAIL, REFUSED — rejects with FST_POLICY_CACHE_DNS_PEERS (the resolver's error as `cause`):
 * at registration that fails registration; later, the plugin keeps the last list and logs a warning.
 *
 * The options are checked at once: a bad one throws FST_POLICY_CACHE_INVALID_OPTION naming it
 * (`dnsPeers.port`).
 */
export function dnsPeers (options: DnsPeersOptions): () => Promise<string[]> {
  const given = knownKeys<DnsPeersOptions>('dnsPeers', options, OPTION_KEYS)
  const { name, port } = given
  if (typeof name !== 'string' || !DNS_NAME.test(name) || isIP(name) !== 0) {
    throw new InvalidOptionError('dnsPeers.name', 'must be a DNS name like "policy.default.svc.cluster.local" (list addresses in `peers` instead)')
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidOptionError('dnsPeers.port', 'must be an integer from 1 to 65535')
  const protocol = given.protocol ?? DEFAULTS.dnsPeers.protocol
  if (protocol !== 'http' && protocol !== 'https') throw new InvalidOptionError('dnsPeers.protocol', 'must be "http" or "https"')
  const path = routePrefix('dnsPeers.path', given.path, '')
  const family = given.family ?? DEFAULTS.dnsPeers.family
  if (!FAMILIES.includes(family)) throw new InvalidOptionError('dnsPeers.family', `must be one of ${FAMILIES.join(', ')}`)
  const timeoutMs = given.timeoutMs ?? DEFAULTS.dnsPeers.timeoutMs
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 60000) throw new InvalidOptionError('dnsPeers.timeoutMs', 'must be an integer from 1 to 60000')
  let servers: string[] | undefined
  if (given.servers !== undefined) {
    if (!Array.isArray(given.servers) || given.servers.length === 0) throw new InvalidOptionError('dnsPeers.servers', 'must be a non-empty array of addresses (leave it out for the system\'s servers)')
    servers = [...given.servers]
    try {
      // Node's own parser: `1.2.3.4`, `1.2.3.4:53`, `::1`, `[::1]:53`.
      new Resolver().setServers(servers)
    } catch (err) {
      throw new InvalidOptionError('dnsPeers.servers', (err as Error).message, { cause: err })
    }
  }

  const url = (address: string): string =>
    // Stryker disable next-line StringLiteral: built from checked parts and a resolver's address, the URL never fails
    normalizePeerUrl(`${protocol}://${address.includes(':') ? `[${address}]` : address}:${port}${path}`, 'dnsPeers')

  return async function resolveDnsPeers (): Promise<string[]> {
    // A resolver per call: calls made at once do not cancel each other, and a system resolver
    // reads /etc/resolv.conf anew. The first try waits a third of timeoutMs, so that a lost UDP
    // packet is asked again; the timer bounds the whole call whatever the resolver does (c-ares
    // backs off: its second try alone would wait longer).
    const resolver = new Resolver({ timeout: Math.ceil(timeoutMs / 3), tries: 2 })
    if (servers !== undefined) resolver.setServers(servers)
    let timedOut = false
    // Stryker disable next-line BlockStatement: the resolver's own two tries end about when the timer fires (either is named a timeout below)
    const timer = setTimeout(() => {
      timedOut = true
      resolver.cancel()
    }, timeoutMs)
    timer.unref()
    let found: string[]
    try {
      // Stryker disable next-line BlockStatement: the timer is unref()ed; cancelling a resolver that has answered does nothing
      found = await addresses(resolver, name, family).finally(() => { clearTimeout(timer) })
    } catch (err) {
      // The resolver's message names the query and code: `queryA ESERVFAIL policy.default.svc.cluster.local`.
      // Stryker disable next-line ConditionalExpression,StringLiteral: whichever of the timer and the resolver's tries ends first
      const silent = timedOut || (err as { code?: unknown }).code === 'ETIMEOUT'
      throw new DnsPeersError(name, silent ? `no answer within ${timeoutMs} ms (timeoutMs)` : (err as Error).message, { cause: err })
    }
    return [...new Set(found.map(url))].sort()
  }
}
