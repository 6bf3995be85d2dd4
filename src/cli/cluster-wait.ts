// `--wait` of the cluster commands that write a request for the leading manager (`migrate`, `ft`): read
// the store until the request's outcome shows, printing the VM's status line each time it changes.
import { readInventory, type ClusterStore, type Inventory } from '../cluster/index.js';
import { EXIT, type CommandIo } from './io.js';

/** What one look at the store found: a status line, and the exit status once the request is settled. */
export interface WaitLook {
  line: string;
  /** Settled: EXIT.ok with `done` printed on stdout, or a failure with `failed` printed on stderr. */
  exit?: number;
  done?: string;
  failed?: string;
}

/**
 * Reads the store every 200 ms until `look` settles or `timeoutMs` passes; prints each new line. On time
 * out prints `timedOut(last line)` and returns EXIT.budget.
 */
export async function waitOnStore(store: ClusterStore, io: CommandIo, timeoutMs: number, look: (inv: Inventory) => WaitLook, timedOut: (last: string) => string): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  let last = '';
  while (performance.now() < deadline) {
    const l = look(await readInventory(store));
    if (l.failed !== undefined) {
      io.stderr.write(`${l.failed}\n`);
      return l.exit ?? EXIT.dataErr;
    }
    if (l.line !== last) io.stdout.write(`${l.line}\n`);
    last = l.line;
    if (l.exit !== undefined) {
      if (l.done !== undefined) io.stdout.write(`${l.done}\n`);
      return l.exit;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  io.stderr.write(`${timedOut(last)}\n`);
  return EXIT.budget;
}
