/**
 * pg-notify: the notice is part of the write's transaction. A writer process killed right after its
 * commit (SIGKILL from its store, before the engine publishes anything) still told the others:
 * PostgreSQL delivered the NOTIFY with the commit. With the periodic sync off, nothing else could
 * have told them. (With webhooks the same crash loses the notice until the next sync.)
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import t from 'tap'
import { SECRET } from '../helpers/app.js'
import { POSTGRES_URL, postgresDb, randomPrefix, unreachable } from '../helpers/databases.js'
import { startNodes, until } from '../helpers/pg-notify.js'

const admin = await postgresDb()
if (admin === undefined) {
  unreachable(t, 'PostgreSQL', POSTGRES_URL)
} else {
  t.teardown(() => admin.destroy())

  t.test('a writer killed right after its commit: the others still get the notice', async (t) => {
    const prefix = randomPrefix()
    const [a, b] = await startNodes(t, admin, prefix, 2)
    await a.app.policyCache.createGroup('t1', 'readers')
    await a.app.policyCache.addPermission('t1', 'readers', 'documents:read')
    for (const node of [a, b]) {
      await until(`${node.serverId} is at revision 2`, async () => { await node.app.policyCache.warm(['t1']); return await node.app.policyCache.revision('t1') === 2 })
    }

    // Both notices handled (the counter moves once the engine is done with one).
    const receivedBefore = (await until('b handled both notices', async () => { const s = await b.transport(); return s.received === 2 && s })).received
    const fixture = join(import.meta.dirname, 'fixtures', 'crash-after-commit.ts')
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, POSTGRES_URL, prefix, SECRET, 't1', 'readers', 'alice'], { stdio: ['pipe', 'pipe', 'inherit'] })
    t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
    const exited = once(child, 'exit')
    let output = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => { output += chunk })
    await until('the writer is ready', () => output.includes('ready') || child.exitCode !== null, 60000)
    t.equal(child.exitCode, null, 'the writer started')
    child.stdin.write('write\n')

    const [code, signal] = await exited
    t.equal(signal, 'SIGKILL', `the writer died by SIGKILL after the commit (exit code ${String(code)})`)
    const rows = await admin.selectFrom(`${prefix}changelog`).select(['revision', 'origin']).where('tenant', '=', 't1').where('revision', '=', 3).execute()
    t.same(rows.map((row) => ({ revision: Number(row.revision), origin: row.origin })), [{ revision: 3, origin: 'crasher' }], 'the write committed')

    for (const node of [a, b]) {
      await until(`${node.serverId} allows alice`, () => node.app.policyCache.checkSync('t1', 'alice', 'documents:read'))
    }
    t.equal((await b.transport()).received, receivedBefore + 1, 'through the channel: one more verified notice')
  })
}
