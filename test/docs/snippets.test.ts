/**
 * Every TypeScript snippet of README.md and docs/*.md compiles, and the guard snippets run.
 *
 * Compiled against the sources (`fastify-policy-cache` mapped to lib/plugin.ts by `paths`), so the
 * docs are checked against the code they sit next to without a build; the built package is the
 * consumer test's concern (test/package/consumer.test.ts). One program per snippet — snippets
 * declare conflicting module augmentations (each its own @fastify/jwt claims) — sharing parsed files
 * through one compiler host; diagnostics are the snippet's own (lib/ is `npm run typecheck`'s).
 * A snippet may use what a fragment of a host app takes as given, declared in {@link GIVEN}.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import createError from '@fastify/error'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import type { JWT } from '@fastify/jwt'
import { test, type Test } from 'tap'
import ts from 'typescript'
import { createSqliteDb } from '../../lib/plugin.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const entry = join(root, 'lib', 'plugin.ts')

interface Snippet { name: string, code: string }

/** The ```ts / ```typescript blocks of a markdown file, named file:line. */
function snippetsOf (file: string): Snippet[] {
  const lines = readFileSync(join(root, file), 'utf8').split('\n')
  const snippets: Snippet[] = []
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(ts|typescript)\s*$/.test(lines[i])) continue
    const start = i + 1
    while (i + 1 < lines.length && !lines[++i].startsWith('```'));
    snippets.push({ name: `${file}:${start}`, code: lines.slice(start, i).join('\n') })
  }
  return snippets
}

const snippets = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
  .flatMap(snippetsOf)

/** What the docs' fragments take as given: the host's Fastify instance, its Kysely, its handlers. */
const GIVEN = `
type Handler = (request: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) => Promise<unknown>
declare const app: import('fastify').FastifyInstance
declare const db: import('kysely').Kysely<any>
declare const policyCache: typeof import('fastify-policy-cache').default
declare const listDocuments: Handler
declare const deleteDocument: Handler
declare const verifyAdminToken: Handler
declare const verifyMtlsClient: Handler
`

const compilerOptions: ts.CompilerOptions = {
  ...ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => { throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n')) }
  })?.options,
  noEmit: true,
  declaration: false,
  skipLibCheck: true,
  paths: { 'fastify-policy-cache': [entry] }
}

/** A compiler host serving the snippets from memory and every other file parsed once. */
const virtual = new Map<string, string>()
const parsed = new Map<string, ts.SourceFile | undefined>()
const host = ts.createCompilerHost(compilerOptions)
const readSourceFile = host.getSourceFile.bind(host)
host.fileExists = (file) => virtual.has(file) || ts.sys.fileExists(file)
host.readFile = (file) => virtual.get(file) ?? ts.sys.readFile(file)
host.getSourceFile = (file, languageVersion, onError) => {
  const text = virtual.get(file)
  if (text !== undefined) return ts.createSourceFile(file, text, languageVersion, true)
  if (!parsed.has(file)) parsed.set(file, readSourceFile(file, languageVersion, onError))
  return parsed.get(file)
}
const givenFile = join(root, 'test', 'docs', 'given.d.ts')
virtual.set(givenFile, GIVEN)

/** The snippet's compile errors, formatted; '' when it compiles. */
function compile (snippet: Snippet, index: number): string {
  const file = join(root, 'test', 'docs', `snippet-${index}.ts`)
  virtual.set(file, `${snippet.code}\nexport {}\n`) // a module, whatever it declares
  const program = ts.createProgram({ rootNames: [givenFile, file], options: compilerOptions, host })
  const diagnostics = ts.getPreEmitDiagnostics(program, program.getSourceFile(file))
  return ts.formatDiagnostics(diagnostics, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' })
}

test('every TypeScript snippet in README.md and docs/ compiles', async (t) => {
  t.ok(snippets.length >= 7, `${snippets.length} snippets found`)
  snippets.forEach((snippet, index) => t.equal(compile(snippet, index), '', snippet.name))
})

/**
 * Runs a snippet as a module: transpiled, its imports resolved from here (`fastify-policy-cache` to
 * the sources), with the given names as globals for its free variables.
 */
async function run (t: Test, snippet: Snippet, given: Record<string, unknown>): Promise<void> {
  for (const [name, value] of Object.entries(given)) (globalThis as Record<string, unknown>)[name] = value
  t.teardown(() => { for (const name of Object.keys(given)) delete (globalThis as Record<string, unknown>)[name] })
  const js = ts.transpileModule(snippet.code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText
  const resolved = js.replace(/(\bfrom\s*)(['"])([^'"]+)\2/g, (_, from: string, quote: string, specifier: string) =>
    from + quote + (specifier === 'fastify-policy-cache' ? pathToFileURL(entry).href : import.meta.resolve(specifier)) + quote)
  await import(`data:text/javascript;base64,${Buffer.from(resolved).toString('base64')}`)
}

/** The one snippet containing `marker` (the test fails if the docs lose it). */
function snippetWith (t: Test, marker: string): Snippet {
  const found = snippets.filter((snippet) => snippet.code.includes(marker))
  t.equal(found.length, 1, `one snippet contains ${marker}`)
  return found[0]
}

/** A Fastify app and a SQLite database for a snippet to register on, closed after the test. */
function hostApp (t: Test): { app: FastifyInstance, db: ReturnType<typeof createSqliteDb> } {
  const app = Fastify()
  const db = createSqliteDb(':memory:')
  t.teardown(async () => {
    await app.close()
    await db.destroy()
  })
  return { app, db }
}

const sign = (app: FastifyInstance, claims: object): string => `Bearer ${(app as unknown as { jwt: JWT }).jwt.sign(claims)}`

process.env.JWT_SECRET = 'a-secret-for-the-documentation-snippets'

test('the route guard snippet (@fastify/jwt identity): 401 without a token, 403 without the permission, 200 with it', async (t) => {
  const { app, db } = hostApp(t)
  await run(t, snippetWith(t, 'identify: (request)'), {
    app,
    db,
    listDocuments: async () => ({ documents: [] }),
    deleteDocument: async () => ({ deleted: true })
  })
  await app.ready()
  await app.policyCache.createGroup('acme', 'readers')
  await app.policyCache.addPermission('acme', 'readers', 'documents:read')
  await app.policyCache.assignUser('acme', 'readers', 'alice')

  const anonymous = await app.inject('/documents')
  t.equal(anonymous.statusCode, 401)
  t.equal(anonymous.json().code, 'FST_POLICY_CACHE_UNIDENTIFIED')
  const bob = await app.inject({ url: '/documents', headers: { authorization: sign(app, { org: 'acme', sub: 'bob' }) } })
  t.equal(bob.statusCode, 403)
  t.equal(bob.json().code, 'FST_POLICY_CACHE_FORBIDDEN')
  const alice = sign(app, { org: 'acme', sub: 'alice' })
  t.equal((await app.inject({ url: '/documents', headers: { authorization: alice } })).statusCode, 200)
  t.equal((await app.inject({ method: 'DELETE', url: '/documents/1', headers: { authorization: alice } })).statusCode, 403)
  t.equal((await app.inject({ method: 'DELETE', url: '/documents/1' })).statusCode, 401)
})

test('the @fastify/jwt routeHooks snippet: the policy routes need a token, and scope it to its tenants', async (t) => {
  const { app, db } = hostApp(t)
  await run(t, snippetWith(t, 'request.user.tenants'), { app, db })
  await app.ready()
  const createGroup = async (tenant: string, authorization?: string): Promise<{ statusCode: number, code?: string }> => {
    const res = await app.inject({ method: 'POST', url: '/create-group', payload: { tenant, group: 'editors' }, headers: authorization === undefined ? {} : { authorization } })
    return { statusCode: res.statusCode, code: res.json().code }
  }
  t.equal((await createGroup('acme')).statusCode, 401)
  const admin = sign(app, { sub: 'admin', tenants: ['acme'] })
  t.equal((await createGroup('acme', admin)).statusCode, 200)
  t.same(await createGroup('other', admin), { statusCode: 403, code: 'FST_POLICY_CACHE_FORBIDDEN' })
  t.equal((await app.inject('/health')).statusCode, 200, '/health stays open')
})

test('the @fastify/auth routeHooks snippet: the policy routes need one of the strategies', async (t) => {
  const { app, db } = hostApp(t)
  // Coded, as Fastify plugins' errors are: the policy routes' error replies carry a `code`.
  const NotAdmin = createError('FST_TEST_NOT_ADMIN', 'Not an administrator', 401)
  const NoClientCertificate = createError('FST_TEST_NO_CLIENT_CERTIFICATE', 'No client certificate', 401)
  await run(t, snippetWith(t, 'app.auth('), {
    app,
    db,
    verifyAdminToken: async (request: FastifyRequest) => {
      if (request.headers.authorization !== 'Bearer admin-token') throw new NotAdmin()
    },
    verifyMtlsClient: async () => { throw new NoClientCertificate() }
  })
  await app.ready()
  t.equal((await app.inject('/check-access?tenant=acme&user=alice&permission=documents:read')).statusCode, 401)
  const res = await app.inject({ url: '/check-access?tenant=acme&user=alice&permission=documents:read', headers: { authorization: 'Bearer admin-token' } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { allowed: false, revision: 0 })
})
