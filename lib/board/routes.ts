/**
 * The policy board's routes (README "Policy board"): the page and its two assets, shipped in the
 * package's `board/` folder (plain HTML, CSS and a script; no build step, nothing from a CDN), a
 * snapshot of the cluster, the live stream of snapshots (Server-Sent Events), and — in a context of
 * its own, outside the host's route hooks — the signed report each instance gives the others.
 */
import { readFileSync } from 'node:fs'
import type { FastifyInstance, FastifySchema } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { UnauthorizedWebhookError } from '../errors.js'
import { closed, ErrorReply, Nullable, Tenant, TransportState, TransportType, validatorCompiler } from '../routes/schemas.js'
import { IDENTIFIER_PATTERN } from '../model.js'
import { WEBHOOK_HEADERS } from '../broadcast/signature.js'
import type { BoardHub } from './hub.js'

/** The folder of the board's page and assets: `board/` at the package's root (beside `lib/` and `dist/`). */
export const ASSETS = new URL('../../board/', import.meta.url)

/** The files served, with their content types. */
const FILES = {
  'index.html': 'text/html; charset=utf-8',
  'board.css': 'text/css; charset=utf-8',
  'board.js': 'text/javascript; charset=utf-8'
} as const

/** Everything the page loads comes from this instance; nothing inline, no other origin. */
const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const BoardQuery = Type.Object({ tenant: Type.Optional(Tenant) }, closed)
const ID = IDENTIFIER_PATTERN.slice(1, -1)
const MemberQuery = Type.Object({
  tenants: Type.String({ pattern: `^(${ID}(,${ID})*)?$`, maxLength: 1000 * 129, description: 'Comma-separated tenant ids' })
}, closed)

const Count = Type.Integer({ minimum: 0 })
const MemberTransport = Type.Object({ type: TransportType, state: TransportState }, closed)
const Propagation = Type.Array(Type.Object({
  origin: Type.String(),
  tenant: Type.String(),
  revision: Count,
  at: Type.Number(),
  acks: Type.Array(Type.Object({ peer: Type.String(), ms: Type.Number({ minimum: 0 }) }, closed))
}, closed))

/** `api/member`'s reply (`MemberReport`). */
export const MemberReply = Type.Object({
  serverId: Type.String(),
  incarnation: Nullable(Type.String()),
  uptimeMs: Count,
  closing: Type.Boolean(),
  transport: MemberTransport,
  revisions: Type.Record(Type.String(), Nullable(Count)),
  propagation: Propagation
}, closed)

/** `api/cluster`'s reply (`BoardSnapshot` and the page's links). */
export const ClusterReply = Type.Object({
  at: Type.Number(),
  self: Type.String(),
  tenant: Nullable(Type.String()),
  newest: Nullable(Count),
  members: Type.Array(Type.Object({
    serverId: Nullable(Type.String()),
    url: Nullable(Type.String()),
    self: Type.Boolean(),
    state: Type.Union([Type.Literal('self'), Type.Literal('up'), Type.Literal('down'), Type.Literal('unknown'), Type.Literal('gone'), Type.Literal('left')]),
    reachable: Type.Boolean(),
    source: Nullable(Type.Union([Type.Literal('static'), Type.Literal('membership'), Type.Literal('both')])),
    incarnation: Nullable(Type.String()),
    heartbeatAgeMs: Nullable(Count),
    delivered: Nullable(Count),
    failed: Nullable(Count),
    latencyMs: Nullable(Type.Number({ minimum: 0 })),
    transport: Nullable(MemberTransport),
    uptimeMs: Nullable(Count),
    closing: Type.Boolean(),
    revision: Nullable(Count),
    lag: Nullable(Count)
  }, closed)),
  propagation: Propagation,
  tenants: Type.Array(Type.Object({ tenant: Type.String(), revision: Count }, closed)),
  links: Type.Object({ policy: Nullable(Type.String()) }, closed)
}, closed)

export interface BoardRoutesOptions {
  hub: BoardHub
  /** The board's path under the register prefix (`/policy-board`). */
  path: string
  /**
   * Where the page finds the policy routes, relative to itself (`../`, `../admin/`), or null when they
   * are not mounted (the tenant view then says so).
   */
  policy: string | null
}

/** Relative URL from the page (`<path>/`) back to the register prefix's root. */
export function rootFrom (path: string): string {
  return '../'.repeat(path.split('/').length - 1)
}

export async function boardRoutes (fastify: FastifyInstance, { hub, path, policy }: BoardRoutesOptions): Promise<void> {
  const files = Object.fromEntries(Object.keys(FILES).map((name) => [name, readFileSync(new URL(name, ASSETS))]))
  fastify.setValidatorCompiler(validatorCompiler)
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const hidden = { hide: true, tags: ['board'] }
  // OpenAPI keywords only (no validation): a plain object, so Fastify's schema type takes it as is.
  const described = (summary: string): FastifySchema => ({ ...hidden, summary }) as FastifySchema

  // `<path>` → `<path>/` (query kept), relatively: the page's own links are relative to its folder.
  app.get(path, { schema: described('The policy board (redirects to the page)') }, async (request, reply) => {
    const query = request.url.indexOf('?')
    return reply.redirect(`${path.slice(path.lastIndexOf('/') + 1)}/${query === -1 ? '' : request.url.slice(query)}`, 302)
  })

  for (const [name, type] of Object.entries(FILES)) {
    const url = name === 'index.html' ? `${path}/` : `${path}/${name}`
    app.get(url, { schema: described(`The policy board's ${name}`) }, async (_request, reply) => reply
      .type(type)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', CONTENT_SECURITY_POLICY)
      .send(files[name]))
  }

  app.get(`${path}/api/cluster`, {
    schema: {
      ...hidden,
      summary: 'The cluster as this instance sees it',
      description: 'Every member with its state and the revision it answers `tenant` from, the latest writes\' propagation, and where the page finds the policy routes.',
      querystring: BoardQuery,
      response: { 200: ClusterReply, '4xx': ErrorReply }
    }
  }, async (request) => ({ ...await hub.snapshot(request.query.tenant ?? null), links: { policy } }))

  app.get(`${path}/api/events`, {
    schema: {
      ...hidden,
      summary: 'The cluster, live',
      description: 'Server-Sent Events: a `cluster` event with a snapshot (as `api/cluster`) at once and every second. At most board.maxStreams at once: 503 FST_POLICY_CACHE_BOARD_BUSY beyond, and during a shutdown.',
      querystring: BoardQuery,
      response: { '4xx': ErrorReply, '5xx': ErrorReply }
    }
  }, (request, reply) => {
    const { raw } = reply
    // Throws (a coded 503, answered as usual) before anything is written.
    const close = hub.open(request.query.tenant ?? null,
      (snapshot) => { raw.write(`event: cluster\ndata: ${JSON.stringify(snapshot)}\n\n`) },
      () => { raw.end() })
    reply.hijack()
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-accel-buffering': 'no'
    })
    raw.write(': policy board\n\n')
    request.raw.once('close', close)
  })
}

/** `GET <path>/api/member`: this instance's report, for the instance serving a board; signed with the webhook keys. */
export async function boardMemberRoute (fastify: FastifyInstance, { hub, path }: Pick<BoardRoutesOptions, 'hub' | 'path'>): Promise<void> {
  fastify.setValidatorCompiler(validatorCompiler)
  fastify.withTypeProvider<TypeBoxTypeProvider>().get(`${path}/api/member`, {
    schema: {
      hide: true,
      querystring: MemberQuery,
      response: { 200: MemberReply, '4xx': ErrorReply }
    }
  }, async (request) => {
    const header = (name: string): string | undefined => {
      const value = request.headers[name]
      return typeof value === 'string' ? value : undefined
    }
    const { tenants } = request.query
    const headers = { id: header(WEBHOOK_HEADERS.id), timestamp: header(WEBHOOK_HEADERS.timestamp), signature: header(WEBHOOK_HEADERS.signature) }
    if (!hub.verify(headers, tenants)) throw new UnauthorizedWebhookError()
    return hub.report(tenants === '' ? [] : tenants.split(','))
  })
}
