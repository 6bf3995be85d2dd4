// What the GDB protocol needs of a machine, as an interface: the session (session.ts) talks only to
// this, so the protocol is tested without a machine and each kind of machine (live, replayed) brings
// its own implementation (live-target.ts, replay-target.ts).
import type { Watchpoint } from '../machine/types.js';

/** Why the target stopped, as a stop reply reports it. */
export type TargetStop =
  /**
   * Stopped with a signal (5 SIGTRAP for breakpoints, steps and watchpoints, 2 SIGINT for an interrupt,
   * 11 SIGSEGV for a trap the guest cannot handle). `watch` names the watchpoint that fired and the
   * address accessed; `replaylog` says a replay reached the beginning or the end of its log.
   */
  | { kind: 'signal'; signal: number; watch?: { kind: Watchpoint['kind']; address: number }; breakpoint?: boolean; replaylog?: 'begin' | 'end' }
  /** The guest exited with this code: nothing can run any more. */
  | { kind: 'exited'; code: number };

/** How to resume. The reverse actions exist only on targets that are {@link DebugTarget.reversible}. */
export type ResumeAction = 'continue' | 'step' | 'reverse-continue' | 'reverse-step';

/** The breakpoints and watchpoints in force for a resume. */
export interface DebugPoints {
  breakpoints: readonly number[];
  watchpoints: readonly Watchpoint[];
}

export interface DebugTarget {
  /** A recorded run: reverse execution works; memory and registers cannot be changed. */
  readonly reversible: boolean;
  /** x0..x31 then pc (33 values). */
  registers(): Uint32Array;
  /** false when the target refuses the write (a replay). */
  setRegister(index: number, value: number): boolean;
  /** undefined when the CSR does not exist. */
  readCsr(csr: number): number | undefined;
  writeCsr(csr: number, value: number): boolean;
  /** 0 U, 1 S, 3 M. */
  privilege(): number;
  /** undefined when any of the range is outside RAM. */
  readMemory(address: number, length: number): Uint8Array | undefined;
  writeMemory(address: number, data: Uint8Array): boolean;
  /** Runs until a stop; {@link interrupt} makes it stop soon with SIGINT. */
  resume(action: ResumeAction, points: DebugPoints): Promise<TargetStop>;
  interrupt(): void;
  /** Text for `monitor <command>`, or undefined for an unknown command. */
  monitor(command: string): string | undefined;
}
