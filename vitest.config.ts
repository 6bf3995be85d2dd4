import { defineConfig } from 'vitest/config';

// Forks, not threads: a native crash takes down one child process, not the runner.
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
