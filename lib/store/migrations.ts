/**
 * The store's schema, as inline kysely migrations. Never edit a released migration; add one.
 */
import { randomUUID } from 'node:crypto'
import { sql, type CreateTableBuilder, type Kysely, type Migration } from 'kysely'
import { EMPTY_DIGEST, factHash, formatDigest } from '../digest.js'
import type { Dialect } from './dialect.js'
import { membershipMigration } from './membership-migration.js'

/** The store's table names, all carrying the configured prefix. */
export interface TableNames {
  tenants: string
  groups: string
  grants: string
  members: string
  /** The role hierarchy (0007): one row per inclusion, `group_name` includes `includes`. */
  inclusions: string
  changelog: string
  /** Name → value: the database id (`database_id`). */
  meta: string
  migrations: string
  migrationsLock: string
  /** Membership (0003): one row per instance. */
  instances: string
  /** Membership (0003): the one version row. */
  membership: string
}

/** The table names for a prefix. */
export function tableNames (prefix: string): TableNames {
  return {
    tenants: `${prefix}tenants`,
    groups: `${prefix}groups`,
    grants: `${prefix}grants`,
    members: `${prefix}members`,
    inclusions: `${prefix}inclusions`,
    changelog: `${prefix}changelog`,
    meta: `${prefix}meta`,
    migrations: `${prefix}migrations`,
    migrationsLock: `${prefix}migrations_lock`,
    instances: `${prefix}instances`,
    membership: `${prefix}membership`
  }
}

/**
 * Column types. Identifiers and permissions are ASCII (the model's patterns) and case-sensitive:
 * on MySQL they get `ascii_bin`, which also keeps the composite keys under InnoDB's 3072-byte limit.
 */
function columnTypes (dialect: Dialect) {
  const ascii = (length: number) => dialect === 'mysql'
    ? sql`varchar(${sql.lit(length)}) character set ascii collate ascii_bin`
    : sql`varchar(${sql.lit(length)})`
  return {
    identifier: ascii(128),
    permission: ascii(256),
    op: ascii(32),
    digest: ascii(32),
    origin: dialect === 'mysql' ? sql`varchar(255) character set utf8mb4 collate utf8mb4_bin` : sql`varchar(255)`
  }
}

/** Every migration of the store, by name (applied in name order). */
export function storeMigrations (tables: TableNames, dialect: Dialect): Record<string, Migration> {
  const type = columnTypes(dialect)
  const createTable = (db: Kysely<any>, name: string): CreateTableBuilder<string, never> => {
    const builder = db.schema.createTable(name)
    return dialect === 'mysql' ? builder.modifyEnd(sql`engine = InnoDB`) : builder
  }

  return {
    '0001-initial': {
      async up (db) {
        await createTable(db, tables.tenants)
          .addColumn('tenant', type.identifier, (col) => col.notNull().primaryKey())
          .addColumn('revision', 'bigint', (col) => col.notNull())
          .execute()
        await createTable(db, tables.groups)
          .addColumn('tenant', type.identifier, (col) => col.notNull())
          .addColumn('name', type.identifier, (col) => col.notNull())
          .addPrimaryKeyConstraint(`${tables.groups}_pk`, ['tenant', 'name'])
          .execute()
        await createTable(db, tables.grants)
          .addColumn('tenant', type.identifier, (col) => col.notNull())
          .addColumn('group_name', type.identifier, (col) => col.notNull())
          .addColumn('permission', type.permission, (col) => col.notNull())
          .addPrimaryKeyConstraint(`${tables.grants}_pk`, ['tenant', 'group_name', 'permission'])
          .execute()
        await createTable(db, tables.members)
          .addColumn('tenant', type.identifier, (col) => col.notNull())
          .addColumn('group_name', type.identifier, (col) => col.notNull())
          .addColumn('user_id', type.identifier, (col) => col.notNull())
          .addPrimaryKeyConstraint(`${tables.members}_pk`, ['tenant', 'group_name', 'user_id'])
          .execute()
        await db.schema.createIndex(`${tables.members}_user`)
          .on(tables.members)
          .columns(['tenant', 'user_id'])
          .execute()
        await createTable(db, tables.changelog)
          .addColumn('tenant', type.identifier, (col) => col.notNull())
          .addColumn('revision', 'bigint', (col) => col.notNull())
          .addColumn('op', type.op, (col) => col.notNull())
          .addColumn('group_name', type.identifier, (col) => col.notNull())
          .addColumn('permission', type.permission)
          .addColumn('user_id', type.identifier)
          .addColumn('origin', type.origin, (col) => col.notNull())
          .addColumn('created_at', 'bigint', (col) => col.notNull())
          .addPrimaryKeyConstraint(`${tables.changelog}_pk`, ['tenant', 'revision'])
          .execute()
      }
    },
    // The digest of each tenant's contents (lib/digest.ts), computed here for the tenants that exist
    // (one pass over their rows, under the migration lock), and the database's id.
    '0002-digest-and-database-id': {
      async up (db) {
        await db.schema.alterTable(tables.tenants)
          .addColumn('digest', type.digest, (col) => col.notNull().defaultTo(EMPTY_DIGEST))
          .execute()
        await createTable(db, tables.meta)
          .addColumn('name', type.op, (col) => col.notNull().primaryKey())
          .addColumn('value', type.identifier, (col) => col.notNull())
          .execute()
        await db.insertInto(tables.meta).values({ name: DATABASE_ID, value: randomUUID() }).execute()

        const digests = new Map<string, bigint>()
        const add = (tenant: string, hash: bigint) => digests.set(tenant, (digests.get(tenant) ?? 0n) + hash)
        for (const row of await db.selectFrom(tables.groups).select(['tenant', 'name']).execute()) {
          add(row.tenant, factHash({ group: row.name }))
        }
        for (const row of await db.selectFrom(tables.grants).select(['tenant', 'group_name', 'permission']).execute()) {
          add(row.tenant, factHash({ group: row.group_name, permission: row.permission }))
        }
        for (const row of await db.selectFrom(tables.members).select(['tenant', 'group_name', 'user_id']).execute()) {
          add(row.tenant, factHash({ group: row.group_name, user: row.user_id }))
        }
        for (const [tenant, value] of digests) {
          await db.updateTable(tables.tenants).set({ digest: formatDigest(value) }).where('tenant', '=', tenant).execute()
        }
      }
    },
    '0003-membership': membershipMigration(tables, dialect),
    // A batch write's changes, as JSON, on its one changelog entry (op 'batch'; group_name '').
    '0004-batch-changes': {
      async up (db) {
        await db.schema.alterTable(tables.changelog)
          .addColumn('changes', dialect === 'mysql' ? sql`longtext` : 'text')
          .execute()
      }
    },
    // The audit feed: when each entry was written (epoch ms, the database's clock) and by whom. Rows
    // written before get `committed_at` = `created_at` (the writing instance's clock, the best there
    // is) and a null actor. Nullable: adding a NOT NULL column to a filled table differs per dialect.
    '0005-audit': {
      async up (db) {
        await db.schema.alterTable(tables.changelog).addColumn('committed_at', 'bigint').execute()
        await db.schema.alterTable(tables.changelog).addColumn('actor', type.origin).execute()
        await db.updateTable(tables.changelog).set({ committed_at: sql.ref('created_at') }).where('committed_at', 'is', null).execute()
      }
    },
    // Tenant lifecycle: a deleted tenant keeps its row (its revision, so that a tenant created again
    // under the same id goes on from there and no instance mistakes it for an older state), flagged
    // here until its next effective write. 1: deleted; 0: exists (when its revision is above 0).
    '0006-tenant-lifecycle': {
      async up (db) {
        await db.schema.alterTable(tables.tenants)
          .addColumn('deleted', 'integer', (col) => col.notNull().defaultTo(0))
          .execute()
      }
    },
    // The role hierarchy: one row per inclusion (members of `group_name` hold the grants of
    // `includes`), indexed both ways (deleting a group removes the inclusions naming it on either
    // side), and the changelog column naming the included group of include-group / exclude-group.
    '0007-role-hierarchy': {
      async up (db) {
        await createTable(db, tables.inclusions)
          .addColumn('tenant', type.identifier, (col) => col.notNull())
          .addColumn('group_name', type.identifier, (col) => col.notNull())
          .addColumn('includes', type.identifier, (col) => col.notNull())
          .addPrimaryKeyConstraint(`${tables.inclusions}_pk`, ['tenant', 'group_name', 'includes'])
          .execute()
        await db.schema.createIndex(`${tables.inclusions}_includes`)
          .on(tables.inclusions)
          .columns(['tenant', 'includes'])
          .execute()
        await db.schema.alterTable(tables.changelog).addColumn('includes', type.identifier).execute()
      }
    }
  }
}

/** The `meta` row holding the database id. */
export const DATABASE_ID = 'database_id'
