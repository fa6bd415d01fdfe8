/**
 * An example host app guarding its own routes with the policy cache: a tiny document service.
 *
 *   npx tsx examples/host-app.ts 3000
 *   curl -H 'x-tenant-id: acme' -H 'x-user-id: alice' http://127.0.0.1:3000/documents
 *
 * Identity comes from the `x-tenant-id` and `x-user-id` headers, as set by an authenticating gateway
 * in front of the service (put @fastify/jwt's `request.user` there instead when the app verifies tokens
 * itself). A route declares the permission it needs with `config: { policy }`, or uses
 * `app.policyCache.require(permission)` as a preHandler.
 */
import { realpathSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import policyCache, { type Identity, type PolicyCacheOptions } from '../lib/plugin.js'

/** The identity an authenticating gateway put in the headers; none when either is missing. */
export function identifyFromHeaders (request: FastifyRequest): Identity | undefined {
  const tenant = request.headers['x-tenant-id']
  const user = request.headers['x-user-id']
  return typeof tenant === 'string' && typeof user === 'string' ? { tenant, user } : undefined
}

interface Document { id: number, title: string }

/** The document service; `options` go to the plugin (database, peers, …). */
export async function buildHostApp (options: PolicyCacheOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
  // Register the plugin first: its onRoute hook then sees every route declared after it.
  await app.register(policyCache, { identify: identifyFromHeaders, ...options })

  const documents = new Map<string, Document[]>()
  const ofTenant = (request: FastifyRequest): Document[] => {
    const tenant = (identifyFromHeaders(request) as Identity).tenant
    let list = documents.get(tenant)
    if (list === undefined) documents.set(tenant, list = [])
    return list
  }

  await app.register(async (api) => {
    api.get('/documents', { config: { policy: 'documents:read' } }, async (request) => ofTenant(request))

    api.post<{ Body: { title: string } }>('/documents', {
      config: { policy: 'documents:write' },
      schema: {
        body: {
          type: 'object',
          required: ['title'],
          additionalProperties: false,
          properties: { title: { type: 'string', minLength: 1, maxLength: 200 } }
        }
      }
    }, async (request, reply) => {
      const list = ofTenant(request)
      const document = { id: list.length + 1, title: request.body.title }
      list.push(document)
      return reply.code(201).send(document)
    })

    api.delete<{ Params: { id: string } }>('/documents/:id', {
      preHandler: app.policyCache.require('documents:delete')
    }, async (request, reply) => {
      const list = ofTenant(request)
      const at = list.findIndex((document) => String(document.id) === request.params.id)
      if (at !== -1) list.splice(at, 1)
      return reply.code(204).send()
    })
  })

  // Unguarded: anyone may ask whether the service is up.
  app.get('/', async () => ({ service: 'documents' }))
  return app
}

function isMain (): boolean {
  const script = process.argv[1]
  try {
    return script !== undefined && import.meta.url === pathToFileURL(realpathSync(script)).href
  } catch {
    return false
  }
}

if (isMain()) {
  const port = Number(process.argv[2] ?? 3000)
  const app = await buildHostApp({ sqliteFile: process.env.POLICY_DB ?? ':memory:' })
  // Seed a tenant so the curl line above works on a fresh database.
  await app.policyCache.createGroup('acme', 'readers')
  await app.policyCache.addPermission('acme', 'readers', 'documents:read')
  await app.policyCache.assignUser('acme', 'readers', 'alice')
  await app.listen({ port, host: process.env.HOST ?? '127.0.0.1' })
  const shutdown = (): void => { app.close().then(() => process.exit(0), () => process.exit(1)) }
  process.once('SIGINT', shutdown)
  process.once('SIGTERM', shutdown)
}
