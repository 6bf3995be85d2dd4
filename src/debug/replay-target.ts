// A recorded run as a DebugTarget (`lockstep debug`): the machine replays the log, and reverse execution
// is a snapshot restore plus an exact replay to a target instret (instret is the clock). Forward runs
// stop at every checkpoint boundary (a multiple of the interval) to snapshot the replaying machine;
// reverse-continue scans the windows between checkpoints backwards, under the debugger's breakpoints
// and watchpoints, for the last hit before the current position. Memory and registers are read-only:
// what is replayed never changes.
import type { Machine } from '../machine/machine.js';
import type { RunResult } from '../machine/types.js';
import { Replayer } from '../log/replayer.js';
import { MachineTargetBase, stopOf } from './live-target.js';
import type { DebugPoints, DebugTarget, ResumeAction, TargetStop } from './target.js';

const SIGINT = 2;
const SIGTRAP = 5;

/** First checkpoint interval, in instructions; it doubles whenever {@link MAX_CHECKPOINTS} are kept. */
export const CHECKPOINT_INTERVAL = 1n << 20n;
/** Checkpoints kept at most (each a snapshot: zero pages omitted, so mostly the guest's touched RAM). */
export const MAX_CHECKPOINTS = 64;

export interface ReplayTargetOptions {
  /** Instructions between checkpoints at first (a power of two; default {@link CHECKPOINT_INTERVAL}). */
  checkpointInterval?: bigint;
}

/**
 * Where the machine is, ordered on one line: 4·instret for the state a run stopped at by instret (an
 * instruction retired, nothing yet done at the next boundary), 4·instret + 2 for a breakpoint or
 * watchpoint stop at that instret (the boundary's interrupts and events applied, the next instruction
 * not run). The access a watchpoint stop announces happens at 4·instret + 3, as that instruction runs:
 * reverse execution meets it there, coming from after it.
 */
type Position = bigint;
const stateAt = (instret: bigint): Position => instret * 4n;
const stopAt = (instret: bigint): Position => instret * 4n + 2n;
const accessAt = (instret: bigint): Position => instret * 4n + 3n;

interface Hit {
  position: Position;
  result: Extract<RunResult, { kind: 'debug' }>;
}

/**
 * A recorded run for the GDB server: the log replayed on `machine`, forwards and backwards.
 *
 * ```ts
 * const m = new Machine({ memory: meta.memory, clock: meta.clock });
 * m.load(elf);                                   // the state the recording started from
 * await serveGdb(new ReplayTarget(m, batches), '127.0.0.1', 1234, () => {});
 * ```
 */
export class ReplayTarget extends MachineTargetBase implements DebugTarget {
  readonly reversible = true;
  readonly #machine: Machine;
  readonly #batches: readonly Uint8Array[];
  /** instret → snapshot taken there by a run that stopped at that instret (0: the recording's start). */
  readonly #checkpoints = new Map<bigint, Uint8Array>();
  #interval: bigint;
  #position: Position = 0n;
  #interrupted = false;
  /** The replay ended (the guest exited, or the log did): forward runs answer this at once. */
  #ended: { stop: TargetStop; instret: bigint } | undefined;

  /** `machine` must be in the state the recording started from, and idle; the target replays it from there. */
  constructor(machine: Machine, batches: readonly Uint8Array[], options: ReplayTargetOptions = {}) {
    super();
    this.#machine = machine;
    this.#batches = batches;
    this.#interval = options.checkpointInterval ?? CHECKPOINT_INTERVAL;
    if (this.#interval <= 0n) throw new RangeError('checkpointInterval must be positive');
    this.#checkpoints.set(0n, machine.snapshot());
    this.#startReplay(0n);
  }
  protected get machine(): Machine {
    return this.#machine;
  }

  setRegister(): boolean {
    return false;
  }
  writeCsr(): boolean {
    return false;
  }
  writeMemory(): boolean {
    return false;
  }

  /** The instrets checkpoints are kept at, ascending. */
  get checkpoints(): bigint[] {
    return [...this.#checkpoints.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  interrupt(): void {
    this.#interrupted = true;
    this.#machine.stop();
  }

  override monitor(command: string): string | undefined {
    if (command === 'checkpoints') return `checkpoints=${this.checkpoints.join(',')}\n`;
    const base = super.monitor(command);
    return command === 'help' || command === '' ? `${base}monitor checkpoints: instrets of the replay's snapshots\n` : base;
  }

  async resume(action: ResumeAction, points: DebugPoints): Promise<TargetStop> {
    this.#interrupted = false;
    switch (action) {
      case 'continue':
      case 'step':
        return this.#forward(points, action === 'step');
      case 'reverse-step':
        return this.#reverseStep();
      case 'reverse-continue':
        return this.#reverseContinue(points);
    }
  }

  async #forward(points: DebugPoints, step: boolean): Promise<TargetStop> {
    const m = this.#machine;
    if (this.#ended && m.counters.instret >= this.#ended.instret) return this.#ended.stop;
    const debugging = step || points.breakpoints.length > 0 || points.watchpoints.length > 0;
    let first = true;
    for (;;) {
      const at = m.counters.instret;
      const next = (at / this.#interval + 1n) * this.#interval;
      if (debugging) {
        m.setDebug({ ...points, step, resumeOverBreakpoint: first && this.#position === stopAt(at) });
      } else {
        m.setDebug(undefined);
      }
      first = false;
      const r = await m.run({ untilInstret: next });
      if (r.kind === 'budget') {
        this.#position = stateAt(r.instret);
        this.#checkpoint(r.instret);
        if (this.#interrupted) return { kind: 'signal', signal: SIGINT };
        continue;
      }
      return this.#settle(r);
    }
  }

  /** The position and stop reply of a run that ended other than at a checkpoint boundary. */
  #settle(r: RunResult): TargetStop {
    this.#position = r.kind === 'debug' && r.stop !== 'step' ? stopAt(r.instret) : stateAt(r.instret);
    const stop = stopOf(r);
    if (r.kind !== 'debug' && r.kind !== 'stopped') this.#ended = { stop, instret: r.instret };
    return stop;
  }

  async #reverseStep(): Promise<TargetStop> {
    const instret = this.#machine.counters.instret;
    if (instret === 0n) {
      await this.#restoreTo(0n);
      return { kind: 'signal', signal: SIGTRAP, replaylog: 'begin' };
    }
    await this.#restoreTo(instret - 1n);
    return this.#interrupted ? { kind: 'signal', signal: SIGINT } : { kind: 'signal', signal: SIGTRAP };
  }

  async #reverseContinue(points: DebugPoints): Promise<TargetStop> {
    const current = this.#position;
    const currentInstret = this.#machine.counters.instret;
    if (points.breakpoints.length > 0 || points.watchpoints.length > 0) {
      const starts = this.checkpoints.filter((k) => k <= currentInstret);
      for (let j = starts.length - 1; j >= 0; j--) {
        const end = j === starts.length - 1 ? currentInstret : starts[j + 1]!;
        const hits = await this.#scan(starts[j]!, end, points);
        if (hits === undefined) return this.#stopHere();
        const before = hits.filter((h) => h.position < current);
        const last = before[before.length - 1];
        if (last) return this.#land(last, points);
      }
    }
    await this.#restoreTo(0n);
    return this.#interrupted ? this.#stopHere() : { kind: 'signal', signal: SIGTRAP, replaylog: 'begin' };
  }

  /** Every breakpoint and watchpoint hit from checkpoint `from` up to instret `end`, in order; undefined if interrupted. */
  async #scan(from: bigint, end: bigint, points: DebugPoints): Promise<Hit[] | undefined> {
    const m = this.#machine;
    await this.#restoreTo(from);
    const hits: Hit[] = [];
    let overBreakpoint = false;
    for (;;) {
      if (this.#interrupted) return undefined;
      m.setDebug({ ...points, resumeOverBreakpoint: overBreakpoint });
      const r = await m.run({ untilInstret: end });
      if (r.kind === 'stopped') return undefined;
      if (r.kind !== 'debug') break;
      hits.push({ position: r.stop === 'breakpoint' ? stopAt(r.instret) : accessAt(r.instret), result: r });
      overBreakpoint = true;
    }
    this.#position = stateAt(m.counters.instret);
    return hits;
  }

  /**
   * Puts the machine where reverse execution meets `hit`: at the breakpoint; or, for a watchpoint, right
   * after the accessing instruction, about to un-execute it (gdb then reverse-steps over it and compares
   * the watched value, as it steps forwards over the access after a forward stop).
   */
  async #land(hit: Hit, points: DebugPoints): Promise<TargetStop> {
    const r = hit.result;
    if (r.stop === 'breakpoint') {
      await this.#restoreTo(r.instret);
      const m = this.#machine;
      m.setDebug({ breakpoints: points.breakpoints, resumeOverBreakpoint: false });
      const again = await m.run({ untilInstret: r.instret + 1n });
      this.#position = again.kind === 'debug' ? stopAt(again.instret) : stateAt(again.instret);
      return { kind: 'signal', signal: SIGTRAP, breakpoint: true };
    }
    await this.#restoreTo(r.instret + 1n);
    // The position is the access itself, so a reverse-continue from here finds the hit before it.
    this.#position = hit.position;
    const kind = r.stop === 'watch' || r.stop === 'rwatch' || r.stop === 'awatch' ? r.stop : 'awatch';
    return { kind: 'signal', signal: SIGTRAP, watch: { kind, address: r.address } };
  }

  #stopHere(): TargetStop {
    this.#position = stateAt(this.#machine.counters.instret);
    return { kind: 'signal', signal: SIGINT };
  }

  /** Restores the latest checkpoint at or before `instret` and replays exactly to it. */
  async #restoreTo(instret: bigint): Promise<void> {
    const m = this.#machine;
    let best = 0n;
    for (const k of this.#checkpoints.keys()) if (k <= instret && k > best) best = k;
    m.restore(this.#checkpoints.get(best)!);
    this.#startReplay(best);
    this.#position = stateAt(best);
    if (instret > best) {
      m.setDebug(undefined);
      const r = await m.run({ untilInstret: instret });
      this.#position = stateAt(r.instret);
    }
  }

  #startReplay(at: bigint): void {
    const replayer = at === 0n ? new Replayer(this.#machine) : new Replayer(this.#machine, { resumeAt: at });
    for (const b of this.#batches) replayer.feed(b);
    replayer.end();
  }

  /** Keeps a snapshot at `instret` (a multiple of the interval); thins the set when it grows too large. */
  #checkpoint(instret: bigint): void {
    if (instret % this.#interval !== 0n || this.#checkpoints.has(instret)) return;
    this.#checkpoints.set(instret, this.#machine.snapshot());
    while (this.#checkpoints.size > MAX_CHECKPOINTS) {
      this.#interval *= 2n;
      for (const k of [...this.#checkpoints.keys()]) if (k !== 0n && k % this.#interval !== 0n) this.#checkpoints.delete(k);
    }
  }
}
