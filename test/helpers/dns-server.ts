/**
 * A tiny authoritative DNS server on 127.0.0.1 (UDP, random port) answering A and AAAA questions from
 * a table the test controls: enough DNS (RFC 1035 §4) for node:dns's resolver, written by hand.
 */
import { once } from 'node:events'
import { createSocket, type RemoteInfo } from 'node:dgram'
import { isIPv4, isIPv6 } from 'node:net'

/** What the server answers for one name. */
export interface DnsEntry {
  /** IPv4 addresses (A records). */
  a?: readonly string[]
  /** IPv6 addresses (AAAA records). */
  aaaa?: readonly string[]
  /** A response code instead of records: 2 SERVFAIL, 5 REFUSED. */
  rcode?: number
  /** Never answer (the resolver times out). */
  silent?: boolean
  /** Leave this many questions unanswered first, as if their packets were lost (counted down). */
  drop?: number
}

export interface DnsServer {
  /** `127.0.0.1:<port>`, for `servers`. */
  address: string
  /** The table: name (lower case, no trailing dot) → entry. A name not in it is NXDOMAIN. */
  table: Map<string, DnsEntry>
  /** Questions received, as `name TYPE` (`A`, `AAAA`, or the type number). */
  questions: string[]
}

const TYPE_A = 1
const TYPE_AAAA = 28

function ipv4Bytes (address: string): Buffer {
  if (!isIPv4(address)) throw new Error(`not an IPv4 address: ${address}`)
  return Buffer.from(address.split('.').map(Number))
}

function ipv6Bytes (address: string): Buffer {
  if (!isIPv6(address) || address.includes('.')) throw new Error(`not a plain IPv6 address: ${address}`)
  const [head, tail] = address.split('::') as [string, string | undefined]
  const groups = (part: string | undefined): string[] => part === undefined || part === '' ? [] : part.split(':')
  const left = groups(head)
  const right = groups(tail)
  const all = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
  const bytes = Buffer.alloc(16)
  all.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2))
  return bytes
}

/** The question of a query: its name (as asked), type, and where the question section ends. */
function readQuestion (query: Buffer): { name: string, type: number, end: number } {
  const labels: string[] = []
  let offset = 12
  while (query[offset] !== 0) {
    const length = query[offset]
    labels.push(query.toString('latin1', offset + 1, offset + 1 + length))
    offset += 1 + length
  }
  return { name: labels.join('.'), type: query.readUInt16BE(offset + 1), end: offset + 5 }
}

/** The response to `query` from `table`. */
function respond (query: Buffer, table: ReadonlyMap<string, DnsEntry>, questions: string[]): Buffer | undefined {
  const { name, type, end } = readQuestion(query)
  questions.push(`${name} ${type === TYPE_A ? 'A' : type === TYPE_AAAA ? 'AAAA' : type}`)
  const entry = table.get(name.toLowerCase())
  if (entry?.silent === true) return undefined
  if (entry?.drop !== undefined && entry.drop > 0) {
    entry.drop--
    return undefined
  }
  const rcode = entry === undefined ? 3 : entry.rcode ?? 0
  const records = rcode !== 0 || entry === undefined
    ? []
    : type === TYPE_A ? (entry.a ?? []).map(ipv4Bytes) : type === TYPE_AAAA ? (entry.aaaa ?? []).map(ipv6Bytes) : []
  const header = Buffer.alloc(12)
  header.writeUInt16BE(query.readUInt16BE(0), 0)
  // QR, the query's opcode and RD, AA, RA, the response code.
  header.writeUInt16BE(0x8000 | (query.readUInt16BE(2) & 0x7900) | 0x0400 | 0x0080 | rcode, 2)
  header.writeUInt16BE(1, 4)
  header.writeUInt16BE(records.length, 6)
  const answers = records.map((rdata) => {
    const fixed = Buffer.alloc(12)
    fixed.writeUInt16BE(0xc00c, 0) // the name: a pointer to the question's
    fixed.writeUInt16BE(rdata.length === 4 ? TYPE_A : TYPE_AAAA, 2)
    fixed.writeUInt16BE(1, 4) // class IN
    fixed.writeUInt32BE(0, 6) // TTL
    fixed.writeUInt16BE(rdata.length, 10)
    return Buffer.concat([fixed, rdata])
  })
  return Buffer.concat([header, query.subarray(12, end), ...answers])
}

/** Starts the server; it stops at the end of the test. */
export async function startDnsServer (t: { teardown: (fn: () => unknown) => void }, table: Record<string, DnsEntry> = {}): Promise<DnsServer> {
  const socket = createSocket('udp4')
  const server: DnsServer = { address: '', table: new Map(Object.entries(table)), questions: [] }
  socket.on('message', (query: Buffer, peer: RemoteInfo) => {
    const answer = respond(query, server.table, server.questions)
    if (answer !== undefined) socket.send(answer, peer.port, peer.address)
  })
  socket.bind(0, '127.0.0.1')
  await once(socket, 'listening')
  server.address = `127.0.0.1:${socket.address().port}`
  t.teardown(() => new Promise<void>((resolve) => socket.close(() => resolve())))
  return server
}
