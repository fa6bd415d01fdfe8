/**
 * Synthetic tenants shared by the sections: a deterministic shape (users spread over groups, each
 * group with exact and wildcard grants), the same policy for the plugin and for node-casbin, and a
 * fast seeder that bulk-inserts a snapshot into the store's tables.
 */
import type { Kysely } from 'kysely'
import { digestOf } from '../lib/digest.js'
import type { TenantSnapshot } from '../lib/model.js'
import { KyselyPolicyStore } from '../lib/store/index.js'
import { tableNames } from '../lib/store/migrations.js'

export interface TenantShape {
  members: number
  groups: number
  grantsPerGroup: number
}

/** 1 k / 100 k members for the check; small / 10 k rules (grants + memberships) for propagation. */
export const SHAPES = {
  members1k: { members: 1000, groups: 50, grantsPerGroup: 4 },
  members100k: { members: 100000, groups: 50, grantsPerGroup: 4 },
  small: { members: 20, groups: 5, grantsPerGroup: 4 },
  rules10k: { members: 4000, groups: 100, grantsPerGroup: 20 }
} satisfies Record<string, TenantShape>

/** The `k`-th grant of group `g`: mostly exact, every fourth a wildcard. */
function grant (g: number, k: number): string {
  return k % 4 === 3 ? `shared${g % 7}:*` : `res${g}:op${k}`
}

/** Each user belongs to two groups. */
export function groupsOf (user: number, shape: TenantShape): number[] {
  const a = user % shape.groups
  const b = (user * 7 + 3) % shape.groups
  return a === b ? [a] : [a, b]
}

export function snapshotOf (shape: TenantShape, revision = 1): TenantSnapshot {
  const groups = Array.from({ length: shape.groups }, (_, g) => ({
    name: `g${g}`,
    permissions: Array.from({ length: shape.grantsPerGroup }, (_, k) => grant(g, k)),
    users: [] as string[]
  }))
  for (let u = 0; u < shape.members; u++) {
    for (const g of groupsOf(u, shape)) groups[g].users.push(`u${u}`)
  }
  const unique = groups.map((group) => ({ ...group, permissions: [...new Set(group.permissions)] }))
  return { revision, groups: unique, digest: digestOf(unique) }
}

/** `count` (user, permission) pairs: a third allowed exactly, a third through a wildcard, a third denied. */
export function checkWorkload (shape: TenantShape, count: number): { users: string[], permissions: string[] } {
  const users: string[] = []
  const permissions: string[] = []
  for (let i = 0; i < count; i++) {
    const u = (i * 7919) % shape.members
    const g = groupsOf(u, shape)[0]
    users.push(`u${u}`)
    if (i % 3 === 0) permissions.push(`res${g}:op0`)
    else if (i % 3 === 1) permissions.push(`shared${g % 7}:items:view`)
    else permissions.push(`admin:delete:x${i % 10}`)
  }
  return { users, permissions }
}

/** node-casbin's RBAC with domains, wildcards through keyMatch: the model a user would reach for. */
export const CASBIN_MODEL = `
[request_definition]
r = sub, dom, obj

[policy_definition]
p = sub, dom, obj

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && keyMatch(r.obj, p.obj)
`

/** The same tenant as casbin rules: `p` (group, tenant, grant) and `g` (user, group, tenant). */
export function casbinRules (tenant: string, snapshot: TenantSnapshot): { p: string[][], g: string[][] } {
  const p: string[][] = []
  const g: string[][] = []
  for (const group of snapshot.groups) {
    for (const permission of group.permissions) p.push([group.name, tenant, permission])
    for (const user of group.users) g.push([user, group.name, tenant])
  }
  return { p, g }
}

/** casbin's policy file format for the rules. */
export function casbinCsv (rules: { p: string[][], g: string[][] }): string {
  return [...rules.p.map((r) => `p, ${r.join(', ')}`), ...rules.g.map((r) => `g, ${r.join(', ')}`)].join('\n') + '\n'
}

/**
 * Migrates the store's tables under `prefix` and bulk-inserts the tenant at `snapshot.revision`
 * (no changelog rows: the tenant is "as if" written long ago). Much faster than one write per row.
 */
export async function seedTenant (db: Kysely<any>, prefix: string, tenant: string, snapshot: TenantSnapshot): Promise<void> {
  const store = new KyselyPolicyStore({ db, tablePrefix: prefix })
  await store.migrate()
  const t = tableNames(prefix)
  const insert = async (table: string, rows: Array<Record<string, unknown>>): Promise<void> => {
    for (let i = 0; i < rows.length; i += 2000) await db.insertInto(table).values(rows.slice(i, i + 2000)).execute()
  }
  await db.transaction().execute(async (trx) => {
    await trx.deleteFrom(t.tenants).where('tenant', '=', tenant).execute()
    await trx.insertInto(t.tenants).values({ tenant, revision: snapshot.revision, digest: snapshot.digest }).execute()
  })
  await insert(t.groups, snapshot.groups.map((g) => ({ tenant, name: g.name })))
  await insert(t.grants, snapshot.groups.flatMap((g) => g.permissions.map((permission) => ({ tenant, group_name: g.name, permission }))))
  await insert(t.members, snapshot.groups.flatMap((g) => g.users.map((user) => ({ tenant, group_name: g.name, user_id: user }))))
  await insert(t.inclusions, snapshot.groups.flatMap((g) => (g.includes ?? []).map((includes) => ({ tenant, group_name: g.name, includes }))))
}
