/**
 * A MemoryPolicyStore that counts calls and can hold any method until released, so tests can
 * observe single-flight loading and coalesced catch-ups without sleeping.
 */
import { MemoryPolicyStore } from '../../examples/custom-store.js'

type Method = 'snapshot' | 'changesSince' | 'changes' | 'revisions' | 'write' | 'ping' | 'tenants'

export class InstrumentedStore extends MemoryPolicyStore {
  readonly calls: Record<Method, number> = { snapshot: 0, changesSince: 0, changes: 0, revisions: 0, write: 0, ping: 0, tenants: 0 }
  readonly #gates = new Map<Method, Promise<void>>()
  /** When set, the method throws this instead of answering. */
  failing: Error | undefined

  /** Holds the answers of `method` until the returned function is called. */
  hold (method: Method): () => void {
    let release!: () => void
    this.#gates.set(method, new Promise<void>((resolve) => { release = resolve }))
    return () => { this.#gates.delete(method); release() }
  }

  /** Counts the call, reads the answer at once, then holds it while the method is held (a slow reply). */
  async #call<T> (method: Method, read: () => Promise<T>): Promise<T> {
    this.calls[method]++
    if (this.failing !== undefined) throw this.failing
    const answer = await read()
    await this.#gates.get(method)
    return answer
  }

  override snapshot (tenant: string) {
    return this.#call('snapshot', () => super.snapshot(tenant))
  }

  override changesSince (tenant: string, revision: number) {
    return this.#call('changesSince', () => super.changesSince(tenant, revision))
  }

  override changes (tenant: string, after: number, limit: number) {
    return this.#call('changes', () => super.changes(tenant, after, limit))
  }

  override revisions (tenants: readonly string[]) {
    return this.#call('revisions', () => super.revisions(tenants))
  }

  override write (...args: Parameters<MemoryPolicyStore['write']>) {
    return this.#call('write', () => super.write(...args))
  }

  override tenants (after: string | undefined, limit: number) {
    return this.#call('tenants', () => super.tenants(after, limit))
  }

  override ping () {
    return this.#call('ping', () => super.ping())
  }
}
