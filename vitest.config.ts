import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

// Forks, not threads: a native crash takes down one child process, not the runner. The time limits
// are bounds for a hung test, never budgets: on a loaded shared machine (load average 10 and more)
// starting one CLI process can take 20 s, so they are generous; a passing test never waits them out.
// Two test files at once even on two cores (vitest would run one): most files wait on child processes,
// sockets and guests, and every test must hold on a loaded machine anyway. At most four, so a large
// host does not start dozens of FT pairs and clusters at the same time.
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    maxWorkers: Math.min(4, Math.max(2, availableParallelism())),
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
