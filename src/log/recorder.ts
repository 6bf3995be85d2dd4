// Recording: puts a machine in record mode and turns the native log ring into a stream of batches.
// Mirrors replayer.ts. Per-batch work only: the vCPU thread encodes events; this file slices batches.
import { EventEmitter } from 'node:events';
import { OptionError } from '../errors.js';
import type { Machine } from '../machine/machine.js';
import { END_REASONS, replicationPort, type EndReason, type ReplicationPort } from '../machine/replication-port.js';
import type { RunResult } from '../machine/types.js';
import { ByteRingReader, allocateRing } from '../native/ring.js';
import { batchSizeAt } from './format.js';

/** Default state-hash interval: every 2^26 instructions (about 65 ms of guest time at 1000 MIPS). */
export const DEFAULT_HASH_INTERVAL = 2 ** 26;

export interface RecorderOptions {
  /** Log a state hash every this many instructions (0: only at the end). */
  hashInterval?: number;
  /** Bytes of the ring between the vCPU thread and JavaScript (a power of two, default 4 MiB). */
  ringBytes?: number;
}

export interface RecorderEvents {
  /** One sealed batch (header and records), exactly as a log file or the logging channel carries it. */
  batch: [batch: Uint8Array];
}

/**
 * Records every non-deterministic input of `machine` from its current state on.
 *
 * ```ts
 * const rec = new Recorder(machine);
 * rec.on('batch', (b) => writer.write(b));
 * const r = await machine.run();
 * rec.finish(r);
 * ```
 */
export class Recorder extends EventEmitter<RecorderEvents> {
  readonly hashInterval: number;
  readonly #port: ReplicationPort;
  readonly #ring: ByteRingReader;
  #pending: Uint8Array = new Uint8Array(0);
  #finished = false;
  #paused = false;
  #bytes = 0;
  #batches = 0;
  readonly #drain = () => this.#read();

  constructor(machine: Machine, options: RecorderOptions = {}) {
    super();
    const hashInterval = options.hashInterval ?? DEFAULT_HASH_INTERVAL;
    if (!Number.isSafeInteger(hashInterval) || hashInterval < 0) throw new OptionError('hashInterval', `must be a non-negative integer, got ${hashInterval}`);
    const ringBytes = options.ringBytes ?? 4 * 1024 * 1024;
    const ring = allocateRing(ringBytes);
    this.hashInterval = hashInterval;
    this.#port = replicationPort(machine);
    this.#ring = new ByteRingReader(ring);
    this.#port.startRecording(new Uint8Array(ring), hashInterval); // a running or closed machine: MachineStateError
    this.#port.onDoorbell(this.#drain);
  }

  /**
   * Stops taking batches out of the ring (a logging channel that cannot keep up): once the ring is full
   * the vCPU thread waits for space, so the guest stalls and nothing is dropped. {@link resume} undoes it.
   */
  pause(): void {
    this.#paused = true;
  }
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#read();
  }
  get paused(): boolean {
    return this.#paused;
  }

  /** Log bytes emitted so far. */
  get bytes(): number {
    return this.#bytes;
  }
  /** Batches emitted so far. */
  get batches(): number {
    return this.#batches;
  }

  /**
   * Ends the recording at the machine's current state: a final state hash and an end record saying how
   * the last run ended (`result`, or "stopped" without one). The machine returns to plain mode.
   */
  finish(result?: RunResult): void {
    if (this.#finished) return;
    this.#paused = false;
    this.#read();
    const { reason, code } = endReasonOf(result);
    const ok = this.#port.finishRecording(reason, code);
    this.#read();
    this.#finished = true;
    this.#port.offDoorbell(this.#drain);
    if (!ok) throw new OptionError('machine', 'the final log batch did not fit the ring; nothing was lost before it');
  }

  #read(): void {
    if (this.#paused && !this.#finished) return;
    const bytes = this.#ring.read();
    if (bytes.length === 0) return;
    this.#port.ringDrained(); // wakes a vCPU waiting for ring space
    let buf = this.#pending.length === 0 ? bytes : concat(this.#pending, bytes);
    let at = 0;
    for (;;) {
      const size = batchSizeAt(buf, at);
      if (size === undefined || buf.length - at < size) break;
      const batch = buf.subarray(at, at + size);
      at += size;
      this.#bytes += size;
      this.#batches++;
      this.emit('batch', batch);
    }
    this.#pending = at === buf.length ? new Uint8Array(0) : buf.slice(at);
    buf = this.#pending;
  }
}

/** The end record's reason and code for how a run ended ("stopped" without a result). */
export function endReasonOf(result?: RunResult): { reason: EndReason; code: number } {
  const reason: EndReason = result && result.kind in END_REASONS ? (result.kind as EndReason) : 'stopped';
  return { reason, code: result?.kind === 'exit' ? result.code : 0 };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
