/**
 * A host-written PolicyStore: everything in one process's memory. It shows the adapter interface is
 * really pluggable (it passes the same conformance suite as the built-in Kysely store) and is handy
 * in tests. It is not shared between processes, so use it for a single instance only.
 *
 *   await app.register(policyCache, { db: new MemoryPolicyStore() })
 */
import { randomUUID } from 'node:crypto'
import type { Change, Fact, GroupData, LoggedChange, PolicyStore, TenantSnapshot, TenantVersion, WriteResult } from '../lib/plugin.js'
import { EMPTY_DIGEST, errors, updateDigest } from '../lib/plugin.js'

interface Tenant {
  revision: number
  /** The digest of `groups`, updated by each change with the facts it added and removed. */
  digest: string
  groups: Map<string, { permissions: Set<string>, users: Set<string> }>
  log: LoggedChange[]
}

export class MemoryPolicyStore implements PolicyStore {
  readonly #tenants = new Map<string, Tenant>()
  readonly #retention: number
  /** Every store is a database of its own. */
  readonly #databaseId = randomUUID()

  /** @param retention changelog entries kept per tenant */
  constructor ({ retention = 10000 }: { retention?: number } = {}) {
    this.#retention = retention
  }

  async migrate (): Promise<void> {}

  async databaseId (): Promise<string> {
    return this.#databaseId
  }

  async write (tenant: string, change: Change, _origin: string): Promise<WriteResult> {
    let state = this.#tenants.get(tenant)
    if (state === undefined) this.#tenants.set(tenant, state = { revision: 0, digest: EMPTY_DIGEST, groups: new Map(), log: [] })
    const name = change.group
    const group = state.groups.get(name)
    // The facts the change adds and removes, for the digest.
    const added: Fact[] = []
    const removed: Fact[] = []
    switch (change.op) {
      case 'create-group':
        if (group === undefined) {
          state.groups.set(name, { permissions: new Set(), users: new Set() })
          added.push({ group: name })
        }
        break
      case 'delete-group':
        if (group !== undefined) {
          state.groups.delete(name)
          removed.push({ group: name })
          for (const permission of group.permissions) removed.push({ group: name, permission })
          for (const user of group.users) removed.push({ group: name, user })
        }
        break
      case 'add-permission':
        if (group === undefined) throw new errors.GroupNotFoundError(name, tenant)
        if (!group.permissions.has(change.permission)) {
          group.permissions.add(change.permission)
          added.push({ group: name, permission: change.permission })
        }
        break
      case 'remove-permission':
        if (group?.permissions.delete(change.permission) === true) removed.push({ group: name, permission: change.permission })
        break
      case 'assign-user':
        if (group === undefined) throw new errors.GroupNotFoundError(name, tenant)
        if (!group.users.has(change.user)) {
          group.users.add(change.user)
          added.push({ group: name, user: change.user })
        }
        break
      case 'unassign-user':
        if (group?.users.delete(change.user) === true) removed.push({ group: name, user: change.user })
        break
    }
    const changed = added.length + removed.length > 0
    if (changed) {
      state.digest = updateDigest(state.digest, added, removed)
      state.revision++
      state.log.push({ ...change, revision: state.revision })
      if (state.log.length > this.#retention) state.log.splice(0, state.log.length - this.#retention)
    }
    return { revision: state.revision, changed, digest: state.digest }
  }

  async snapshot (tenant: string): Promise<TenantSnapshot> {
    const state = this.#tenants.get(tenant)
    if (state === undefined) return { revision: 0, groups: [], digest: EMPTY_DIGEST }
    const groups: GroupData[] = [...state.groups].sort(([a], [b]) => a < b ? -1 : 1).map(([name, group]) => ({
      name,
      permissions: [...group.permissions].sort(),
      users: [...group.users].sort()
    }))
    return { revision: state.revision, groups, digest: state.digest }
  }

  async changesSince (tenant: string, revision: number): Promise<LoggedChange[] | null> {
    const state = this.#tenants.get(tenant)
    const current = state?.revision ?? 0
    if (revision > current) return null
    if (revision === current) return []
    const changes = state!.log.filter((change) => change.revision > revision)
    return changes[0]?.revision === revision + 1 ? changes.map((change) => ({ ...change })) : null
  }

  async revisions (tenants: readonly string[]): Promise<Map<string, TenantVersion>> {
    return new Map(tenants.map((tenant) => {
      const state = this.#tenants.get(tenant)
      return [tenant, { revision: state?.revision ?? 0, digest: state?.digest ?? EMPTY_DIGEST }]
    }))
  }

  async ping (): Promise<void> {}

  async close (): Promise<void> {}
}
