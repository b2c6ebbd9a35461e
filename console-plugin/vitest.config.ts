import { defineConfig } from 'vitest/config';
import * as path from 'path';

export default defineConfig({
  test: {
    environment: 'jsdom',
    globals: true,
    include: ['src/**/*.test.{ts,tsx}'],
    setupFiles: ['./src/test-setup.ts'],
    css: false,
    // Two cores shared with other builds: keep the pool small.
    maxWorkers: 2,
  },
  resolve: {
    alias: {
      '@openshift-console/dynamic-plugin-sdk': path.resolve(__dirname, 'src/testing/sdk.tsx'),
    },
  },
  esbuild: { jsx: 'automatic' },
});
