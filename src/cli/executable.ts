// What the `lockstep` process does around its verb: the verb's result becomes the exit status, and a
// reader that went away ends the output, not the process. Imports nothing of lockstep (bin.ts and
// main.ts use it before any verb is loaded).

/** Runs `verb` as the process's work: its result is the exit status, a throw is 70 with a line on stderr. */
export function runAsExecutable(verb: () => Promise<number>): void {
  // A reader that went away (`lockstep cluster status | head`) ends the output, not the process with a stack.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  verb().then(
    (status) => {
      process.exitCode = status;
    },
    (err: unknown) => {
      process.stderr.write(`lockstep: ${String(err)}\n`);
      process.exitCode = 70; // EX_SOFTWARE, as EXIT.software (io.ts may not be loaded when this can happen)
    },
  );
}
