#!/usr/bin/env node
// The CLI as ES modules: main() for tests, and `node dist/cli/main.js` (the `lockstep` executable,
// bin.ts, hands every verb but `run` to main()). Run directly, its first statement takes SIGUSR1/SIGUSR2
// away from Node's inspector; only then is the rest of the program loaded (commands.ts).
import { guardUserSignals } from './signals.js';
import { runAsExecutable } from './executable.js';
import type { CommandIo } from './io.js';

// Run only as `node …/main.js`, not when imported (tests and bin.ts import main()).
const isExecutable = /[\\/]main\.(js|ts)$/.test(process.argv[1] ?? '');
if (isExecutable) guardUserSignals();

/** Runs the CLI with `argv` (without node and script) and returns the exit status. */
export async function main(argv: string[], io: CommandIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const { dispatch } = await import('./commands.js');
  return dispatch(argv, io);
}

if (isExecutable) runAsExecutable(() => main(process.argv.slice(2)));
