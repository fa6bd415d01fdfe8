/**
 * Debian's Chromium driven by playwright-core (no browser download): headless, no sandbox (root in a
 * container), background networking off (its connections are refused here). Playwright gives each
 * launch a fresh temporary profile (`--user-data-dir`) and removes it on close. Missing Chromium is a
 * skip locally and a failure under CI=true (.ci/run installs it).
 */
import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'
import type { Test } from 'tap'

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'
]

/** Whether Chromium is there; otherwise fails (CI) or skips the test `t`, saying why. */
export function haveChromium (t: Test): boolean {
  if (existsSync(CHROMIUM)) return true
  const message = `Chromium not found at ${CHROMIUM} (apt-get install -y chromium)`
  if (process.env.CI === 'true') t.fail(`${message}, and CI=true requires it`)
  else t.skip(message, () => {})
  return false
}

/** Launches Chromium (within 60 s); close it with `browser.close()` in a `t.teardown`, so a failed test closes it too. */
export async function launchChromium (): Promise<Browser> {
  return await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60000 })
}
