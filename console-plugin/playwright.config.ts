// Browser tests: Debian's Chromium (never a downloaded browser) drives the harness page, whose
// SDK calls reach the real API server through `kubectl proxy` (see tests/browser/global-setup.ts).
import { defineConfig } from '@playwright/test';

export const CHROMIUM = process.env.STRATA_CHROMIUM ?? '/usr/bin/chromium';

export default defineConfig({
  testDir: './tests/browser',
  outputDir: './test-results/playwright',
  globalSetup: './tests/browser/global-setup.ts',
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [['list']],
  use: {
    headless: true,
    testIdAttribute: 'data-test',
    viewport: { width: 1280, height: 900 },
    screenshot: 'only-on-failure',
    trace: 'off',
    launchOptions: { executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] },
  },
});
