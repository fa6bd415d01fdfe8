/**
 * The same host as a CommonJS module, compiled with `module: commonjs` (classic `node10`
 * resolution, skipLibCheck off) and run with node: the package is loaded with require(), which
 * Node ≥ 20.19 / 22.12 serves from the ES module (no top-level await in the package).
 */
import Fastify from 'fastify'
import policyCache, { createSqliteDb, errors } from 'fastify-policy-cache'

async function main (): Promise<void> {
  const db = createSqliteDb(':memory:')
  const app = Fastify()
  app.addHook('onClose', async () => { await db.destroy() })
  await app.register(policyCache, { db })
  await app.policyCache.createGroup('acme', 'readers')
  await app.policyCache.addPermission('acme', 'readers', 'documents:read')
  await app.policyCache.assignUser('acme', 'readers', 'alice')
  const allowed: boolean = await app.policyCache.check('acme', 'alice', 'documents:read')
  const code: 'FST_POLICY_CACHE_INVALID_INPUT' = new errors.InvalidInputError('tenant', 'empty').code
  // @ts-expect-error the error classes are typed, not `any`
  errors.InvalidInputError()
  // A plain require(), as a JavaScript CommonJS host writes it: the module namespace.
  const required = require('fastify-policy-cache')
  console.log(JSON.stringify({ allowed, code, required: typeof required.default, same: required.default === policyCache }))
  await app.close()
}

main().catch((err) => { console.error(err); process.exitCode = 1 })
