/** Builds test instances of a host app with the plugin registered. */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import type { Notice } from '../../lib/broadcast/notice.js'
import policyCache, { type PolicyCacheOptions } from '../../lib/plugin.js'

/** One app with the plugin (in-memory SQLite unless `db` is given), closed at the end of the test. */
export async function buildApp (t: Test, options: PolicyCacheOptions = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(policyCache, { syncIntervalMs: 0, ...options })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

/** A temporary directory removed at the end of the test. */
export function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'policy-cache-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A strong secret for tests. */
export const SECRET = 'whsec_' + Buffer.from('test-secret-that-is-long-enough!').toString('base64')

/** POSTs JSON through inject and returns the parsed reply. */
export async function post (app: FastifyInstance, url: string, body: unknown) {
  const res = await app.inject({ method: 'POST', url, payload: body as object })
  return { status: res.statusCode, body: res.json(), headers: res.headers }
}

export async function get (app: FastifyInstance, url: string) {
  const res = await app.inject({ method: 'GET', url })
  return { status: res.statusCode, body: res.json(), headers: res.headers }
}

/** Each policy write route (and refresh) with the fields of its JSON body. */
export const WRITE_BODY_FIELDS: Readonly<Record<string, readonly string[]>> = {
  '/create-group': ['tenant', 'group'],
  '/delete-group': ['tenant', 'group'],
  '/add-permission': ['tenant', 'group', 'permission'],
  '/remove-permission': ['tenant', 'group', 'permission'],
  '/assign-user': ['tenant', 'group', 'user'],
  '/unassign-user': ['tenant', 'group', 'user'],
  '/include-group': ['tenant', 'group', 'includes'],
  '/exclude-group': ['tenant', 'group', 'includes'],
  '/refresh-tenant': ['tenant']
}

/** A peer that records the notices it gets and acknowledges them. */
export async function recordingPeer (t: { teardown: (fn: () => unknown) => void }) {
  const peer = Fastify()
  const notices: Notice[] = []
  peer.post('/webhook/refresh', async (request) => {
    notices.push(request.body as Notice)
    return { serverId: 'peer', revisions: {} }
  })
  await peer.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => peer.close())
  return { url: `http://127.0.0.1:${(peer.server.address() as { port: number }).port}`, notices }
}
