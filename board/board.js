// The policy board's script: plain browser JavaScript, no framework, no build step. Every request goes
// to the instance serving the page (same origin), so the browser's credentials for it (the host's
// admin protection) come along. Text from the server is only ever set as text, never as HTML.
'use strict'

const state = {
  tenant: null,
  links: { policy: null },
  cluster: null, // AbortController of the cluster stream
  feed: null, // AbortController of the tenant's feed
  group: null,
  cursors: { groups: null, grants: null, members: null },
  lastRevision: 0,
  /** Tenants to pick from: the instance's `GET /tenants` when it has the route, and those it caches. */
  known: new Set()
}
const FEED_ROWS = 100
const $ = (id) => document.getElementById(id)

/** An element with attributes and children (strings become text). */
function el (tag, attrs = {}, ...children) {
  const node = document.createElementNS(tag === 'svg' || attrs.svg ? 'http://www.w3.org/2000/svg' : 'http://www.w3.org/1999/xhtml', tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'svg' || value === undefined || value === null || value === false) continue
    if (key === 'text') node.textContent = value
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value)
    else node.setAttribute(key, value === true ? '' : String(value))
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child)
  return node
}

const ms = (value) => value === null || value === undefined ? '–' : `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`
const age = (value) => value === null || value === undefined ? '–' : value < 1000 ? `${value} ms ago` : `${(value / 1000).toFixed(1)} s ago`
const when = (epoch) => new Date(epoch).toLocaleTimeString(undefined, { hour12: false })

function setLive (text, mode) {
  const live = $('live')
  if (live.textContent !== text) live.textContent = text
  live.className = `live ${mode}`
}

/** Where a policy route is, relative to the page; null without policy routes. */
function policyUrl (path, query = {}) {
  if (state.links.policy === null) return null
  const url = new URL(state.links.policy + path, window.location.href)
  for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== null) url.searchParams.set(key, value)
  return url
}

async function getJson (url) {
  const response = await fetch(url, { headers: { accept: 'application/json' }, cache: 'no-store' })
  const body = await response.json().catch(() => ({}))
  if (!response.ok) throw Object.assign(new Error(body.message ?? `HTTP ${response.status}`), { status: response.status })
  return body
}

/**
 * Reads a Server-Sent Events response with fetch (so that a 404 can be told apart, and credentials
 * go along as with any request), calling `onEvent({ event, data, id })` per event, until it ends.
 */
async function readEvents (url, headers, signal, onEvent) {
  const response = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, cache: 'no-store', signal })
  if (!response.ok || !(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    throw Object.assign(new Error(`HTTP ${response.status}`), { status: response.status })
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffer = (buffer + value).replace(/\r\n?/g, '\n')
    let end
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const message = { event: 'message', data: '', id: null }
      for (const line of block.split('\n')) {
        const colon = line.indexOf(':')
        if (colon === 0) continue
        const field = colon === -1 ? line : line.slice(0, colon)
        const text = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '')
        if (field === 'event') message.event = text
        else if (field === 'data') message.data += (message.data === '' ? '' : '\n') + text
        else if (field === 'id') message.id = text
      }
      onEvent(message)
    }
  }
}

const pause = (delayMs, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, delayMs)
  signal.addEventListener('abort', () => { clearTimeout(timer); resolve() }, { once: true })
})

// ---------------------------------------------------------------------------------------------
// Cluster view

function addTenants (tenants) {
  const before = state.known.size
  for (const tenant of tenants) state.known.add(tenant)
  if (state.known.size === before) return
  $('tenant-list').replaceChildren(...[...state.known].sort().map((tenant) => el('option', { value: tenant })))
}

/** The first page of the instance's tenants (`GET /tenants`); nothing when the route is not there. */
async function listTenants () {
  const url = policyUrl('tenants', { limit: 200 })
  if (url === null) return
  try {
    addTenants((await getJson(url)).tenants.map(({ tenant }) => tenant))
  } catch {
    // An older instance without the route: the tenants it caches are offered.
  }
}

function renderCluster (snapshot) {
  $('self').textContent = snapshot.self
  addTenants(snapshot.tenants.map(({ tenant }) => tenant))

  const live = snapshot.members.filter((member) => member.state !== 'left')
  const summary = [`${live.length} member${live.length === 1 ? '' : 's'}, ${live.filter((m) => m.reachable).length} reporting`]
  if (snapshot.tenant !== null) {
    summary.push(snapshot.newest === null ? `tenant ${snapshot.tenant}: not cached on any member yet` : `tenant ${snapshot.tenant}: newest revision ${snapshot.newest}`)
  } else summary.push('pick a tenant to see each member\'s revision')
  $('cluster-summary').textContent = summary.join(' · ')

  const rows = snapshot.members.map((member) => {
    const name = member.serverId ?? member.url
    const stateText = member.state === 'self' ? 'this instance' : member.state === 'left' ? 'gone (left)' : member.state
    const reach = !member.self && member.state !== 'left' && !member.reachable ? ' · no report' : ''
    const revision = member.revision === null ? (snapshot.tenant === null ? '–' : 'not cached') : String(member.revision)
    return el('tr', { class: member.state === 'left' ? 'left' : null, 'data-server': name, 'data-state': member.state },
      el('th', { scope: 'row' }, el('span', { text: name }), member.url === null ? null : el('div', { class: 'hint', text: member.url })),
      el('td', {}, el('span', { class: `state state-${member.state}`, text: stateText }), reach + (member.closing ? ' · closing' : '')),
      el('td', { text: member.self ? '–' : member.source ?? '–' }),
      el('td', { text: member.incarnation === null ? '–' : member.incarnation.slice(0, 8), title: member.incarnation ?? undefined }),
      el('td', { text: age(member.heartbeatAgeMs) }),
      el('td', { text: member.transport === null ? '–' : `${member.transport.type} (${member.transport.state})` }),
      el('td', { class: 'num', 'data-revision': member.revision ?? '', text: revision }),
      el('td', { class: member.lag > 0 ? 'num behind' : 'num', text: member.lag === null ? '–' : member.lag === 0 ? 'caught up' : `${member.lag} behind` }),
      el('td', { class: 'num', text: member.delivered ?? '–' }),
      el('td', { class: 'num', text: member.failed ?? '–' }),
      el('td', { class: 'num', text: ms(member.latencyMs) }))
  })
  $('members').tBodies[0].replaceChildren(...rows)
  renderChart(snapshot)
}

/** The propagation chart: per recent write, one bar per acknowledging instance (commit → acknowledgement). */
function renderChart (snapshot) {
  const names = new Map(snapshot.members.filter((m) => m.url !== null).map((m) => [m.url, m.serverId ?? m.url]))
  const writes = snapshot.propagation.filter((write) => write.acks.length > 0).slice(0, 8)
  const svg = $('chart')
  const desc = el('desc', { svg: true, id: 'chart-desc' })
  const items = []
  if (writes.length === 0) {
    desc.textContent = 'No acknowledged write yet.'
    svg.replaceChildren(desc)
    svg.setAttribute('height', '40')
    $('chart-list').replaceChildren(el('li', { text: 'No acknowledged write yet: write on any instance and watch it reach the others.' }))
    return
  }
  const max = Math.max(1, ...writes.flatMap((write) => write.acks.map((ack) => ack.ms)))
  const width = Math.max(320, svg.clientWidth || 720)
  const label = 230
  const barHeight = 14
  const shapes = []
  let y = 8
  for (const write of writes) {
    const title = `${write.tenant} @ ${write.revision} on ${write.origin}`
    shapes.push(el('text', { svg: true, x: 0, y: y + 11, text: title }))
    const parts = []
    for (const ack of write.acks) {
      const peer = names.get(ack.peer) ?? ack.peer
      const w = Math.max(2, ((width - label - 150) * ack.ms) / max)
      shapes.push(el('rect', { svg: true, class: 'bar', x: label, y, width: w, height: barHeight - 3, rx: 2 }))
      shapes.push(el('text', { svg: true, x: label + w + 6, y: y + 10, text: `${peer} ${ms(ack.ms)}` }))
      parts.push(`${peer} after ${ms(ack.ms)}`)
      y += barHeight
    }
    items.push(`${title}, ${when(write.at)}: ${parts.join(', ')}`)
    y += 8
  }
  desc.textContent = items.join('. ')
  svg.setAttribute('height', String(y))
  svg.replaceChildren(desc, el('line', { svg: true, class: 'axis', x1: label, x2: label, y1: 0, y2: y }), ...shapes)
  $('chart-list').replaceChildren(...items.map((text) => el('li', { text })))
}

/** Follows the board's own stream of cluster snapshots; reconnects after a second when it ends. */
async function followCluster () {
  state.cluster?.abort()
  const controller = new AbortController()
  state.cluster = controller
  const query = state.tenant === null ? '' : `?tenant=${encodeURIComponent(state.tenant)}`
  while (!controller.signal.aborted) {
    try {
      await readEvents(`api/events${query}`, {}, controller.signal, ({ event, data }) => {
        if (event !== 'cluster') return
        renderCluster(JSON.parse(data))
        setLive('live', 'on')
      })
      if (!controller.signal.aborted) setLive('stream ended; reconnecting…', 'off')
    } catch (err) {
      if (controller.signal.aborted) return
      setLive(err.status === 503 ? 'board busy or instance closing; retrying…' : `disconnected (${err.message}); retrying…`, 'off')
    }
    await pause(1000, controller.signal)
  }
}

// ---------------------------------------------------------------------------------------------
// Tenant view

function showError (container, err) {
  container.replaceChildren(el('p', { class: 'error', text: err.message }))
}

async function loadGroups (more = false) {
  const url = policyUrl(`tenants/${encodeURIComponent(state.tenant)}/groups`, { limit: 50, cursor: more ? state.cursors.groups : undefined })
  const page = await getJson(url)
  const items = page.groups.map((group) => el('li', {},
    el('button', { type: 'button', class: 'link', 'aria-pressed': String(group === state.group), 'data-group': group, onclick: () => selectGroup(group), text: group })))
  if (more) $('groups').append(...items)
  else $('groups').replaceChildren(...items)
  if (!more && page.groups.length === 0) $('groups').replaceChildren(el('li', { class: 'hint', text: 'No groups.' }))
  state.cursors.groups = page.next
  $('groups-more').hidden = page.next === null
  $('tenant-summary').textContent = `Tenant ${state.tenant} at revision ${page.revision} on this instance.`
}

async function loadGroupPart (part, more) {
  const kind = part === 'grants' ? 'permissions' : 'users'
  const list = part === 'grants' ? $('grants') : $('members-of')
  const url = policyUrl(`tenants/${encodeURIComponent(state.tenant)}/groups/${encodeURIComponent(state.group)}/${kind}`, { limit: 50, cursor: more ? state.cursors[part] : undefined })
  const page = await getJson(url)
  const items = page[kind].map((value) => el('li', { text: value }))
  if (more) list.append(...items)
  else list.replaceChildren(...(items.length > 0 ? items : [el('li', { text: 'none' })]))
  state.cursors[part] = page.next
  $(`${part}-more`).hidden = page.next === null
}

async function selectGroup (group) {
  state.group = group
  for (const button of $('groups').querySelectorAll('button')) button.setAttribute('aria-pressed', String(button.dataset.group === group))
  $('group-title').textContent = `Group ${group}`
  $('group-hint').hidden = true
  $('group-detail').hidden = false
  try {
    await Promise.all([loadGroupPart('grants', false), loadGroupPart('members', false)])
  } catch (err) {
    if (err.status === 404) {
      state.group = null
      $('group-title').textContent = 'Group'
      $('group-detail').hidden = true
      $('group-hint').hidden = false
      $('group-hint').textContent = `Group ${group} no longer exists.`
    } else showError($('group-hint'), err)
  }
}

async function lookUpUser (user) {
  const result = $('user-result')
  try {
    const view = await getJson(policyUrl(`tenants/${encodeURIComponent(state.tenant)}/users/${encodeURIComponent(user)}`))
    result.replaceChildren(
      el('p', { text: `${view.user} at revision ${view.revision}` }),
      el('h4', { text: 'Groups' }),
      el('ul', { class: 'chips' }, view.groups.length === 0 ? el('li', { text: 'none' }) : view.groups.map((g) => el('li', { text: g }))),
      el('h4', { text: 'Effective grants' }),
      el('ul', { class: 'chips' }, view.permissions.length === 0 ? el('li', { text: 'none' }) : view.permissions.map((p) => el('li', { text: p }))))
  } catch (err) {
    showError(result, err)
  }
}

async function check (user, permission) {
  const result = $('check-result')
  try {
    const decision = await getJson(policyUrl('check-access', { tenant: state.tenant, user, permission }))
    const parts = [el('p', {},
      el('span', { class: decision.allowed ? 'allowed' : 'denied', text: decision.allowed ? 'Allowed' : 'Denied' }),
      ` — ${user} ${decision.allowed ? 'may' : 'may not'} ${permission} (revision ${decision.revision})`)]
    if (decision.allowed) {
      const holders = await getJson(policyUrl(`tenants/${encodeURIComponent(state.tenant)}/who`, { permission, limit: 1000 }))
      const holder = holders.users.find((entry) => entry.user === user)
      parts.push(el('p', { class: 'hint', text: holder === undefined ? 'Granted through a group not shown here.' : `Why: through ${holder.groups.join(', ')}` }))
    }
    result.replaceChildren(...parts)
  } catch (err) {
    showError(result, err)
  }
}

function describeChange (entry) {
  const one = (change) => [change.operation, change.group, change.permission ?? change.user ?? change.includes].filter(Boolean).join(' ')
  return entry.changes === undefined ? one(entry) : `batch: ${entry.changes.map(one).join('; ')}`
}

function addFeedEntries (entries, fresh) {
  const body = $('feed').tBodies[0]
  for (const entry of entries) {
    if (entry.revision <= state.lastRevision) continue
    state.lastRevision = entry.revision
    const row = el('tr', { class: fresh ? 'fresh' : null, 'data-revision': entry.revision },
      el('td', { class: 'num', text: entry.revision }),
      el('td', { text: describeChange(entry) }),
      el('td', { text: entry.actor ?? '–' }),
      el('td', { text: entry.origin }),
      el('td', { text: when(entry.committedAt) }))
    body.prepend(row)
  }
  while (body.rows.length > FEED_ROWS) body.deleteRow(-1)
}

/** Reads the feed after the last revision shown; true when something new arrived. */
async function readFeed (fresh) {
  const before = state.lastRevision
  let page
  do {
    page = await getJson(policyUrl(`tenants/${encodeURIComponent(state.tenant)}/changes`, { after: state.lastRevision, limit: 100 }))
    addFeedEntries(page.entries, fresh)
  } while (page.entries.length === 100)
  return state.lastRevision > before
}

/** Something changed in the tenant: the lists and panels shown are read again. */
async function refreshTenant () {
  const tasks = [loadGroups(false)]
  if (state.group !== null) tasks.push(selectGroup(state.group))
  const user = $('user-input').value.trim()
  if ($('user-result').childElementCount > 0 && user !== '') tasks.push(lookUpUser(user))
  await Promise.all(tasks)
}

/**
 * Follows the tenant's changes: the watch stream (`GET /tenants/:tenant/watch`) when the instance has
 * it, else the audit feed read every second. Either way the feed itself supplies the rows.
 */
async function followTenant () {
  state.feed?.abort()
  const controller = new AbortController()
  state.feed = controller
  const { signal } = controller
  state.lastRevision = 0
  $('feed').tBodies[0].replaceChildren()
  const first = await getJson(policyUrl(`tenants/${encodeURIComponent(state.tenant)}/changes`, { after: 0, limit: 1 }))
  state.lastRevision = Math.max(0, first.revision - 30, (first.oldestRevision ?? 1) - 1)
  await readFeed(false)
  let watch = true
  while (!signal.aborted) {
    if (watch) {
      try {
        $('feed-source').textContent = 'Live from the watch stream.'
        await readEvents(policyUrl(`tenants/${encodeURIComponent(state.tenant)}/watch`), { 'last-event-id': String(state.lastRevision) }, signal, () => {
          readFeed(true).then((changed) => changed && refreshTenant()).catch(() => {})
        })
      } catch (err) {
        if (signal.aborted) return
        // No watch route on this instance (404): read the feed every second instead.
        if (err.status === 404 || err.status === 405) watch = false
      }
    }
    if (!watch) {
      $('feed-source').textContent = 'Live: the audit feed, read every second.'
      try {
        if (await readFeed(true)) await refreshTenant()
      } catch (err) {
        if (!signal.aborted) $('feed-source').textContent = `Reading the feed failed (${err.message}); retrying.`
      }
    }
    await pause(1000, signal)
  }
}

async function selectTenant (tenant) {
  state.tenant = tenant
  state.group = null
  $('tenant-input').value = tenant
  $('tenant-title').textContent = `Tenant ${tenant}`
  $('group-title').textContent = 'Group'
  $('group-detail').hidden = true
  $('group-hint').hidden = false
  $('group-hint').textContent = 'Select a group to see its grants and members.'
  $('user-result').replaceChildren()
  $('check-result').replaceChildren()
  const url = new URL(window.location.href)
  url.searchParams.set('tenant', tenant)
  window.history.replaceState(null, '', url)
  followCluster()
  if (state.links.policy === null) {
    $('tenant-summary').textContent = 'The policy routes are not mounted on this instance (routes.policy is false).'
    return
  }
  try {
    await loadGroups(false)
    followTenant().catch((err) => { $('feed-source').textContent = `The audit feed is unavailable: ${err.message}` })
  } catch (err) {
    $('tenant-summary').textContent = `Tenant ${tenant}: ${err.message}`
  }
}

// ---------------------------------------------------------------------------------------------
// Navigation and start

function showView () {
  const view = window.location.hash === '#tenant' ? 'tenant' : 'cluster'
  $('cluster').hidden = view !== 'cluster'
  $('tenant').hidden = view !== 'tenant'
  $('nav-cluster').toggleAttribute('aria-current', view === 'cluster')
  $('nav-tenant').toggleAttribute('aria-current', view === 'tenant')
  if (view === 'cluster') $('nav-cluster').setAttribute('aria-current', 'page')
  else $('nav-tenant').setAttribute('aria-current', 'page')
  document.title = `Policy board · ${view === 'cluster' ? 'Cluster' : 'Tenant'}`
}

function start () {
  window.addEventListener('hashchange', () => {
    showView()
    $('main').focus()
  })
  showView()
  $('tenant-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const tenant = $('tenant-input').value.trim()
    if (tenant !== '') selectTenant(tenant)
  })
  $('user-form').addEventListener('submit', (event) => {
    event.preventDefault()
    if (state.tenant !== null) lookUpUser($('user-input').value.trim())
  })
  $('check-form').addEventListener('submit', (event) => {
    event.preventDefault()
    if (state.tenant !== null) check($('check-user').value.trim(), $('check-permission').value.trim())
  })
  $('groups-more').addEventListener('click', () => { loadGroups(true) })
  $('grants-more').addEventListener('click', () => { loadGroupPart('grants', true) })
  $('members-more').addEventListener('click', () => { loadGroupPart('members', true) })

  const tenant = new URL(window.location.href).searchParams.get('tenant')
  getJson(`api/cluster${tenant === null ? '' : `?tenant=${encodeURIComponent(tenant)}`}`).then((snapshot) => {
    state.links = snapshot.links
    renderCluster(snapshot)
    listTenants()
    if (tenant !== null) selectTenant(tenant)
    else followCluster()
  }, (err) => setLive(`cannot read the cluster: ${err.message}`, 'off'))
}

start()
