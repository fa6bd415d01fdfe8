/**
 * `npm run mutation`'s TypeScript checker (stryker/typescript-checker.mjs) discards a mutant when its
 * program no longer type-checks: in the mutated file, or in a file that imports it. A mistake here
 * either runs the tests against mutants that cannot compile (slow, and the score counts them) or,
 * worse, discards mutants that compile: bugs no test would then be asked to catch.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CheckStatus } from '@stryker-mutator/api/check'
import { test, type Test } from 'tap'
// @ts-expect-error -- plain JavaScript without declarations
import { MutableProgram, ProgramChecker, mutatedText } from '../stryker/typescript-checker.mjs'

/** A project of two modules, `b.ts` importing `a.ts`, in a directory removed when the test ends. */
function project (t: Test): { dir: string, a: string, b: string, tsconfig: string } {
  const dir = mkdtempSync(join(tmpdir(), 'mutation-checker-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'src'))
  const a = join(dir, 'src', 'a.ts')
  const b = join(dir, 'src', 'b.ts')
  writeFileSync(a, 'export function limit (n: number): number {\n  return n < 10 ? n : 10\n}\n')
  writeFileSync(b, "import { limit } from './a.js'\n\nexport const twice: number = limit(3) * 2\n")
  const tsconfig = join(dir, 'tsconfig.json')
  writeFileSync(tsconfig, JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, types: [], noUnusedLocals: true },
    include: ['src']
  }))
  return { dir, a, b, tsconfig }
}

/** A mutant of `fileName` replacing the text from `start` to `end` (0-based lines and columns). */
function mutant (id: string, fileName: string, start: [number, number], end: [number, number], replacement: string) {
  return {
    id,
    fileName,
    replacement,
    location: { start: { line: start[0], column: start[1] }, end: { line: end[0], column: end[1] } }
  }
}

test('a mutant\'s replacement goes in at its location', async (t) => {
  const { a, tsconfig } = project(t)
  const program = new MutableProgram(tsconfig)
  t.same(program.errorsWith(), [], 'the project type-checks')
  const original = program.original(a)
  t.equal(mutatedText(original, mutant('1', a, [1, 9], [1, 15], 'n <= 10')), 'export function limit (n: number): number {\n  return n <= 10 ? n : 10\n}\n')
  t.equal(mutatedText(original, mutant('2', a, [0, 42], [2, 1], '{}')), 'export function limit (n: number): number {}\n', 'across lines')
  t.equal(program.original(join(tmpdir(), 'elsewhere.ts')), undefined, 'a file outside the program has none')
})

test('a mutant fails on an error in its file or in a file importing it, and passes otherwise', async (t) => {
  const { a, b, tsconfig } = project(t)
  const program = new MutableProgram(tsconfig)
  t.same(program.errorsWith(), [])
  const original = program.original(a)
  t.same(program.errorsWith(a, mutatedText(original, mutant('1', a, [1, 9], [1, 15], 'n <= 10'))), [], 'a compiling change')
  const own = program.errorsWith(a, mutatedText(original, mutant('2', a, [0, 42], [2, 1], '{}')))
  t.equal(own.length, 1, 'a function that no longer returns its number')
  t.equal(own[0].file.fileName.endsWith('src/a.ts'), true, 'reported in the mutated file')
  const importer = program.errorsWith(a, mutatedText(original, mutant('3', a, [0, 35], [0, 41], 'string')))
  t.ok(importer.some((error: { file: { fileName: string } }) => error.file.fileName.endsWith('src/b.ts')), 'a changed return type breaks the importing file')
  t.same(program.errorsWith(), [], 'the file as it was: no error left behind')
  t.same(program.errorsWith(a, mutatedText(original, mutant('4', a, [1, 2], [1, 24], 'const unused = 1\n  return 10\n  return n'))), [],
    'an unused local and unreachable code are allowed, as Stryker\'s own checker allows them')
  t.same(program.errorsWith(b, "import { limit } from './a.js'\n\nexport const twice: number = limit(3) * 3\n"), [], 'another file, after a mutant of the first')
})

test('the Stryker checker: discards what does not compile, refuses a program that does not', async (t) => {
  const { dir, a, tsconfig } = project(t)
  const logged: string[] = []
  const checker = new ProgramChecker({ tsconfigFile: tsconfig }, { info: (line: string) => logged.push(line) })
  await checker.init()
  t.match(logged, [/Type-checking each mutant in the program of .*tsconfig.json \(\d+ files\)/])
  const results = await checker.check([
    mutant('1', a, [1, 9], [1, 15], 'n <= 10'),
    mutant('2', a, [0, 42], [2, 1], '{}'),
    mutant('3', join(dir, 'outside.ts'), [0, 0], [0, 1], 'x'),
    mutant('4', a, [1, 9], [1, 10], '"n"')
  ])
  t.same(results['1'], { status: CheckStatus.Passed })
  t.match(results['2'], { status: CheckStatus.CompileError, reason: /src\/a\.ts.*error TS2355/ })
  t.same(results['3'], { status: CheckStatus.Passed }, 'a file outside the program')
  t.match(results['4'], { status: CheckStatus.CompileError, reason: /TS2365/ }, 'a string compared with a number')

  writeFileSync(join(dir, 'src', 'c.ts'), 'export const wrong: number = "one"\n')
  const broken = new ProgramChecker({ tsconfigFile: tsconfig }, { info: () => {} })
  await t.rejects(broken.init(), /Type errors before any mutant, in the program of .*tsconfig.json:\n.*src\/c\.ts.*TS2322/)
})
