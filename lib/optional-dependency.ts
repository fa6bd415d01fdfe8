/**
 * Optional peer dependencies (better-sqlite3 for the default store, prom-client for `metrics`) are
 * loaded on first use, not when the plugin is imported: a host that brings its own database or
 * does not want metrics need not install them. `require` (through `createRequire`) keeps the
 * callers synchronous; both packages are CommonJS.
 */
import { createRequire } from 'node:module'
import { MissingDependencyError } from './errors.js'

const require = createRequire(import.meta.url)

/**
 * Loads the package `name`, needed for `feature`; when it is not installed, throws
 * `FST_POLICY_CACHE_MISSING_DEPENDENCY` naming the package to install. Any other failure (a
 * package that is there but broken, e.g. a native module built for another Node) is thrown as is.
 */
export function requireOptional<T> (name: string, feature: string): T {
  try {
    return require(name) as T
  } catch (err) {
    // Only the package itself missing: "Cannot find module 'x'" for one of ITS dependencies is a broken install.
    const missing = (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' &&
      (err as Error).message.startsWith(`Cannot find module '${name}'`)
    if (missing) throw new MissingDependencyError(name, feature, name, { cause: err })
    throw err
  }
}
