// The system Chromium for browser tests (no browser download): Debian's `chromium` package, or
// UNIFUSION_CHROMIUM, driven headless by playwright-core. The flags keep it quiet on a closed
// network (no background fetches, no component updates, no QUIC) and without a GPU.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/lib/chromium/chromium', '/snap/bin/chromium'];

/** The binary, or undefined with the reason. */
export function findChromium(): { path?: string; why: string } {
  const env = process.env.UNIFUSION_CHROMIUM;
  if (env) return fs.existsSync(env) ? { path: env, why: `UNIFUSION_CHROMIUM=${env}` } : { why: `UNIFUSION_CHROMIUM=${env} does not exist` };
  const found = CANDIDATES.find((p) => fs.existsSync(p));
  return found ? { path: found, why: found } : { why: `no Chromium at ${CANDIDATES.join(', ')} (apt-get install chromium, or set UNIFUSION_CHROMIUM)` };
}

export const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** A headless browser context on a fresh profile folder (--user-data-dir); close() removes the folder. */
export async function launchChromium(executablePath: string): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'unifusion-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: CHROMIUM_FLAGS, timeout: 60_000 });
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
