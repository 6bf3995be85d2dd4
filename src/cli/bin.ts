#!/usr/bin/env node
// The `lockstep` executable, built into one CommonJS file (dist/cli/lockstep.cjs, by build-bin.mjs) so
// that `lockstep run` reaches the guest without Node's ES module loader, whose start and per-file cost
// were most of what the CLI added to Node's own. Every other verb goes to main.ts's ES modules.
import { guardUserSignals } from './signals.js';
import { runAsExecutable } from './executable.js';

// The first statement: SIGUSR1 would open Node's inspector. main.ts's copy of signals.ts shares this guard.
guardUserSignals();
const argv = process.argv.slice(2);
if (argv[0] === 'run') {
  // Bundled into lockstep.cjs (run.ts and everything it loads, --gdb and --net included): this process
  // loads no second copy of errors.ts or args.ts whose classes verb.ts would not recognise.
  runAsExecutable(async () => {
    const [{ runVerb }, { runCommand }] = await Promise.all([import('./verb.js'), import('./run.js')]);
    return runVerb('run', async () => runCommand, argv.slice(1), { stdout: process.stdout, stderr: process.stderr });
  });
} else {
  // Left as an import of the ES modules (build-bin.mjs keeps it external).
  runAsExecutable(async () => (await import('./main.js')).main(argv));
}
