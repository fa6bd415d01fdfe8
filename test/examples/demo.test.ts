/**
 * `npm run demo` (`--once`, or without a terminal): the walkthrough on three real processes exits 0,
 * names every step, stops its servers and removes its temp directory. `--keep` keeps the cluster up
 * with the policy board served until a signal. And a cluster that cannot start fails fast with the
 * servers' own one-line reason.
 */
import { spawn } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import tap, { test } from 'tap'
import { startCluster, StepError, waitHealthy } from '../../examples/demo.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

tap.setTimeout(360000) // two demo runs bounded at 100 s each and a cluster start; a loaded CI machine starts servers slowly

/** Runs `npm run demo -- <args>` (default `--once`) in its own process group, stdin not a terminal (stopped whole after 100 s). */
async function runDemo (env: NodeJS.ProcessEnv = {}, args = ['--once']): Promise<{ code: number | null, output: string }> {
  const child = spawn('npm', ['run', 'demo', '--', ...args], {
    cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true
  })
  let output = ''
  child.stdout.on('data', (chunk) => { output += chunk })
  child.stderr.on('data', (chunk) => { output += chunk })
  const timer = setTimeout(() => { try { process.kill(-child.pid!, 'SIGTERM') } catch {} }, 100000)
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, output }
}

test('npm run demo walks the seed scenario and, without a terminal, exits 0 by itself', async (t) => {
  const { code, output } = await runDemo({}, [])
  t.equal(code, 0, 'exit code 0')
  t.match(output, /Not a terminal: stopping the cluster \(npm run demo -- --keep keeps it up\)/)
  t.match(output, /policy board +http:\/\/127\.0\.0\.1:\d+\/policy-board\/\?tenant=tenant1\n/, 'prints the board\'s URL')

  const steps = [
    'Step 1/11: health of all three servers',
    'Step 2/11: before any write: alice documents:read on servers 2 and 3',
    'Step 3/11: create group "editors" in "tenant1" on server 1',
    'Step 4/11: add permissions documents:read and documents:write on server 1',
    'Step 5/11: assign user "alice" to "editors" on server 1',
    'Step 6/11: immediately (no wait): alice documents:read on servers 2 and 3',
    'Step 7/11: revoke documents:read from "editors" on server 3',
    'Step 8/11: immediately (no wait): alice documents:read on server 1',
    'Step 9/11: peer status on server 1 (/servers)',
    'Step 10/11: start a fourth instance with no peer list: it joins every /servers, and the next write reaches it',
    'Step 11/11: stop server-4 gracefully (SIGTERM): it leaves every send set',
    'Summary: every step passed'
  ]
  for (const step of steps) t.ok(output.includes(step), step)
  t.match(output, /server-2: alice documents:read -> allowed \(revision 4/)
  t.match(output, /server-3: alice documents:read -> allowed \(revision 4/)
  t.match(output, /server-1: alice documents:read -> denied \(revision 5/)
  t.match(output, /assign-user .* peers acked 2\/2/)
  t.match(output, /each sends to the other two \(found through the database, no peer list\)/)
  t.match(output, /on server-1: server-4 source membership, incarnation [0-9a-f-]{36}/)
  t.match(output, /assign-user \{"group":"editors","user":"bob"\} on server-1: revision 6, changed true, peers acked 3\/3/, 'the fourth instance acknowledges')
  t.match(output, /server-4 exited 0 and is out of every \/servers \d+\.\d ms after SIGTERM/)
  t.match(output, /propagation: \d+\.\d ms from sending the assign-user write/)
  t.notMatch(output, /FAILED|whsec_[A-Za-z0-9+/]/, 'no failure, no secret printed')

  const dir = /data directory +(\S+)/.exec(output)?.[1]
  t.ok(dir, 'prints its data directory')
  t.match(output, new RegExp(`server log +${dir}/servers\\.log`), 'prints the log path')
  t.notOk(existsSync(dir!), 'the temp directory is removed when it exits')
})

test('npm run demo -- --keep keeps the cluster up, the board served, until SIGTERM', async (t) => {
  const child = spawn('npm', ['run', 'demo', '--', '--keep'], { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const stop = (): void => { try { process.kill(-child.pid!, 'SIGTERM') } catch {} }
  const timer = setTimeout(stop, 100000)
  t.teardown(() => { clearTimeout(timer); stop() })
  let output = ''
  child.stderr.on('data', (chunk) => { output += chunk })
  const closed = new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)))
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (chunk) => {
      output += chunk
      if (output.includes('Press Ctrl-C')) resolve()
    })
    closed.then(() => { resolve() }, () => {})
  })
  t.match(output, /The cluster keeps running/)
  const url = /policy board \(live\): (\S+)/.exec(output)?.[1]
  t.ok(url, 'names the board')
  const page = await fetch(url!)
  t.equal(page.status, 200, 'the board is served')
  t.match(await page.text(), /<title>Policy board<\/title>/)
  const cluster = await (await fetch(new URL('api/cluster?tenant=tenant1', url))).json() as { members: Array<{ state: string }> }
  t.equal(cluster.members.filter((member) => member.state !== 'left').length, 3, 'the three servers (the fourth left)')
  process.kill(-child.pid!, 'SIGTERM')
  t.equal(await closed, 0, 'stops on SIGTERM with exit 0')
})

test('npm run demo -- --once exits 1 on a failed step, naming it, with its servers stopped', async (t) => {
  // Writes that do not wait for acknowledgements report 0 of 2 peers: the walkthrough must fail there.
  const { code, output } = await runDemo({ ACK_TIMEOUT_MS: '0' })
  t.equal(code, 1, 'exit code 1')
  t.match(output, /FAILED: step 3 \(create group "editors" in "tenant1" on server 1\) failed: only 0 of 2 peers acknowledged/)
  t.notMatch(output, /Summary: every step passed/)
  const urls = [...new Set([...output.matchAll(/server-\d +(http:\/\/127\.0\.0\.1:\d+)/g)].map((m) => m[1]))]
  t.equal(urls.length, 3)
  for (const url of urls) {
    t.equal(await fetch(`${url}/health`).then(() => 'up', () => 'down'), 'down', `${url} stopped`)
  }
  const dir = /data directory +(\S+)/.exec(output)?.[1]
  t.ok(dir !== undefined && existsSync(dir), 'the logs are kept for a failed run')
  t.match(output, `Logs and database kept in ${dir}`)
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

test('a cluster whose servers refuse their configuration fails fast with their reason', async (t) => {
  const cluster = await startCluster({ env: { WEBHOOK_SECRET: 'mysecret123' } })
  t.teardown(async () => {
    await cluster.stop()
    rmSync(cluster.dir, { recursive: true, force: true })
  })
  const err = await waitHealthy(cluster, 60000).then(() => null, (e: unknown) => e)
  t.ok(err instanceof StepError)
  t.match((err as Error).message, /^server-\d exited \(1\) before it was healthy: server: invalid configuration: WEBHOOK_SECRET: /, 'fails on the exit, not at the deadline')
})
