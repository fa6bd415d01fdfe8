/**
 * A batch write planned in memory: the facts its changes read are loaded from the database in a few
 * set queries (`BatchPlan.needs`), the changes are applied in order to those facts, and what is left
 * is the net difference — rows to insert and rows to delete, in a few set statements — with each
 * change's effect. A batch of 1 000 assignments then costs a dozen queries, not 3 000.
 */
import { GroupNotFoundError } from '../errors.js'
import { factHash, type Fact } from '../digest.js'
import { assertNoCycle } from '../hierarchy.js'
import { atIndex, type Change } from '../model.js'

/** A grant, a membership or an inclusion of a group: `[group, permission]`, `[group, user]` or `[group, includes]`. */
export type Pair = [string, string]

/** What a plan must know from the database before it can apply its changes. */
export interface BatchNeeds {
  /** Groups whose existence the changes read. */
  groups: string[]
  /** Groups a change deletes: all their grants and memberships are needed. */
  whole: string[]
  /** Grants the changes read, of groups not in `whole`. */
  grants: Pair[]
  /** Memberships the changes read, of groups not in `whole`. */
  members: Pair[]
  /**
   * Whether the tenant's inclusions are needed — all of them: an inclusion's cycle check follows
   * them, a deleted group's go with it both ways. True when a change includes, excludes or deletes
   * a group.
   */
  inclusions: boolean
}

/** The facts read for a plan: existing groups, the grants and memberships found among those asked for, and the inclusions when asked for. */
export interface BatchFacts {
  groups: Iterable<string>
  grants: Iterable<Pair>
  members: Iterable<Pair>
  inclusions: Iterable<Pair>
}

/** What a batch does: each change's effect, and the net rows to insert and delete. */
export interface BatchOutcome {
  effects: boolean[]
  /** The changes that had an effect, in order. */
  effective: Change[]
  insert: { groups: string[], grants: Pair[], members: Pair[], inclusions: Pair[] }
  remove: { groups: string[], grants: Pair[], members: Pair[], inclusions: Pair[] }
  /** What the batch adds to the tenant's digest: the hashes of the facts inserted minus those removed. */
  delta: bigint
}

/** A fact as the batch goes: present in the database before it (`before`), and now. */
interface Presence { before: boolean, now: boolean }

interface GroupFacts extends Presence {
  grants: Map<string, Presence>
  members: Map<string, Presence>
  /** The inclusions this group makes, by the included group. */
  includes: Map<string, Presence>
}

const key = (group: string, item: string): string => `${group}\0${item}`

/** The presence of `item` in `map`, added absent (before and now) when the batch meets it first. */
function presence (map: Map<string, Presence>, item: string): Presence {
  let found = map.get(item)
  if (found === undefined) map.set(item, found = { before: false, now: false })
  return found
}

/** Sets whether a fact is present now; returns whether that changed it. */
function set (fact: Presence, now: boolean): boolean {
  if (fact.now === now) return false
  fact.now = now
  return true
}

export class BatchPlan {
  readonly #tenant: string
  readonly #changes: readonly Change[]
  readonly #whole = new Set<string>()
  readonly #hierarchy: boolean

  /** @param changes validated changes (`assertBatch`) of `tenant` */
  constructor (tenant: string, changes: readonly Change[]) {
    this.#tenant = tenant
    this.#changes = changes
    for (const change of changes) if (change.op === 'delete-group') this.#whole.add(change.group)
    this.#hierarchy = changes.some((change) => change.op === 'delete-group' || change.op === 'include-group' || change.op === 'exclude-group')
  }

  /** The facts to read from the database, deduplicated. */
  needs (): BatchNeeds {
    const groups = new Set<string>()
    const grants = new Map<string, Pair>()
    const members = new Map<string, Pair>()
    for (const change of this.#changes) {
      groups.add(change.group)
      if (change.op === 'include-group') groups.add(change.includes)
      if (this.#whole.has(change.group)) continue
      if (change.op === 'add-permission' || change.op === 'remove-permission') grants.set(key(change.group, change.permission), [change.group, change.permission])
      if (change.op === 'assign-user' || change.op === 'unassign-user') members.set(key(change.group, change.user), [change.group, change.user])
    }
    return { groups: [...groups], whole: [...this.#whole], grants: [...grants.values()], members: [...members.values()], inclusions: this.#hierarchy }
  }

  /**
   * Applies the changes in order to `facts` (what `needs` asked for, as found in the database).
   * Throws the error of the first change that fails (a missing group, an inclusion closing a
   * cycle), prefixed with its index.
   */
  apply (facts: BatchFacts): BatchOutcome {
    const groups = new Map<string, GroupFacts>()
    const group = (name: string): GroupFacts => {
      let found = groups.get(name)
      if (found === undefined) groups.set(name, found = { before: false, now: false, grants: new Map(), members: new Map(), includes: new Map() })
      return found
    }
    for (const name of facts.groups) {
      const found = group(name)
      found.before = found.now = true
    }
    for (const [name, permission] of facts.grants) group(name).grants.set(permission, { before: true, now: true })
    for (const [name, user] of facts.members) group(name).members.set(user, { before: true, now: true })
    for (const [name, includes] of facts.inclusions) group(name).includes.set(includes, { before: true, now: true })
    const effects = this.#changes.map((change, index) => {
      try {
        return this.#effect(groups, group, change)
      } catch (err) {
        throw atIndex(err, index)
      }
    })

    const outcome: BatchOutcome = {
      effects,
      effective: this.#changes.filter((_change, i) => effects[i]),
      insert: { groups: [], grants: [], members: [], inclusions: [] },
      remove: { groups: [], grants: [], members: [], inclusions: [] },
      delta: 0n
    }
    const net = (fact: Presence, hash: () => bigint, add: () => void, drop: () => void): void => {
      if (fact.now && !fact.before) {
        add()
        outcome.delta += hash()
      } else if (fact.before && !fact.now) {
        drop()
        outcome.delta -= hash()
      }
    }
    const hashOf = (fact: Fact) => () => factHash(fact)
    for (const [name, g] of groups) {
      net(g, hashOf({ group: name }), () => outcome.insert.groups.push(name), () => outcome.remove.groups.push(name))
      for (const [permission, fact] of g.grants) {
        net(fact, hashOf({ group: name, permission }), () => outcome.insert.grants.push([name, permission]), () => outcome.remove.grants.push([name, permission]))
      }
      for (const [user, fact] of g.members) {
        net(fact, hashOf({ group: name, user }), () => outcome.insert.members.push([name, user]), () => outcome.remove.members.push([name, user]))
      }
      for (const [includes, fact] of g.includes) {
        net(fact, hashOf({ group: name, includes }), () => outcome.insert.inclusions.push([name, includes]), () => outcome.remove.inclusions.push([name, includes]))
      }
    }
    return outcome
  }

  /** Applies one change to the facts (`group` finds or adds a group's); returns whether it had an effect. */
  #effect (groups: Map<string, GroupFacts>, group: (name: string) => GroupFacts, change: Change): boolean {
    const g = group(change.group)
    switch (change.op) {
      case 'create-group':
        return set(g, true)
      case 'delete-group':
        if (!set(g, false)) return false
        // A deleted group's grants and memberships were all read (`whole`), and the tenant's
        // inclusions (`inclusions`): they go with it, its inclusions both ways.
        for (const fact of g.grants.values()) fact.now = false
        for (const fact of g.members.values()) fact.now = false
        for (const fact of g.includes.values()) fact.now = false
        for (const other of groups.values()) {
          const naming = other.includes.get(change.group)
          if (naming !== undefined) naming.now = false
        }
        return true
      case 'add-permission':
        if (!g.now) throw new GroupNotFoundError(change.group, this.#tenant)
        return set(presence(g.grants, change.permission), true)
      case 'remove-permission':
        return set(presence(g.grants, change.permission), false)
      case 'assign-user':
        if (!g.now) throw new GroupNotFoundError(change.group, this.#tenant)
        return set(presence(g.members, change.user), true)
      case 'unassign-user':
        return set(presence(g.members, change.user), false)
      case 'include-group': {
        if (!g.now) throw new GroupNotFoundError(change.group, this.#tenant)
        if (!group(change.includes).now) throw new GroupNotFoundError(change.includes, this.#tenant)
        const fact = presence(g.includes, change.includes)
        if (fact.now) return false
        assertNoCycle(this.#tenant, change.group, change.includes, (name) => included(groups.get(name)))
        return set(fact, true)
      }
      case 'exclude-group':
        return set(presence(g.includes, change.includes), false)
    }
  }
}

/** The groups `g` includes now. */
function * included (g: GroupFacts | undefined): Generator<string> {
  if (g === undefined) return
  for (const [name, fact] of g.includes) if (fact.now) yield name
}
