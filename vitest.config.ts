import { defineConfig } from 'vitest/config';

// Forks, not threads: a native crash takes down one child process, not the runner. The time limits
// are bounds for a hung test, never budgets: on a loaded shared machine (load average 10 and more)
// starting one CLI process can take 20 s, so they are generous; a passing test never waits them out.
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
