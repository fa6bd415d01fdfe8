/**
 * A loopback TCP proxy in front of an instance that a test can cut and restore (a partition), or
 * hold (a blackhole: connections stay open, nothing gets through either way).
 */
import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import type { Test } from 'tap'

export interface Proxy {
  url: string
  /** While false, new connections are refused (reset) and open ones are cut. */
  setUp (up: boolean): void
  /** Resolves once the next bytes from a client have been forwarded (e.g. a query is on its way). */
  nextData (): Promise<void>
  /**
   * While true, nothing is forwarded on any connection, open or new (they are accepted and kept
   * open): what a client sees of a database that has gone silent. Held bytes flow on release.
   */
  hold (held: boolean): void
}

export async function startProxy (t: Test, targetPort: number): Promise<Proxy> {
  let up = true
  let held = false
  const open = new Set<Socket>()
  const pairs = new Set<[Socket, Socket]>()
  const forward = ([client, upstream]: [Socket, Socket]): void => { client.pipe(upstream).pipe(client) }
  const stop = ([client, upstream]: [Socket, Socket]): void => {
    client.unpipe(upstream)
    upstream.unpipe(client)
    client.pause()
    upstream.pause()
  }
  let waiting: Array<() => void> = []
  const server = createServer((client) => {
    if (!up) { client.resetAndDestroy(); return }
    const upstream = connect(targetPort, '127.0.0.1')
    for (const s of [client, upstream]) {
      open.add(s)
      s.on('close', () => open.delete(s))
      s.on('error', () => { client.destroy(); upstream.destroy() })
    }
    client.on('data', () => {
      const resolve = waiting
      waiting = []
      for (const fn of resolve) fn()
    })
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    client.on('close', () => pairs.delete(pair))
    if (held) stop(pair)
    else forward(pair)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { for (const s of open) s.destroy(); server.close() })
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    setUp (value) {
      up = value
      if (!value) for (const s of open) s.destroy()
    },
    nextData () {
      return new Promise((resolve) => { waiting.push(resolve) })
    },
    hold (value) {
      if (value === held) return
      held = value
      for (const pair of pairs) {
        if (held) stop(pair)
        else forward(pair)
      }
    }
  }
}
