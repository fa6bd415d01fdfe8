/**
 * In-process clusters: several host apps on loopback sharing one database (a SQLite file, or each
 * its own pool on a server database), each listing the others as peers.
 */
import { once } from 'node:events'
import { createServer } from 'node:net'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import type { Test } from 'tap'
import policyCache, { type PolicyCacheOptions } from '../../lib/plugin.js'
import { SECRET, tempDir } from './app.js'

/** A free loopback port (listen on 0, close, reuse). */
export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

export interface Node {
  app: FastifyInstance
  url: string
}

/**
 * Starts `count` instances sharing one SQLite file (`file`, or a new one), or, with `openDb`, each on
 * a Kysely of its own (its own pool, as separate hosts would have; destroyed after its app closes).
 * `extraPeers` are appended to every instance's peer list (e.g. a dead, hanging or proxied peer).
 * Server ids are `<name>-<n>`. Everything is closed at the end of the test.
 */
export async function startCluster (t: Test, count: number, options: PolicyCacheOptions & {
  extraPeers?: string[]
  file?: string
  name?: string
  openDb?: () => Promise<Kysely<any>>
} = {}): Promise<Node[]> {
  const { extraPeers = [], file = join(tempDir(t), 'cluster.db'), name = 'node', openDb, ...rest } = options
  const ports = await Promise.all(Array.from({ length: count }, freePort))
  const urls = ports.map((port) => `http://127.0.0.1:${port}`)
  const nodes: Node[] = []
  for (const [i, url] of urls.entries()) {
    const app = Fastify()
    const db = await openDb?.()
    t.teardown(async () => {
      await app.close()
      await db?.destroy()
    })
    await app.register(policyCache, {
      sqliteFile: file,
      serverId: `${name}-${i + 1}`,
      publicUrl: url,
      peers: [...urls.filter((u) => u !== url), ...extraPeers],
      webhookSecret: SECRET,
      syncIntervalMs: 0,
      ...rest,
      ...(db === undefined ? {} : { db })
    })
    await app.listen({ port: ports[i], host: '127.0.0.1' })
    nodes.push({ app, url })
  }
  return nodes
}
