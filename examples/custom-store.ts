/**
 * A host-written PolicyStore: everything in one process's memory. It shows the adapter interface is
 * really pluggable (it passes the same conformance suite as the built-in Kysely store) and is handy
 * in tests. It is not shared between processes, so use it for a single instance only.
 *
 *   await app.register(policyCache, { db: new MemoryPolicyStore() })
 */
import type { Change, GroupData, LoggedChange, PolicyStore, TenantSnapshot, WriteResult } from '../lib/plugin.js'
import { errors } from '../lib/plugin.js'

interface Tenant {
  revision: number
  groups: Map<string, { permissions: Set<string>, users: Set<string> }>
  log: LoggedChange[]
}

export class MemoryPolicyStore implements PolicyStore {
  readonly #tenants = new Map<string, Tenant>()
  readonly #retention: number

  /** @param retention changelog entries kept per tenant */
  constructor ({ retention = 10000 }: { retention?: number } = {}) {
    this.#retention = retention
  }

  async migrate (): Promise<void> {}

  async write (tenant: string, change: Change, _origin: string): Promise<WriteResult> {
    let state = this.#tenants.get(tenant)
    if (state === undefined) this.#tenants.set(tenant, state = { revision: 0, groups: new Map(), log: [] })
    const group = state.groups.get(change.group)
    let changed: boolean
    switch (change.op) {
      case 'create-group':
        changed = group === undefined
        if (changed) state.groups.set(change.group, { permissions: new Set(), users: new Set() })
        break
      case 'delete-group':
        changed = state.groups.delete(change.group)
        break
      case 'add-permission':
        if (group === undefined) throw new errors.GroupNotFoundError(change.group, tenant)
        changed = !group.permissions.has(change.permission)
        group.permissions.add(change.permission)
        break
      case 'remove-permission':
        changed = group?.permissions.delete(change.permission) ?? false
        break
      case 'assign-user':
        if (group === undefined) throw new errors.GroupNotFoundError(change.group, tenant)
        changed = !group.users.has(change.user)
        group.users.add(change.user)
        break
      case 'unassign-user':
        changed = group?.users.delete(change.user) ?? false
        break
    }
    if (changed) {
      state.revision++
      state.log.push({ ...change, revision: state.revision })
      if (state.log.length > this.#retention) state.log.splice(0, state.log.length - this.#retention)
    }
    return { revision: state.revision, changed }
  }

  async snapshot (tenant: string): Promise<TenantSnapshot> {
    const state = this.#tenants.get(tenant)
    if (state === undefined) return { revision: 0, groups: [] }
    const groups: GroupData[] = [...state.groups].sort(([a], [b]) => a < b ? -1 : 1).map(([name, group]) => ({
      name,
      permissions: [...group.permissions].sort(),
      users: [...group.users].sort()
    }))
    return { revision: state.revision, groups }
  }

  async changesSince (tenant: string, revision: number): Promise<LoggedChange[] | null> {
    const state = this.#tenants.get(tenant)
    const current = state?.revision ?? 0
    if (revision > current) return null
    if (revision === current) return []
    const changes = state!.log.filter((change) => change.revision > revision)
    return changes[0]?.revision === revision + 1 ? changes.map((change) => ({ ...change })) : null
  }

  async revisions (tenants: readonly string[]): Promise<Map<string, number>> {
    return new Map(tenants.map((tenant) => [tenant, this.#tenants.get(tenant)?.revision ?? 0]))
  }

  async ping (): Promise<void> {}

  async close (): Promise<void> {}
}
