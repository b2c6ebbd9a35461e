import { defineConfig } from 'vitest/config';
import * as path from 'path';

export default defineConfig({
  test: {
    environment: 'jsdom',
    globals: true,
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['./src/test-setup.ts'],
    css: false,
    // Two cores shared with other builds: keep the pool small, and give a test typing into the
    // form time (the default 5 s times out under load, on main as well).
    maxWorkers: 2,
    testTimeout: 30_000,
  },
  resolve: {
    alias: {
      '@openshift-console/dynamic-plugin-sdk': path.resolve(__dirname, 'src/testing/sdk.tsx'),
    },
  },
  esbuild: { jsx: 'automatic' },
});
