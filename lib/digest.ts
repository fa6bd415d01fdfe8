/**
 * The digest of a tenant's policy (docs/protocol.md, "Digests"): what lets an instance tell that its
 * cached contents are the database's, not only its revision.
 *
 * A tenant's policy is a set of facts — each group, each grant of a group, each membership. The
 * digest is the sum, modulo 2^128, of a hash of every fact (the first 128 bits of SHA-256 of the
 * fact's canonical text): independent of order, and updated by a change in O(facts it adds or
 * removes) — add the hashes of the facts added, subtract those of the facts removed. `delete-group`
 * removes the group's grants, memberships and inclusions (both ways) too, so their hashes go with it. Written as 32
 * lowercase hex digits; the empty tenant's digest is {@link EMPTY_DIGEST}.
 *
 * It detects accidental and forged divergence between a cache and its database; it is not a MAC
 * (anyone can compute it), so it proves nothing about who sent it.
 */
import { hash } from 'node:crypto'
import type { GroupData } from './model.js'

/**
 * One fact of a tenant's policy: a group, a grant (`permission`) of a group, a membership (`user`),
 * or an inclusion (`includes`: the group includes that one).
 */
export type Fact =
  | { group: string, permission?: undefined, user?: undefined, includes?: undefined }
  | { group: string, permission: string, user?: undefined, includes?: undefined }
  | { group: string, permission?: undefined, user: string, includes?: undefined }
  | { group: string, permission?: undefined, user?: undefined, includes: string }

/** The digest of a tenant with no facts (never written, or emptied). */
export const EMPTY_DIGEST = '0'.repeat(32)
/** What a digest looks like on the wire and in the database. */
export const DIGEST_PATTERN = '^[0-9a-f]{32}$'

/**
 * The hash of one fact as a 128-bit integer. The canonical text separates the kind and the fields
 * with NUL, which no identifier or permission contains.
 */
export function factHash (fact: Fact): bigint {
  const text = fact.permission !== undefined
    ? `p\0${fact.group}\0${fact.permission}`
    : fact.user !== undefined
      ? `u\0${fact.group}\0${fact.user}`
      : fact.includes !== undefined ? `i\0${fact.group}\0${fact.includes}` : `g\0${fact.group}`
  // One-shot hashing to hex, then BigInt: about five times faster than createHash and Buffer reads.
  return BigInt('0x' + hash('sha256', text, 'hex').slice(0, 32))
}

/** A digest (hex) as an integer; throws on anything else than 32 hex digits. */
export function parseDigest (digest: string): bigint {
  if (!new RegExp(DIGEST_PATTERN).test(digest)) throw new TypeError(`not a policy digest: ${JSON.stringify(digest)}`)
  return BigInt('0x' + digest)
}

/** An integer (taken modulo 2^128) as a digest (hex). */
export function formatDigest (value: bigint): string {
  return BigInt.asUintN(128, value).toString(16).padStart(32, '0')
}

/** `digest` after adding the facts `added` and removing the facts `removed` (each must have been absent / present). */
export function updateDigest (digest: string, added: Iterable<Fact>, removed: Iterable<Fact> = []): string {
  let value = parseDigest(digest)
  for (const fact of added) value += factHash(fact)
  for (const fact of removed) value -= factHash(fact)
  return formatDigest(value)
}

/** The facts of a tenant's groups. */
export function * factsOf (groups: Iterable<GroupData>): Generator<Fact> {
  for (const { name: group, permissions, users, includes = [] } of groups) {
    yield { group }
    for (const permission of permissions) yield { group, permission }
    for (const user of users) yield { group, user }
    for (const included of includes) yield { group, includes: included }
  }
}

/** The digest of a whole tenant, computed from scratch. */
export function digestOf (groups: Iterable<GroupData>): string {
  return updateDigest(EMPTY_DIGEST, factsOf(groups))
}
