/**
 * Builds the broker transport the `transport` option names (docs/transports.md): pg-notify, nats or
 * redis, each loading its client library (an optional peer dependency) as it is built. One place
 * gives every broker transport what it takes from the instance besides its own settings.
 */
import type { ResolvedTransport } from '../options.js'
import { NatsTransport } from './nats.js'
import { PgNotifyTransport } from './pg-notify.js'
import { RedisTransport } from './redis.js'
import type { BrokerLogger } from './subscription.js'
import type { Transport } from './transport.js'

/** What a broker transport takes from the instance. */
export interface BrokerIdentity {
  /** The envelopes' `origin`; messages with it are dropped. */
  serverId: string
  /** The store's database id, read per message (known once the store is migrated). */
  databaseId: () => string | undefined
  /** This instance's URL, when configured: carried in notices like the webhook's. */
  publicUrl: string | undefined
  /** Signing and verification keys (`webhookSecret`). */
  keys: readonly Buffer[]
  /** nats: the longest a write waits for the replies. */
  ackTimeoutMs: number
  /** nats: the live members' serverIds when membership is on (the instances a write waits for). */
  members: (() => readonly string[]) | undefined
  log: BrokerLogger
}

/**
 * The broker transport `option` names, built but not started; undefined for webhooks. Throws
 * FST_POLICY_CACHE_MISSING_DEPENDENCY naming the client library when it is not installed.
 */
export function createBrokerTransport (option: ResolvedTransport, identity: BrokerIdentity): Transport | undefined {
  const { ackTimeoutMs, members, ...common } = identity
  switch (option.type) {
    case 'pg-notify': {
      const { type: _type, ...settings } = option
      return new PgNotifyTransport({ ...settings, ...common })
    }
    case 'nats': {
      const { type: _type, ...settings } = option
      return new NatsTransport({ ...settings, ...common, ackTimeoutMs, members })
    }
    case 'redis': {
      const { type: _type, ...settings } = option
      return new RedisTransport({ ...settings, ...common })
    }
  }
  return undefined
}
