/**
 * A host-written PolicyStore: everything in one process's memory. It shows the adapter interface is
 * really pluggable (it passes the same conformance suite as the built-in Kysely store) and is handy
 * in tests. It is not shared between processes, so use it for a single instance only.
 *
 *   await app.register(policyCache, { db: new MemoryPolicyStore() })
 */
import { randomUUID } from 'node:crypto'
import type {
  AuditEntry, Change, ChangesPage, Fact, GroupData, LoggedChange, PolicyStore, ReplaceResult, TenantSnapshot, TenantSummary, TenantVersion, WriteOptions, WriteResult
} from '../lib/plugin.js'
import { EMPTY_DIGEST, errors, replaceChanges, updateDigest } from '../lib/plugin.js'

type Groups = Map<string, { permissions: Set<string>, users: Set<string>, includes: Set<string> }>

interface Tenant {
  revision: number
  /** The digest of `groups`, updated by each change with the facts it added and removed. */
  digest: string
  groups: Groups
  /** The changelog: the newest `retention` entries, with who wrote them and when (this process's clock: the only one it has). */
  log: AuditEntry[]
  /** Deleted (`deleteTenant`) and not written since: the revision stays, so that a tenant created again goes on from it. */
  deleted: boolean
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

  /**
   * One change, or a batch applied in order to a copy of the tenant's groups that replaces them only
   * when every change succeeded (all or nothing). `ifRevision` is checked first. A store running in
   * one process needs no lock: nothing else runs between the check and the write.
   */
  async write (tenant: string, change: Change | readonly Change[], origin: string, options: WriteOptions = {}): Promise<WriteResult> {
    let state = this.#tenants.get(tenant)
    const current = state?.revision ?? 0
    if (options.ifRevision !== undefined && options.ifRevision !== current) {
      throw Object.assign(new errors.RevisionConflictError(tenant, current, options.ifRevision), { currentRevision: current })
    }
    if (state === undefined) this.#tenants.set(tenant, state = { revision: 0, digest: EMPTY_DIGEST, groups: new Map(), log: [], deleted: false })
    // The facts the changes add and remove, for the digest.
    const added: Fact[] = []
    const removed: Fact[] = []
    let effects: boolean[] | undefined
    let logged: Change | { op: 'batch', changes: Change[] } | undefined
    if (Array.isArray(change)) {
      const groups: Groups = new Map([...state.groups].map(([name, group]) => [name, { permissions: new Set(group.permissions), users: new Set(group.users), includes: new Set(group.includes) }]))
      effects = (change as readonly Change[]).map((one, index) => {
        const before = added.length + removed.length
        try {
          apply(tenant, groups, one, added, removed)
        } catch (err) {
          throw Object.assign(err as Error, { message: `changes[${index}]: ${(err as Error).message}`, index })
        }
        return added.length + removed.length > before
      })
      state.groups = groups
      const effective = (change as readonly Change[]).filter((_one, i) => effects![i])
      logged = effective.length > 1 ? { op: 'batch', changes: effective } : effective[0]
    } else {
      apply(tenant, state.groups, change as Change, added, removed)
      logged = change as Change
    }
    const changed = added.length + removed.length > 0
    if (changed && logged !== undefined) {
      state.digest = updateDigest(state.digest, added, removed)
      state.revision++
      state.deleted = false
      state.log.push({ revision: state.revision, change: logged, origin, actor: options.actor ?? null, committedAt: Date.now() })
      if (state.log.length > this.#retention) state.log.splice(0, state.log.length - this.#retention)
    }
    return { revision: state.revision, changed, digest: state.digest, ...(effects === undefined ? {} : { effects }) }
  }

  async snapshot (tenant: string): Promise<TenantSnapshot> {
    const state = this.#tenants.get(tenant)
    if (state === undefined) return { revision: 0, groups: [], digest: EMPTY_DIGEST, exists: false }
    const groups: GroupData[] = [...state.groups].sort(([a], [b]) => a < b ? -1 : 1).map(([name, group]) => ({
      name,
      permissions: [...group.permissions].sort(),
      users: [...group.users].sort(),
      includes: [...group.includes].sort()
    }))
    return { revision: state.revision, groups, digest: state.digest, exists: state.revision > 0 && !state.deleted }
  }

  async tenants (after: string | undefined, limit: number): Promise<TenantSummary[]> {
    return [...this.#tenants]
      .filter(([tenant, state]) => state.revision > 0 && !state.deleted && (after === undefined || tenant > after))
      .sort(([a], [b]) => a < b ? -1 : 1)
      .slice(0, limit)
      .map(([tenant, { revision }]) => ({ tenant, revision }))
  }

  /** The difference between what the tenant holds and `groups`, written as one batch (`replaceChanges`). */
  async importTenant (tenant: string, groups: readonly GroupData[], origin: string, options: WriteOptions = {}): Promise<ReplaceResult> {
    return await this.#replace(tenant, groups, origin, options)
  }

  /** Its groups deleted as one batch, and the tenant marked deleted; a tenant that does not exist is a 404. */
  async deleteTenant (tenant: string, origin: string, options: WriteOptions = {}): Promise<ReplaceResult> {
    const state = this.#tenants.get(tenant)
    if (state === undefined || state.revision === 0 || state.deleted) throw new errors.TenantNotFoundError(tenant)
    const result = await this.#replace(tenant, [], origin, options)
    state.deleted = true
    return result
  }

  async #replace (tenant: string, groups: readonly GroupData[], origin: string, options: WriteOptions): Promise<ReplaceResult> {
    const changes = replaceChanges((await this.snapshot(tenant)).groups, groups)
    const { revision, changed, digest } = await this.write(tenant, changes, origin, options)
    return { revision, changed, digest, changes: changed ? changes : [] }
  }

  async changesSince (tenant: string, revision: number): Promise<LoggedChange[] | null> {
    const state = this.#tenants.get(tenant)
    const current = state?.revision ?? 0
    if (revision > current) return null
    if (revision === current) return []
    const changes = state!.log.filter((entry) => entry.revision > revision)
    return changes[0]?.revision === revision + 1 ? changes.map((entry) => ({ ...structuredClone(entry.change), revision: entry.revision }) as LoggedChange) : null
  }

  async changes (tenant: string, after: number, limit: number): Promise<ChangesPage> {
    const state = this.#tenants.get(tenant)
    if (state === undefined) return { revision: 0, oldestRevision: null, entries: [] }
    const entries = state.log.filter((entry) => entry.revision > after).slice(0, limit)
    return { revision: state.revision, oldestRevision: state.log[0]?.revision ?? null, entries: structuredClone(entries) }
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

/** The shortest chain of inclusions from `from` to `to` (`[from]` when the same), or undefined. */
function chain (groups: Groups, from: string, to: string): string[] | undefined {
  const previous = new Map<string, string | undefined>([[from, undefined]])
  for (const [at] of previous) {
    if (at === to) {
      const path: string[] = []
      for (let step: string | undefined = at; step !== undefined; step = previous.get(step)) path.unshift(step)
      return path
    }
    for (const next of groups.get(at)?.includes ?? []) if (!previous.has(next)) previous.set(next, at)
  }
  return undefined
}

/** Applies one change to `groups`, recording the facts it adds and removes; throws for a missing group or a cycle. */
function apply (tenant: string, groups: Groups, change: Change, added: Fact[], removed: Fact[]): void {
  const name = change.group
  const group = groups.get(name)
  switch (change.op) {
    case 'create-group':
      if (group === undefined) {
        groups.set(name, { permissions: new Set(), users: new Set(), includes: new Set() })
        added.push({ group: name })
      }
      break
    case 'delete-group':
      if (group !== undefined) {
        groups.delete(name)
        removed.push({ group: name })
        for (const permission of group.permissions) removed.push({ group: name, permission })
        for (const user of group.users) removed.push({ group: name, user })
        // Its inclusions, both ways.
        for (const includes of group.includes) removed.push({ group: name, includes })
        for (const [other, { includes }] of groups) if (includes.delete(name)) removed.push({ group: other, includes: name })
      }
      break
    case 'include-group': {
      if (group === undefined) throw new errors.GroupNotFoundError(name, tenant)
      if (!groups.has(change.includes)) throw new errors.GroupNotFoundError(change.includes, tenant)
      if (group.includes.has(change.includes)) break
      const back = chain(groups, change.includes, name)
      if (back !== undefined) {
        const path = [name, ...back]
        throw Object.assign(new errors.InclusionCycleError(name, change.includes, tenant, path.join(' → ')), { path })
      }
      group.includes.add(change.includes)
      added.push({ group: name, includes: change.includes })
      break
    }
    case 'exclude-group':
      if (group?.includes.delete(change.includes) === true) removed.push({ group: name, includes: change.includes })
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
}
