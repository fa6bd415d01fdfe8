/**
 * The real transports a fault cluster (test/helpers/fault-cluster.ts) can send its notices over,
 * built as the plugin builds them (lib/broadcast/brokers.ts): pg-notify on the test PostgreSQL (the
 * cluster's store must be there too: the NOTIFY is part of the write's transaction), nats and redis
 * on the machine's servers. Each run gets a channel or subject of its own; probes are far apart
 * (nothing here kills a connection: the faults are the cluster's, between receipt and engine). On
 * nats a write waits, at most `NATS_ACK_TIMEOUT_MS`, for the replies of the cluster's other
 * instances (named as the live members would be).
 */
import { createBrokerTransport } from '../../lib/broadcast/brokers.js'
import { parseSecret } from '../../lib/broadcast/signature.js'
import { DEFAULTS } from '../../lib/defaults.js'
import type { ResolvedTransport } from '../../lib/options.js'
import { SECRET } from './app.js'
import { NATS_URL, randomName, REDIS_URL } from './brokers.js'
import { POSTGRES_URL } from './databases.js'
import type { FaultTransport } from './fault-cluster.js'

/** Longest a nats write waits for the replies: a faulted notice is not answered, so each costs this. */
export const NATS_ACK_TIMEOUT_MS = 100

const keys = [parseSecret(SECRET, 'webhookSecret')]
const log = { debug: () => {}, info: () => {}, warn: () => {} }
const probe = { probeIntervalMs: 3600000, probeTimeoutMs: 5000 }

/** `option` for every instance of a cluster of `instances`; on nats a write waits for all the others. */
function faultTransport (option: ResolvedTransport, instances = 0): FaultTransport {
  const members = Array.from({ length: instances }, (_, i) => `fault-${i}`)
  return {
    name: option.type,
    create: (serverId, databaseId) => createBrokerTransport(option, {
      serverId, databaseId, publicUrl: undefined, keys, ackTimeoutMs: NATS_ACK_TIMEOUT_MS, members: () => members, log
    })!
  }
}

/** pg-notify on `channel` (a PostgreSQL identifier; one per run): the cluster's store must be on the test PostgreSQL. */
export function pgNotifyFaults (channel: string): FaultTransport {
  const { reconnect, maxPayloadBytes } = DEFAULTS.pgNotify
  return faultTransport({ type: 'pg-notify', connection: POSTGRES_URL, channel, ...probe, reconnect, maxPayloadBytes })
}

/** nats on a subject of its own; a write waits for the other `instances - 1` instances of the cluster. */
export function natsFaults (instances: number): FaultTransport {
  const { maxPayloadBytes } = DEFAULTS.nats
  return faultTransport({ type: 'nats', servers: [NATS_URL], subject: randomName('faults'), connection: {}, ...probe, maxPayloadBytes }, instances)
}

/** redis on a channel of its own. */
export function redisFaults (): FaultTransport {
  return faultTransport({ type: 'redis', connection: REDIS_URL, channel: randomName('faults'), ...probe, maxPayloadBytes: DEFAULTS.redis.maxPayloadBytes })
}
