/**
 * The database layer: the `PolicyStore` contract, its Kysely implementation and the default SQLite database.
 */
import type { PolicyStore } from './types.js'

export type { PolicyStore, ReplaceResult } from './types.js'
export { KyselyPolicyStore, TABLE_PREFIX_PATTERN, resolveRetention, type ChangelogRetention, type KyselyPolicyStoreOptions } from './kysely-store.js'
export { createSqliteDb } from './sqlite.js'

const requiredMethods = ['migrate', 'databaseId', 'write', 'snapshot', 'changesSince', 'changes', 'revisions', 'tenants', 'importTenant', 'deleteTenant'] as const

/** Whether `value` looks like a {@link PolicyStore} (has its core methods), as opposed to a Kysely. */
export function isPolicyStore (value: unknown): value is PolicyStore {
  return typeof value === 'object' && value !== null &&
    requiredMethods.every((method) => typeof (value as Record<string, unknown>)[method] === 'function')
}
