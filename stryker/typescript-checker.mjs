/**
 * A Stryker checker (`checkers: ['typescript-program']` in stryker.config.mjs): a mutant whose module
 * no longer type-checks is discarded ("not compiling") instead of being run against the tests — what
 * `@stryker-mutator/typescript-checker` does, at a fraction of its cost.
 *
 * That checker rebuilds its TypeScript program through a watching solution builder, which parses every
 * file of the program again for each mutant: some 1 100 files for this scope, most of them the
 * declarations of node_modules (`kysely`, `@types/node`, …). Profiled in a run of the whole scope,
 * parsing and the garbage it left were two thirds of its time, type-checking a ninth; its two
 * processes took 1.3 of the machine's 2 cores for the whole of the run's first 47 minutes.
 *
 * This one keeps one incremental program (`createSemanticDiagnosticsBuilderProgram`) whose host hands
 * back the already-parsed file for every file but the mutated one. Each check puts the mutant into its
 * file's text, lets the builder re-check the files the change affects (the file itself, and those that
 * import it when its exported types changed), and fails the mutant on any error they report. The next
 * check puts the file back: the builder sees its original version again.
 */
import ts from 'typescript'
import { CheckStatus } from '@stryker-mutator/api/check'
import { commonTokens, declareClassPlugin, PluginKind, tokens } from '@stryker-mutator/api/plugin'

const normalize = (fileName) => fileName.replaceAll('\\', '/')

/** The text of `sourceFile` with `mutant`'s replacement at its location (0-based lines and columns). */
export function mutatedText (sourceFile, mutant) {
  const start = sourceFile.getPositionOfLineAndCharacter(mutant.location.start.line, mutant.location.start.column)
  const end = sourceFile.getPositionOfLineAndCharacter(mutant.location.end.line, mutant.location.end.column)
  return sourceFile.text.slice(0, start) + mutant.replacement + sourceFile.text.slice(end)
}

/**
 * An incremental TypeScript program over `tsconfigFile` in which one file at a time can be replaced.
 * `errorsWith(fileName, text)` type-checks the program with `fileName` holding `text` (every other
 * file as it is on disk; with no arguments, every file) and returns the errors of the files the
 * change affects.
 */
export class MutableProgram {
  #options
  #rootNames
  #host
  /** Each file as parsed from disk, by path. */
  #originals = new Map()
  #replaced = undefined
  #versions = 0
  #builder

  constructor (tsconfigFile) {
    const config = ts.getParsedCommandLineOfConfigFile(tsconfigFile, {}, {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => { throw new Error(flatten([diagnostic])) }
    })
    if (config.errors.length > 0) throw new Error(flatten(config.errors))
    this.#rootNames = config.fileNames
    // The options @stryker-mutator/typescript-checker compiles a mutant with.
    this.#options = {
      ...config.options,
      allowUnreachableCode: true,
      noUnusedLocals: false,
      noUnusedParameters: false,
      noEmit: true,
      incremental: false,
      tsBuildInfoFile: undefined,
      composite: false
    }
    this.#host = ts.createCompilerHost(this.#options)
    const parse = this.#host.getSourceFile.bind(this.#host)
    this.#host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
      const path = normalize(fileName)
      if (this.#replaced?.path === path) return this.#replaced.sourceFile(fileName, languageVersion)
      if (!this.#originals.has(path)) {
        const sourceFile = parse(fileName, languageVersion, onError, shouldCreate)
        if (sourceFile !== undefined) sourceFile.version = 'original'
        this.#originals.set(path, sourceFile)
      }
      return this.#originals.get(path)
    }
  }

  /** The file `fileName` as parsed from disk, or undefined when it is not part of the program. */
  original (fileName) {
    return this.#originals.get(normalize(fileName))
  }

  get size () {
    return this.#originals.size
  }

  errorsWith (fileName, text) {
    if (text === undefined) this.#replaced = undefined
    else {
      const version = `mutated ${++this.#versions}`
      let parsed
      this.#replaced = {
        path: normalize(fileName),
        sourceFile: (name, languageVersion) => (parsed ??= Object.assign(ts.createSourceFile(name, text, languageVersion), { version }))
      }
    }
    this.#builder = ts.createSemanticDiagnosticsBuilderProgram(this.#rootNames, this.#options, this.#host, this.#builder)
    const errors = [...this.#builder.getOptionsDiagnostics(), ...this.#builder.getGlobalDiagnostics()]
    if (this.#replaced !== undefined) errors.push(...this.#builder.getSyntacticDiagnostics(this.#builder.getSourceFile(fileName)))
    for (let next; (next = this.#builder.getSemanticDiagnosticsOfNextAffectedFile()) !== undefined;) errors.push(...next.result)
    return errors.filter((diagnostic) => diagnostic.category === ts.DiagnosticCategory.Error)
  }
}

function flatten (diagnostics) {
  return ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (fileName) => fileName,
    getCurrentDirectory: () => process.cwd(),
    getNewLine: () => '\n'
  })
}

export class ProgramChecker {
  static inject = tokens(commonTokens.options, commonTokens.logger)
  #tsconfigFile
  #log
  #program

  constructor (options, log) {
    this.#tsconfigFile = options.tsconfigFile ?? 'tsconfig.json'
    this.#log = log
  }

  async init () {
    this.#program = new MutableProgram(this.#tsconfigFile)
    // The first build affects every file: these are all the program's errors.
    const errors = this.#program.errorsWith()
    if (errors.length > 0) throw new Error(`Type errors before any mutant, in the program of ${this.#tsconfigFile}:\n${flatten(errors)}`)
    this.#log.info(`Type-checking each mutant in the program of ${this.#tsconfigFile} (${this.#program.size} files).`)
  }

  async check (mutants) {
    const results = {}
    for (const mutant of mutants) {
      const original = this.#program.original(mutant.fileName)
      // A file outside the program: nothing to check it against.
      if (original === undefined) {
        results[mutant.id] = { status: CheckStatus.Passed }
        continue
      }
      const errors = this.#program.errorsWith(mutant.fileName, mutatedText(original, mutant))
      results[mutant.id] = errors.length === 0
        ? { status: CheckStatus.Passed }
        : { status: CheckStatus.CompileError, reason: flatten(errors) }
    }
    return results
  }
}

export const strykerPlugins = [declareClassPlugin(PluginKind.Checker, 'typescript-program', ProgramChecker)]
