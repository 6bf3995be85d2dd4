// `--lease-stdin` and `--exit-with-parent` of the processes a host agent runs (`lockstep primary`,
// `lockstep secondary`, `lockstep agent run-vm`): how such a process ends with its agent. Process
// plumbing only; no VM logic.

/**
 * `--exit-with-parent`: a process run by an agent ends when the agent does (SIGKILL included), as it
 * would with its host. Linux re-parents an orphan, so a changed parent pid is the sign; checked every
 * 100 ms.
 */
export function exitWithParent(): void {
  const parent = process.ppid;
  const t = setInterval(() => {
    if (process.ppid !== parent) process.kill(process.pid, 'SIGKILL');
  }, 100);
  t.unref();
}

/**
 * `--lease-stdin`: the agent writes `lease <ns>` lines (a CLOCK_MONOTONIC time, `process.hrtime.bigint()`)
 * and the VM runs only until the last one: an agent that stops (SIGSTOP) while its store record expires
 * cannot leave a copy running beside the one the manager restarts. Checked every 50 ms; no lease yet
 * means none is due (the agent sends one as it starts the process). `fenced` is told just before the
 * SIGKILL.
 */
export function leaseFromStdin(fenced: () => void): void {
  let until: bigint | undefined;
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const m = /^lease (\d{1,20})$/.exec(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (m) until = BigInt(m[1]!);
    }
    if (buf.length > 256) buf = '';
  });
  // Reading stdin must not keep the process alive once the VM has ended (or never started).
  (process.stdin as unknown as { unref?: () => void }).unref?.();
  // A standby process (src/cli/standby.ts) paused stdin after the line that made it this command.
  process.stdin.resume();
  const t = setInterval(() => {
    if (until === undefined || process.hrtime.bigint() <= until) return;
    fenced();
    process.kill(process.pid, 'SIGKILL');
  }, 50);
  t.unref();
}

/** What the `fenced` event says. */
export const FENCED_TEXT = 'the lease from the agent ran out (the agent stopped renewing it): ending the VM before a copy can be restarted elsewhere';
