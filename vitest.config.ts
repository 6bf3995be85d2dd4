import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

// Forks, not threads: a native crash takes down one child process, not the runner. The time limits
// are bounds for a hung test, never budgets: on a loaded shared machine (load average 10 and more)
// starting one CLI process can take 20 s, so they are generous; a passing test never waits them out.
// Three test files at once even on two cores (vitest would run one): most files wait on child
// processes, sockets, timers and guests (a full run on two cores kept the test processes about one core
// busy with three files at a time), and every test must hold on a loaded machine anyway. At most four,
// so a large host does not start dozens of FT pairs and clusters at the same time.
// No isolation between the files a worker runs: each file still gets its own module instance of the
// test file, but a worker imports the sources once rather than once per file (importing them was a third
// of the CPU time of the small test files). No test mocks modules, stubs globals or changes the
// process's environment or directory, so there is nothing to leak from one file into the next.
export default defineConfig({
  test: {
    pool: 'forks',
    isolate: false,
    include: ['test/**/*.test.ts'],
    maxWorkers: Math.min(4, Math.max(3, availableParallelism())),
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
