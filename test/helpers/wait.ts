// Waiting for a condition instead of sleeping: bounded polling that fails with a message naming what
// did not happen. The bound is generous (a loaded machine is slow); a passing test never waits it out.

/** Resolves once `cond()` is true, checking every `everyMs`; throws naming `what` after `timeoutMs`. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, options: { timeoutMs?: number; everyMs?: number } = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > end) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, options.everyMs ?? 10));
  }
}
