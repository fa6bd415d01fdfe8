/**
 * `npm run demo -- --once --transport nats|redis`: the same walkthrough with the notices over a
 * broker of this machine — acknowledged by every other instance on NATS (2/2, then 3/3 with a fourth
 * instance, 2/2 again once it left), unacknowledged on Redis (0/0, the reads pass minRevision).
 * An unknown transport is a usage error (exit 2).
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import tap, { test } from 'tap'
import { NATS_URL, reachable, REDIS_URL } from '../helpers/brokers.js'
import { unreachable } from '../helpers/databases.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

tap.setTimeout(300000) // two demo runs bounded at 100 s each

/** Runs `npm run demo -- --once …args` in its own process group (stopped whole after 100 s). */
async function runDemo (args: string[]): Promise<{ code: number | null, output: string }> {
  const child = spawn('npm', ['run', 'demo', '--', '--once', ...args], {
    cwd: ROOT, env: { ...process.env, NATS_URL, REDIS_URL }, stdio: ['ignore', 'pipe', 'pipe'], detached: true
  })
  let output = ''
  child.stdout.on('data', (chunk) => { output += chunk })
  child.stderr.on('data', (chunk) => { output += chunk })
  const timer = setTimeout(() => { try { process.kill(-child.pid!, 'SIGTERM') } catch {} }, 100000)
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, output }
}

test('--transport nats: every write acknowledged by every other instance', async (t) => {
  if (!await reachable(NATS_URL)) return unreachable(t, 'NATS', NATS_URL)
  const { code, output } = await runDemo(['--transport', 'nats'])
  t.equal(code, 0, 'exit code 0')
  t.match(output, /transport +nats:\/\//)
  t.match(output, /Step 9\/11: transport status on server 1 \(\/servers\)/)
  t.match(output, /nats on \S+: up, subscriptions 1, published \d+/)
  t.match(output, /assign-user \{"group":"editors","user":"alice"\} on server-1: revision 4, changed true, peers acked 2\/2/)
  t.match(output, /assign-user \{"group":"editors","user":"bob"\} on server-1: revision 6, changed true, peers acked 3\/3/, 'the fourth instance acknowledges')
  t.match(output, /assign-user \{"group":"editors","user":"carol"\} on server-1: revision 7, changed true, peers acked 2\/2/, 'the one that left is not counted')
  t.match(output, /server-2: alice documents:read -> allowed \(revision 4/)
  t.match(output, /Summary: every step passed/)
  t.notMatch(output, /FAILED|whsec_[A-Za-z0-9+/]/)
})

test('--transport redis: no acknowledgements, the reads pass minRevision', async (t) => {
  if (!await reachable(REDIS_URL)) return unreachable(t, 'Redis', REDIS_URL)
  const { code, output } = await runDemo(['--transport', 'redis'])
  t.equal(code, 0, 'exit code 0')
  t.match(output, /assign-user \{"group":"editors","user":"alice"\} on server-1: revision 4, changed true, peers acked 0\/0/)
  t.match(output, /server-3: alice documents:read -> allowed \(revision 4/)
  t.match(output, /server-1: alice documents:read -> denied \(revision 5/)
  t.match(output, /Summary: every step passed/)
})

test('an unknown transport is a usage error', async (t) => {
  const { code, output } = await runDemo(['--transport', 'kafka'])
  t.equal(code, 2)
  t.match(output, /demo: unknown transport kafka \(usage: npm run demo \[-- --once \| --keep\] \[--transport webhook\|nats\|redis\|pg-notify\]\)/)
})
