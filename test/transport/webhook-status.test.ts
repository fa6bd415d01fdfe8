/**
 * The default transport reports itself like any other: `/health` and `/servers` name it (`webhook`,
 * up, acknowledged, no channel), `/metrics` has it up.
 */
import { test } from 'tap'
import { buildApp, SECRET } from '../helpers/app.js'

test('/health, /servers and /metrics report the webhook transport', async (t) => {
  const app = await buildApp(t, { webhookSecret: SECRET, metrics: true })
  const health = (await app.inject({ url: '/health' })).json()
  t.same(health.transport, { type: 'webhook', state: 'up' })
  t.equal(health.status, 'ok')
  t.match((await app.inject({ url: '/servers' })).json().transport, {
    type: 'webhook', state: 'up', acknowledged: true, channel: null, subscriptions: 1, lastError: null, published: 0, received: 0, hints: 0, dropped: 0
  })
  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /^policy_cache_transport_up\{transport="webhook"\} 1$/m)
  t.match(metrics, /^policy_cache_transport_subscriptions_total\{transport="webhook"\} 1$/m)
})
