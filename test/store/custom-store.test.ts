/**
 * The host-written example store (examples/custom-store.ts) passes the same conformance suite as
 * the built-in store: the PolicyStore interface really is pluggable.
 */
import t from 'tap'
import { MemoryPolicyStore } from '../../examples/custom-store.js'
import { changelogPruning, storeConformance } from './conformance.js'

storeConformance(t, 'custom MemoryPolicyStore', async () => ({ store: new MemoryPolicyStore(), cleanup: async () => {} }))

t.test('changelog pruning', (t) => changelogPruning(t, async () => ({
  store: new MemoryPolicyStore({ retention: 10 }),
  cleanup: async () => {}
})))
