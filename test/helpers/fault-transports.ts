/**
 * The real transports a fault cluster (test/helpers/fault-cluster.ts) can send its notices over:
 * pg-notify on the test PostgreSQL (the cluster's store must be there too: the NOTIFY is part of the
 * write's transaction), nats and redis on the machine's servers. Each run gets a channel or subject
 * of its own; probes are far apart (nothing here kills a connection: the faults are the cluster's,
 * between receipt and engine). On nats a write waits, at most `NATS_ACK_TIMEOUT_MS`, for the replies
 * of the cluster's other instances (named as the live members would be).
 */
import { DEFAULTS } from '../../lib/defaults.js'
import { NatsTransport } from '../../lib/broadcast/nats.js'
import { PgNotifyTransport } from '../../lib/broadcast/pg-notify.js'
import { RedisTransport } from '../../lib/broadcast/redis.js'
import { parseSecret } from '../../lib/broadcast/signature.js'
import { SECRET } from './app.js'
import { NATS_URL, randomName, REDIS_URL } from './brokers.js'
import { POSTGRES_URL } from './databases.js'
import type { FaultTransport } from './fault-cluster.js'

/** Longest a nats write waits for the replies: a faulted notice is not answered, so each costs this. */
export const NATS_ACK_TIMEOUT_MS = 100

const keys = [parseSecret(SECRET, 'webhookSecret')]
const log = { debug: () => {}, info: () => {}, warn: () => {} }
const probe = { probeIntervalMs: 3600000, probeTimeoutMs: 5000 }

/** pg-notify on `channel` (a PostgreSQL identifier; one per run): the cluster's store must be on the test PostgreSQL. */
export function pgNotifyFaults (channel: string): FaultTransport {
  return {
    name: 'pg-notify',
    create: (serverId, databaseId) => new PgNotifyTransport({
      connection: POSTGRES_URL,
      channel,
      serverId,
      databaseId,
      keys,
      ...probe,
      reconnect: DEFAULTS.pgNotify.reconnect,
      maxPayloadBytes: DEFAULTS.pgNotify.maxPayloadBytes,
      log
    })
  }
}

/** nats on a subject of its own; a write waits for the other `instances - 1` instances of the cluster. */
export function natsFaults (instances: number): FaultTransport {
  const subject = randomName('faults')
  const members = Array.from({ length: instances }, (_, i) => `fault-${i}`)
  return {
    name: 'nats',
    create: (serverId, databaseId) => new NatsTransport({
      servers: [NATS_URL],
      subject,
      connection: {},
      serverId,
      databaseId,
      keys,
      ...probe,
      ackTimeoutMs: NATS_ACK_TIMEOUT_MS,
      maxPayloadBytes: DEFAULTS.nats.maxPayloadBytes,
      members: () => members,
      log
    })
  }
}

/** redis on a channel of its own. */
export function redisFaults (): FaultTransport {
  const channel = randomName('faults')
  return {
    name: 'redis',
    create: (serverId, databaseId) => new RedisTransport({
      connection: REDIS_URL,
      channel,
      serverId,
      databaseId,
      keys,
      ...probe,
      maxPayloadBytes: DEFAULTS.redis.maxPayloadBytes,
      log
    })
  }
}
