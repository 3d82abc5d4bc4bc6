// Debian's Chromium, headless, through playwright-core (which brings no browser of its own).

import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

/** Where screenshots are kept (git-ignored; CI keeps them as the run's artefacts). */
export const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), '..', 'artifacts');

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.PALAVER_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: FLAGS,
  });
}

/**
 * A page that records what the browser reports as errors (script errors, CSP violations, failed loads), so
 * a test can assert there were none.
 */
export async function openPage(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.problems = [];
  page.on('pageerror', (error) => page.problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') page.problems.push(`console error: ${message.text()}`);
  });
  return page;
}

let shots = 0;
/** Saves a full-page screenshot named after the step. */
export async function screenshot(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  shots += 1;
  const file = join(ARTIFACTS, `${String(shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
