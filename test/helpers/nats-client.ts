/**
 * A plain NATS client of the test's own, closed at the end of the test: publishes what a broker user
 * could (forged, tampered, replayed messages) and records what goes over a subject.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node'
import type { Test } from 'tap'

/** Connects to `url`; closed at the end of the test. */
export async function natsClient (t: Test, url: string): Promise<NatsConnection> {
  const nc = await connect({ servers: url })
  t.teardown(() => nc.close())
  return nc
}

/** Records every payload on `subject`. */
export async function record (nc: NatsConnection, subject: string): Promise<{ payloads: string[] }> {
  const payloads: string[] = []
  nc.subscribe(subject, { callback: (err, msg) => { if (err === null) payloads.push(msg.string()) } })
  await nc.flush()
  return { payloads }
}
