// rr's habit in one helper: run a guest while recording, replay the log on a fresh machine, and
// compare console output, counters and the final state hash.
import { readFileSync } from 'node:fs';
import { Machine, type MachineOptions, type RunResult } from '../../src/index.js';
import { Recorder, type RecorderOptions } from '../../src/log/recorder.js';
import { Replayer } from '../../src/log/replayer.js';

export interface RecordedRun {
  result: RunResult;
  console: string;
  batches: Uint8Array[];
  hash: bigint;
}

export interface Schedule {
  /**
   * UART input: bytes and the delay (ms of host time after the run starts) at which they are queued;
   * with `running`, the delay counts from the guest's first retired instructions (on a loaded machine the
   * run may not have begun after a few milliseconds).
   */
  input?: { atMs: number; bytes: string; running?: true }[];
  /** Stop the run after this many instructions (the recording ends with a budget record). */
  maxInstructions?: number;
}

/**
 * Runs `m` to its end: recorded (the batches it made are returned) or, given `batches`, replaying them.
 */
export async function runLogged(m: Machine, batches?: Uint8Array[], rec: RecorderOptions = {}): Promise<{ result: RunResult; batches: Uint8Array[] }> {
  const out: Uint8Array[] = [];
  const recorder = batches ? undefined : new Recorder(m, rec);
  recorder?.on('batch', (b) => out.push(b.slice()));
  if (batches) {
    const rep = new Replayer(m);
    for (const b of batches) rep.feed(b);
    rep.end();
  }
  const result = await m.run();
  recorder?.finish(result);
  return { result, batches: out };
}

export function guestElf(name: string): Uint8Array {
  return readFileSync(new URL(`../../guest/bin/${name}.elf`, import.meta.url));
}

/** Runs `elf` on a new machine while recording; inputs arrive on the given schedule. */
export async function record(elf: Uint8Array, options: MachineOptions, schedule: Schedule = {}, rec: RecorderOptions = {}): Promise<RecordedRun> {
  const m = new Machine(options);
  try {
    m.load(elf);
    const out: Buffer[] = [];
    m.on('console', (c) => out.push(Buffer.from(c)));
    const recorder = new Recorder(m, rec);
    const batches: Uint8Array[] = [];
    recorder.on('batch', (b) => batches.push(b.slice()));
    const timers = new Set<NodeJS.Timeout>();
    const later = (fn: () => void, ms: number) => {
      const t = setTimeout(() => {
        timers.delete(t);
        fn();
      }, ms);
      timers.add(t);
    };
    const whenRunning = (fn: () => void) => (m.progress > 0n ? fn() : later(() => whenRunning(fn), 1));
    for (const i of schedule.input ?? []) {
      if (i.running) whenRunning(() => later(() => m.input(i.bytes), i.atMs));
      else later(() => m.input(i.bytes), i.atMs);
    }
    const result = await m.run(schedule.maxInstructions === undefined ? {} : { maxInstructions: schedule.maxInstructions });
    for (const t of timers) clearTimeout(t);
    recorder.finish(result);
    return { result, console: Buffer.concat(out).toString('latin1'), batches, hash: m.stateHash() };
  } finally {
    m.close();
  }
}

/** Replays batches on a fresh machine loaded with the same ELF. */
export async function replay(elf: Uint8Array, options: MachineOptions, batches: Uint8Array[]): Promise<RecordedRun> {
  const m = new Machine(options);
  try {
    m.load(elf);
    const out: Buffer[] = [];
    m.on('console', (c) => out.push(Buffer.from(c)));
    const rep = new Replayer(m);
    for (const b of batches) rep.feed(b);
    rep.end();
    const result = await m.run();
    return { result, console: Buffer.concat(out).toString('latin1'), batches, hash: m.stateHash() };
  } finally {
    m.close();
  }
}
