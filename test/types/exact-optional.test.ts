/**
 * The option types under `exactOptionalPropertyTypes` (a host's tsconfig may set it): every optional
 * key accepts an explicit `undefined`. Compiles test/types/exact-optional.types.ts with the flag and
 * reports that file's own diagnostics.
 */
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import ts from 'typescript'

test('options compile under exactOptionalPropertyTypes, explicit undefined included', async (t) => {
  const fixture = fileURLToPath(new URL('./exact-optional.types.ts', import.meta.url))
  const configFile = ts.findConfigFile(fixture, ts.sys.fileExists) as string
  const { config } = ts.readConfigFile(configFile, ts.sys.readFile)
  const { options } = ts.parseJsonConfigFileContent(config, ts.sys, fileURLToPath(new URL('../../', import.meta.url)))
  const program = ts.createProgram([fixture], { ...options, exactOptionalPropertyTypes: true, noEmit: true })
  const source = program.getSourceFile(fixture)
  t.ok(source, 'the fixture is compiled')
  const diagnostics = [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)]
  t.same(diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')), [])
})
