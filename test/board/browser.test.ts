/**
 * The policy board in a real browser: Debian's Chromium (playwright-core) against three example-server
 * processes sharing one SQLite file, with ADMIN_TOKEN set (the browser gives it as HTTP Basic).
 *
 * The board opened on instance 3 lists all three; a write on instance 1 appears on it without a
 * reload (cluster view and tenant view); a stopped instance shows as gone; the views pass axe-core
 * and work from the keyboard; a screenshot of each view is saved (into docs/ with
 * UPDATE_SCREENSHOTS=1, the README's pictures).
 *
 * Bounded: every wait has a deadline, the file has tap's timeout, and teardown closes Chromium and
 * the servers whatever failed.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import tap from 'tap'
import type { Page } from 'playwright-core'
import { startCluster, waitHealthy } from '../../examples/demo.js'
import { haveChromium, launchChromium } from '../helpers/browser.js'

tap.setTimeout(240000)

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')
const TOKEN = randomBytes(24).toString('base64url')
const TENANT = 'acme'
const WAIT = { timeout: 20000 }

/** A POST with the admin token (the example server's ADMIN_TOKEN). */
async function write (url: string, route: string, body: object): Promise<{ revision: number }> {
  const res = await fetch(`${url}/${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ tenant: TENANT, ...body }),
    signal: AbortSignal.timeout(5000)
  })
  if (res.status !== 200) throw new Error(`POST ${route} answered ${res.status}: ${await res.text()}`)
  return await res.json() as { revision: number }
}

/** axe-core's violations on the page as it is now (WCAG 2.1 A and AA rules, and best practices). */
async function violations (page: Page): Promise<Array<{ id: string, help: string, nodes: unknown[] }>> {
  // Evaluated through the DevTools protocol: the board's CSP (script-src 'self') is not in its way.
  await page.evaluate(AXE)
  return await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (context: Document, options: object) => Promise<{ violations: Array<{ id: string, help: string, nodes: unknown[] }> }> } }).axe
    const result = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } })
    return result.violations.map(({ id, help, nodes }) => ({ id, help, nodes: nodes.map((node) => (node as { html: string }).html) }))
  })
}

tap.test('the board in Chromium against three instances', async (t) => {
  if (!haveChromium(t)) return
  const screenshots = process.env.UPDATE_SCREENSHOTS === '1' ? join(ROOT, 'docs') : mkdtempSync(join(tmpdir(), 'policy-board-shots-'))

  const cluster = await startCluster({ env: { ADMIN_TOKEN: TOKEN, ACK_TIMEOUT_MS: '1000', MEMBERSHIP_POLL_MS: '200' } })
  t.teardown(async () => { await cluster.stop() })
  const browser = await launchChromium()
  t.teardown(async () => { await browser.close().catch(() => {}) })
  await waitHealthy(cluster, 120000)
  const [s1, s2, s3] = cluster.instances

  // Refused without the admin token, like the policy routes.
  const open = await fetch(`${s3.url}/policy-board/`)
  t.equal(open.status, 401, 'the board is behind ADMIN_TOKEN')
  t.match(open.headers.get('www-authenticate'), /Basic realm/, 'a browser is asked for Basic credentials')

  // A policy written on instance 1 before the board opens; instance 1 caches the tenant (a write
  // applies to a cached tenant, it loads none).
  const view = await fetch(`${s1.url}/tenants/${TENANT}`, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(view.status, 200)
  await write(s1.url, 'create-group', { group: 'editors' })
  await write(s1.url, 'add-permission', { group: 'editors', permission: 'documents:*' })
  await write(s1.url, 'assign-user', { group: 'editors', user: 'alice' })
  await write(s1.url, 'create-group', { group: 'viewers' })
  await write(s1.url, 'add-permission', { group: 'viewers', permission: 'documents:read' })
  // A tenant instance 3 does not cache: offered all the same, from GET /tenants.
  await write(s1.url, 'create-group', { tenant: 'globex', group: 'staff' })

  const context = await browser.newContext({ httpCredentials: { username: 'admin', password: TOKEN }, viewport: { width: 1280, height: 860 } })
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT.timeout)
  const errors: string[] = []
  page.on('pageerror', (err) => errors.push(err.message))

  await t.test('the cluster view lists all three, live', async (t) => {
    await page.goto(`${s3.url}/policy-board?tenant=${TENANT}`)
    t.equal(new URL(page.url()).pathname, '/policy-board/', 'redirected to the page')
    // Every member reports; the writer and this instance cache the tenant at revision 5.
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#members tbody tr')]
      return rows.length === 3 && rows.every((row) => !(row.textContent ?? '').includes('no report')) &&
        document.querySelector('#live')?.textContent === 'live'
    }, undefined, WAIT)
    const servers = await page.$$eval('#members tbody tr', (rows) => rows.map((row) => (row as HTMLElement).dataset.server))
    t.same(servers.sort(), ['server-1', 'server-2', 'server-3'], 'the three members')
    t.equal(await page.$eval('#self', (node) => node.textContent), 'server-3', 'served by instance 3')
    t.equal(await page.$eval('#members tr[data-server="server-3"]', (row) => (row as HTMLElement).dataset.state), 'self')
    await page.waitForSelector('#members tr[data-server="server-1"] td[data-revision="5"]')
    await page.waitForSelector('#tenant-list option[value="globex"]', { state: 'attached' })
    t.same(await page.$$eval('#tenant-list option', (options) => options.map((o) => (o as HTMLOptionElement).value)), ['acme', 'globex'], 'the tenants to pick from (GET /tenants)')

    // A write on instance 1 reaches the board on instance 3 without a reload.
    await write(s1.url, 'assign-user', { group: 'viewers', user: 'bob' })
    await page.waitForSelector('#members tr[data-server="server-1"] td[data-revision="6"]')
    await page.waitForSelector('#members tr[data-server="server-3"] td[data-revision="6"]')
    await page.waitForFunction(() => /acme @ 6 on server-1, [0-9:]+: .*server-3 after/.test(document.querySelector('#chart-list')?.textContent ?? ''), undefined, WAIT)
    t.pass('the write on instance 1 shows on instance 3\'s board: revisions and its propagation')

    t.same(await violations(page), [], 'no accessibility violation (axe-core)')
    await page.screenshot({ path: join(screenshots, 'board-cluster.png'), fullPage: true })
  })

  await t.test('the tenant view from the keyboard, updated live', async (t) => {
    // Keyboard: the skip link first, then the views; Enter on "Tenant" shows the tenant view.
    await page.keyboard.press('Tab')
    t.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content', 'the skip link comes first')
    await page.keyboard.press('Tab')
    await page.keyboard.press('Tab')
    t.equal(await page.evaluate(() => document.activeElement?.id), 'nav-tenant')
    await page.keyboard.press('Enter')
    await page.waitForSelector('#tenant:not([hidden])')
    t.equal(await page.$eval('#nav-tenant', (node) => node.getAttribute('aria-current')), 'page')

    await page.waitForSelector('#groups button[data-group="viewers"]')
    await page.focus('#groups button[data-group="viewers"]')
    await page.keyboard.press('Enter')
    await page.waitForFunction(() => document.querySelector('#members-of')?.textContent === 'bob', undefined, WAIT)
    t.equal(await page.$eval('#grants', (node) => node.textContent), 'documents:read', 'the group\'s grants')

    // The tester, from the keyboard.
    await page.focus('#check-user')
    await page.keyboard.type('alice')
    await page.keyboard.press('Tab')
    await page.keyboard.type('documents:write')
    await page.keyboard.press('Enter')
    await page.waitForSelector('#check-result .allowed')
    t.match(await page.$eval('#check-result', (node) => node.textContent), /Why: through editors/, 'why: the group')

    await page.fill('#user-input', 'bob')
    await page.press('#user-input', 'Enter')
    await page.waitForFunction(() => (document.querySelector('#user-result')?.textContent ?? '').includes('documents:read'), undefined, WAIT)

    // A write on instance 1: the audit feed, the group's members and the user's view follow.
    await write(s1.url, 'assign-user', { group: 'viewers', user: 'carol' })
    await page.waitForSelector('#feed tr[data-revision="7"]')
    t.match(await page.$eval('#feed tr[data-revision="7"]', (row) => row.textContent), /assign-user viewers carol.*server-1/, 'the feed names the change and its instance')
    await page.waitForFunction(() => document.querySelector('#members-of')?.textContent === 'bobcarol', undefined, WAIT)
    t.pass('the group\'s members updated without a reload')

    t.same(await violations(page), [], 'no accessibility violation (axe-core)')
    await page.screenshot({ path: join(screenshots, 'board-tenant.png'), fullPage: true })
  })

  await t.test('a stopped instance shows as gone', async (t) => {
    await page.click('#nav-cluster')
    s2.child.kill('SIGTERM')
    t.equal(await s2.exited, 0, 'server-2 stopped gracefully')
    await page.waitForSelector('#members tr[data-server="server-2"][data-state="left"]')
    t.match(await page.$eval('#members tr[data-server="server-2"]', (row) => row.textContent), /gone \(left\)/)
    t.equal(await page.$$eval('#members tbody tr', (rows) => rows.length), 3, 'still listed, as gone')
  })

  t.same(errors, [], 'no script error on the page')
  t.comment(`screenshots in ${screenshots}`)
  await context.close()
})
