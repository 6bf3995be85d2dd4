#!/usr/bin/env node
// The `lockstep` executable. Its first statement takes SIGUSR1/SIGUSR2 away from Node's inspector; only
// then is the rest of the program loaded (commands.ts), so no signal finds the process unguarded.
import { guardUserSignals } from './signals.js';
import type { CommandIo } from './io.js';

// Run only as the executable, not when imported (tests import main()).
const invokedAs = process.argv[1] ?? '';
const isExecutable = /[\\/](main\.(js|ts)|lockstep)$/.test(invokedAs);
if (isExecutable) guardUserSignals();

/** Runs the CLI with `argv` (without node and script) and returns the exit status. */
export async function main(argv: string[], io: CommandIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const { dispatch } = await import('./commands.js');
  return dispatch(argv, io);
}

if (isExecutable) {
  // A reader that went away (`lockstep cluster status | head`) ends the output, not the process with a stack.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  main(process.argv.slice(2)).then(
    (status) => {
      process.exitCode = status;
    },
    (err: unknown) => {
      process.stderr.write(`lockstep: ${String(err)}\n`);
      process.exitCode = 70; // EX_SOFTWARE, as EXIT.software (io.ts is not loaded yet when this can happen)
    },
  );
}
