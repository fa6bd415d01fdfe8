/**
 * The role hierarchy's graph rule, shared by the store, a batch's plan and the cache: an inclusion
 * `group → includes` is refused when `group` is already reachable from `includes` (a cycle, a group
 * including itself among them), naming the path it would close.
 */
import { InclusionCycleError } from './errors.js'

/**
 * The shortest path from `start` to `goal` following `next` (breadth first, so the path named is
 * the shortest one), `[start, …, goal]`; `[start]` when they are the same; undefined when `goal`
 * cannot be reached.
 */
export function findPath<T> (start: T, goal: T, next: (node: T) => Iterable<T>): T[] | undefined {
  const from = new Map<T, T | undefined>([[start, undefined]])
  const queue = [start]
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i]
    if (node === goal) {
      const path: T[] = []
      for (let at: T | undefined = node; at !== undefined; at = from.get(at)) path.push(at)
      return path.reverse()
    }
    for (const child of next(node)) {
      if (from.has(child)) continue
      from.set(child, node)
      queue.push(child)
    }
  }
  return undefined
}

/**
 * Throws 409 FST_POLICY_CACHE_INCLUSION_CYCLE (with `path` set: `group`, `includes`, …, `group`)
 * when `group` including `includes` would close a cycle, `children` giving the groups a group
 * includes now.
 */
export function assertNoCycle (tenant: string, group: string, includes: string, children: (group: string) => Iterable<string>): void {
  const back = findPath(includes, group, children)
  if (back === undefined) return
  const path = [group, ...back]
  throw Object.assign(new InclusionCycleError(group, includes, tenant, path.join(' → ')), { path })
}
