/**
 * Plain ioredis clients of the test's own, closed at the end of the test: publish what a Redis user
 * could (forged, tampered, replayed messages), record a channel, run admin commands.
 */
import { Redis } from 'ioredis'
import type { Test } from 'tap'

/** A client connected to `url`; disconnected at the end of the test. */
export async function redisClient (t: Test, url: string): Promise<Redis> {
  const client = new Redis(url, { lazyConnect: true })
  client.on('error', () => {})
  await client.connect()
  t.teardown(() => client.disconnect())
  return client
}

/** Records every message on `channel` (a subscriber connection of its own). */
export async function recordChannel (t: Test, url: string, channel: string): Promise<{ payloads: string[] }> {
  const client = await redisClient(t, url)
  const payloads: string[] = []
  client.on('message', (from: string, message: string) => { if (from === channel) payloads.push(message) })
  await client.subscribe(channel)
  return { payloads }
}
