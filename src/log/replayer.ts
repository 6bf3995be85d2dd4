// Replay: puts a machine in replay mode and feeds it batches. Mirrors recorder.ts. The vCPU thread
// validates every batch (CRC, sequence, records) before any event of it is applied.
import { OptionError } from '../errors.js';
import type { Machine } from '../machine/machine.js';
import { replicationPort, type ReplicationPort } from '../machine/replication-port.js';

/**
 * Replays a recorded log on `machine`, which must be in the state the recording started from (the same
 * ELF freshly loaded, or the same snapshot restored). Its runs then take every input from the log and
 * resolve with `kind: 'divergence'` at the first difference.
 *
 * ```ts
 * const rep = new Replayer(machine);
 * for (const batch of batches) rep.feed(batch);
 * rep.end();
 * const r = await machine.run();      // the recorded outcome, or a divergence report
 * ```
 */
export class Replayer {
  readonly #port: ReplicationPort;
  #ended = false;

  /**
   * `resumeAt`: the machine was restored from a snapshot taken at this instret while replaying the same
   * log (a debugger's checkpoint); feed the whole log as usual, and what came before is skipped.
   * @throws MachineStateError when `machine` is running or closed.
   */
  constructor(machine: Machine, options: { resumeAt?: bigint } = {}) {
    this.#port = replicationPort(machine);
    this.#port.startReplay(options.resumeAt);
  }

  /** Hands over one batch (copied). Batches may arrive while the machine runs (live replay). */
  feed(batch: Uint8Array): void {
    if (this.#ended) throw new OptionError('batch', 'feed() after end()');
    this.#port.feed(batch);
  }

  /** No more batches: a run that reaches the end of the log resolves with `kind: 'end-of-log'`. */
  end(): void {
    this.#ended = true;
    this.#port.endOfLog();
  }
}
