/**
 * The package as a user outside this repository gets it: `npm pack` this repository (its `prepare`
 * builds dist/), install the tarball into a scratch project under the OS temp dir, compile the host
 * app in ./host with the repository's tsc (skipLibCheck off) and run it with node — first with the
 * lowest fastify and kysely the peer ranges allow, then with the newest.
 *
 * Cost, measured: installs hit the npm registry (~20 s each); building better-sqlite3 from source
 * takes ~1:45 on this machine, so the scratch project installs it with --ignore-scripts and gets the
 * binary this repository's own install already built (same version, same Node). Each tsc run checks
 * every declaration file of fastify, kysely, pino and @types/node (~10 s of CPU); skipDefaultLibCheck
 * only skips TypeScript's own lib.*.d.ts. In all ~1:40 of CPU: about 2 min of wall time on two idle
 * cores, ~5 min alone on this machine shared with other work (load ~15), more beside the suite.
 */
import { execFile } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t, { test } from 'tap'

const execFileAsync = promisify(execFile)
const require = createRequire(import.meta.url)
const root = fileURLToPath(new URL('../..', import.meta.url))
const hostSources = fileURLToPath(new URL('./host/', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const tsc = join(dirname(require.resolve('typescript/package.json')), 'bin', 'tsc')
const betterSqlite3 = dirname(require.resolve('better-sqlite3/package.json'))

/**
 * The environment without what `npm test` and tap add to it: npm_config_* (the outer npm's
 * prefix and cache would steer the scratch installs) and tap's loaders and coverage.
 */
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) =>
  !key.startsWith('npm_') && !key.startsWith('TAP') && key !== 'NODE_OPTIONS' && key !== 'NODE_V8_COVERAGE'))

interface Run { ok: boolean, stdout: string, stderr: string }

async function run (command: string, args: string[], cwd: string, extraEnv: Record<string, string> = {}): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileAsync(command, args, { cwd, env: { ...env, ...extraEnv }, maxBuffer: 64 * 1024 * 1024, timeout: 10 * 60 * 1000 })
    return { ok: true, stdout, stderr }
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string, stderr?: string }
    return { ok: false, stdout, stderr: stderr === '' ? String(err) : stderr }
  }
}

/** Runs a step that must succeed; its output is the failure message otherwise. */
async function must (command: string, args: string[], cwd: string, extraEnv?: Record<string, string>): Promise<string> {
  const result = await run(command, args, cwd, extraEnv)
  if (!result.ok) throw new Error(`${command} ${args.join(' ')} failed in ${cwd}:\n${result.stdout}\n${result.stderr}`)
  return result.stdout
}

/** The JSON line a host script prints last (a dependency may log before it). */
function report (stdout: string): any {
  return JSON.parse(stdout.trim().split('\n').at(-1) as string)
}

/** `^x.y.z` → `x.y.z`: the lowest version a peer range admits. */
function lowest (name: string): string {
  const range: string = pkg.peerDependencies[name]
  const floor = /^\^(\d+\.\d+\.\d+)$/.exec(range)?.[1]
  if (floor === undefined) throw new Error(`peerDependencies.${name} "${range}" is not a caret range: teach this test its lowest version`)
  return floor
}

const base = { target: 'ES2022', strict: true, skipLibCheck: false, skipDefaultLibCheck: true, types: ['node'], rootDir: 'src', outDir: 'out' }
// node16 resolves an ES module host's imports exactly as nodenext does: not compiled again.
const tsconfigs: Record<string, object> = {
  nodenext: { compilerOptions: { ...base, module: 'nodenext', moduleResolution: 'nodenext' }, files: ['src/host.ts'] },
  bundler: { compilerOptions: { ...base, module: 'preserve', moduleResolution: 'bundler', noEmit: true }, files: ['src/host.ts'] },
  commonjs: { compilerOptions: { ...base, module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true }, files: ['src/host.cts'] }
}

// Minutes, not seconds: npm installs and five full type-checks (see above), slower still on a shared
// machine. A file-level timeout against a hang, not an assertion; each command has its own too.
t.setTimeout(20 * 60 * 1000)

test('the packed package installs, type-checks and runs in a host app, with the lowest and the newest fastify and kysely', async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), 'policy-cache-consumer-'))
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
  const started = Date.now()
  const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(1)} s`

  const packed = JSON.parse(await must('npm', ['pack', '--json', '--pack-destination', scratch], root))[0]
  const files: string[] = packed.files.map((file: { path: string }) => file.path)
  t.ok(files.includes('dist/plugin.js') && files.includes('dist/plugin.d.ts') && files.includes('dist/errors.d.ts'), 'the tarball ships the built dist/')
  t.ok(files.includes('LICENSE'), 'and the LICENSE')
  t.same(['board/board.css', 'board/board.js', 'board/index.html'].filter((file) => !files.includes(file)), [], 'and the policy board\'s page and assets')
  t.same(files.filter((file) => !file.startsWith('dist/') && !file.startsWith('board/') && !['LICENSE', 'README.md', 'package.json'].includes(file)), [], 'nothing else: no sources, tests or config')
  const maps = files.filter((file) => file.endsWith('.map'))
  t.ok(maps.length > 0, 'source maps ship')
  t.comment(`npm pack: ${elapsed()}`)

  mkdirSync(join(scratch, 'src'))
  for (const file of ['host.ts', 'host.cts', 'optional.mjs']) copyFileSync(join(hostSources, file), join(scratch, 'src', file))
  for (const [name, config] of Object.entries(tsconfigs)) writeFileSync(join(scratch, `tsconfig.${name}.json`), JSON.stringify(config, null, 2))
  writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'host', private: true, type: 'module' }))
  const npmInstall = async (...specs: string[]): Promise<void> => {
    await must('npm', ['install', '--no-audit', '--no-fund', ...specs], scratch)
  }
  const compile = async (config: string): Promise<string> => {
    const result = await run(process.execPath, [tsc, '-p', `tsconfig.${config}.json`], scratch)
    return result.ok ? '' : result.stdout + result.stderr
  }
  const installed = (name: string): string => JSON.parse(readFileSync(join(scratch, 'node_modules', name, 'package.json'), 'utf8')).version

  await t.test('lowest: fastify and kysely at the floor of their peer ranges, no optional peers', async (t) => {
    // Exact versions: npm's cached metadata will do.
    await npmInstall('--prefer-offline', join(scratch, packed.filename), `fastify@${lowest('fastify')}`, `kysely@${lowest('kysely')}`, '@types/node@20')
    t.equal(installed('fastify'), lowest('fastify'))
    t.equal(installed('kysely'), lowest('kysely'))
    t.comment(`installed fastify ${installed('fastify')}, kysely ${installed('kysely')}: ${elapsed()}`)

    // A source map names lib/*.ts, which is not shipped: it must carry the sources itself.
    const unresolvable = maps.filter((map) => {
      const { sources, sourcesContent } = JSON.parse(readFileSync(join(scratch, 'node_modules', pkg.name, map), 'utf8'))
      return sourcesContent?.length !== sources.length || sourcesContent.some((content: unknown) => typeof content !== 'string')
    })
    t.same(unresolvable, [], 'every source map carries its sources')

    // Without better-sqlite3, prom-client, pg, @nats-io/transport-node and ioredis, importing works; the features needing them name them.
    const missing = report(await must(process.execPath, ['src/optional.mjs'], scratch))
    t.equal(missing.sqlite.code, 'FST_POLICY_CACHE_MISSING_DEPENDENCY')
    t.match(missing.sqlite.message, 'npm install better-sqlite3')
    t.equal(missing.metrics.code, 'FST_POLICY_CACHE_MISSING_DEPENDENCY')
    t.match(missing.metrics.message, 'npm install prom-client')
    t.equal(missing.pgNotify.code, 'FST_POLICY_CACHE_MISSING_DEPENDENCY')
    t.match(missing.pgNotify.message, 'is needed for the pg-notify transport but')
    t.match(missing.pgNotify.message, 'npm install pg')
    t.equal(missing.nats.code, 'FST_POLICY_CACHE_MISSING_DEPENDENCY')
    t.match(missing.nats.message, 'is needed for the nats transport but')
    t.match(missing.nats.message, 'npm install @nats-io/transport-node')
    t.equal(missing.redis.code, 'FST_POLICY_CACHE_MISSING_DEPENDENCY')
    t.match(missing.redis.message, 'is needed for the redis transport but')
    t.match(missing.redis.message, 'npm install ioredis')

    // The same better-sqlite3 as this repository, with the binary its install already built.
    const version: string = JSON.parse(readFileSync(join(betterSqlite3, 'package.json'), 'utf8')).version
    await npmInstall('--prefer-offline', '--ignore-scripts', `better-sqlite3@${version}`)
    mkdirSync(join(scratch, 'node_modules/better-sqlite3/build/Release'), { recursive: true })
    copyFileSync(join(betterSqlite3, 'build/Release/better_sqlite3.node'), join(scratch, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'))
    t.comment(`installed better-sqlite3 ${version}: ${elapsed()}`)

    t.equal(await compile('nodenext'), '', 'compiles under nodenext')
    t.equal(await compile('bundler'), '', 'compiles under bundler')
    t.comment(`compiled: ${elapsed()}`)
    const host = report(await must(process.execPath, ['out/host.js'], scratch))
    t.same(host, {
      written: { changed: true, revision: 1 },
      allowed: true,
      lifecycle: { copied: 1, listed: ['acme', 'acme-copy'], emptied: 1 },
      code: 'FST_POLICY_CACHE_FORBIDDEN',
      guard: { anonymous: 401, bob: 403, alice: 200 },
      checkAccess: { allowed: true, revision: 3 },
      metrics: false,
      board: { page: true, script: true }
    })
  })

  await t.test('newest: the latest fastify and kysely in the peer ranges, with prom-client', async (t) => {
    await npmInstall(`fastify@${pkg.peerDependencies.fastify}`, `kysely@${pkg.peerDependencies.kysely}`, `prom-client@${pkg.peerDependencies['prom-client']}`)
    t.not(installed('fastify'), lowest('fastify'), 'fastify upgraded')
    t.not(installed('kysely'), lowest('kysely'), 'kysely upgraded')
    t.comment(`installed fastify ${installed('fastify')}, kysely ${installed('kysely')}, prom-client ${installed('prom-client')}: ${elapsed()}`)

    for (const config of ['nodenext', 'bundler', 'commonjs']) t.equal(await compile(config), '', `compiles under ${config}`)
    t.comment(`compiled: ${elapsed()}`)
    const host = report(await must(process.execPath, ['out/host.js'], scratch, { METRICS: '1' }))
    t.same(host.guard, { anonymous: 401, bob: 403, alice: 200 }, 'the guard answers 401 / 403 / 200')
    t.same(host.checkAccess, { allowed: true, revision: 3 })
    t.equal(host.metrics, true, '/metrics with prom-client installed')
    t.same(host.board, { page: true, script: true }, 'the policy board served from the installed package')

    const cjs = report(await must(process.execPath, ['out/host.cjs'], scratch))
    t.same(cjs, { allowed: true, code: 'FST_POLICY_CACHE_INVALID_INPUT', required: 'function', same: true }, 'a CommonJS host require()s the package')
  })
})
