// A live machine as a DebugTarget (`lockstep run --gdb`): forward execution only, memory and registers
// writable. With no breakpoint, watchpoint or step in force a continue runs the interpreter at full
// speed; otherwise the hart runs under Machine.setDebug. Stopping in the debugger feeds nothing into
// the guest: with the virtual clock its time is a function of instret, so the run stays deterministic.
import { Machine, RAM_BASE } from '../machine/machine.js';
import type { RunResult } from '../machine/types.js';
import { CSRS, PC_REGNUM } from './target-description.js';
import type { DebugPoints, DebugTarget, ResumeAction, TargetStop } from './target.js';

const PAGE = 4096;
const SIGINT = 2;
const SIGTRAP = 5;
const SIGSEGV = 11;

/** The stop reply for how a machine's run ended. */
export function stopOf(r: RunResult): TargetStop {
  switch (r.kind) {
    case 'exit':
      return { kind: 'exited', code: r.code };
    case 'debug':
      if (r.stop === 'watch' || r.stop === 'rwatch' || r.stop === 'awatch') return { kind: 'signal', signal: SIGTRAP, watch: { kind: r.stop, address: r.address } };
      return r.stop === 'breakpoint' ? { kind: 'signal', signal: SIGTRAP, breakpoint: true } : { kind: 'signal', signal: SIGTRAP };
    case 'stopped':
      return { kind: 'signal', signal: SIGINT };
    case 'budget':
      return { kind: 'signal', signal: SIGTRAP };
    case 'end-of-log':
      return { kind: 'signal', signal: SIGTRAP, replaylog: 'end' };
    default:
      // A trap the guest cannot handle, a halt, a divergence: the machine cannot go on.
      return { kind: 'signal', signal: SIGSEGV };
  }
}

/** What the live and the replayed target share: registers, CSRs, memory by virtual address, monitor commands. */
export abstract class MachineTargetBase {
  protected abstract get machine(): Machine;

  registers(): Uint32Array {
    const m = this.machine;
    const out = new Uint32Array(PC_REGNUM + 1);
    out.set(m.registers());
    out[PC_REGNUM] = m.pc;
    return out;
  }
  readCsr(csr: number): number | undefined {
    return CSRS.has(csr) ? this.machine.getCsr(csr) : undefined;
  }
  privilege(): number {
    const p = this.machine.privilege;
    return p === 'M' ? 3 : p === 'S' ? 1 : 0;
  }
  /**
   * Guest memory as the hart sees it now: virtual addresses through its page tables when paging is on
   * (a Linux guest), page by page; undefined when any byte is unmapped or not RAM.
   */
  readMemory(address: number, length: number): Uint8Array | undefined {
    const ranges = this.physical(address, length);
    if (!ranges) return undefined;
    const out = new Uint8Array(length);
    let at = 0;
    for (const r of ranges) {
      out.set(this.machine.readMemory(r.address, r.length), at);
      at += r.length;
    }
    return out;
  }

  /** The RAM ranges [address, address + length) maps to, in order; undefined if any byte is not RAM. */
  protected physical(address: number, length: number): { address: number; length: number }[] | undefined {
    const m = this.machine;
    const ranges: { address: number; length: number }[] = [];
    for (let done = 0; done < length; ) {
      const va = (address + done) >>> 0;
      const n = Math.min(PAGE - (va % PAGE), length - done);
      const pa = m.translate(va);
      if (pa === undefined || pa < RAM_BASE || pa + n > RAM_BASE + m.memory) return undefined;
      ranges.push({ address: pa, length: n });
      done += n;
    }
    return ranges;
  }
  monitor(command: string): string | undefined {
    const m = this.machine;
    if (command === 'instret') return `instret=${m.counters.instret}\n`;
    if (command === 'hash') return `hash=0x${m.stateHash().toString(16).padStart(16, '0')}\n`;
    if (command === 'help' || command === '') return 'monitor instret: instructions retired\nmonitor hash: the state hash (as lockstep record --stats prints it)\n';
    return undefined;
  }
}

/**
 * A live machine for the GDB server: forward execution, writable memory and registers.
 *
 * ```ts
 * const m = new Machine();
 * m.load(elf);
 * await serveGdb(new LiveTarget(m), '127.0.0.1', 1234, (port) => console.error(`gdb: target remote :${port}`));
 * ```
 */
export class LiveTarget extends MachineTargetBase implements DebugTarget {
  readonly reversible = false;
  readonly #machine: Machine;
  #ended: TargetStop | undefined;
  #last: RunResult | undefined;

  constructor(machine: Machine) {
    super();
    this.#machine = machine;
  }
  protected get machine(): Machine {
    return this.#machine;
  }

  setRegister(index: number, value: number): boolean {
    if (this.#ended) return false;
    if (index === PC_REGNUM) this.#machine.pc = value;
    else this.#machine.setRegister(index, value);
    return true;
  }
  writeCsr(csr: number, value: number): boolean {
    return !this.#ended && CSRS.has(csr) && this.#machine.setCsr(csr, value);
  }
  writeMemory(address: number, data: Uint8Array): boolean {
    const ranges = this.physical(address, data.length);
    if (!ranges) return false;
    let at = 0;
    for (const r of ranges) {
      this.#machine.writeMemory(r.address, data.subarray(at, at + r.length));
      at += r.length;
    }
    return true;
  }

  async resume(action: ResumeAction, points: DebugPoints): Promise<TargetStop> {
    if (action === 'reverse-continue' || action === 'reverse-step') throw new Error('a live machine cannot run backwards');
    if (this.#ended) return this.#ended;
    const step = action === 'step';
    if (step || points.breakpoints.length > 0 || points.watchpoints.length > 0) {
      this.#machine.setDebug({ breakpoints: points.breakpoints, watchpoints: points.watchpoints, step });
    } else {
      this.#machine.setDebug(undefined);
    }
    const r = await this.#machine.run();
    this.#last = r;
    const stop = stopOf(r);
    if (r.kind !== 'debug' && r.kind !== 'stopped' && r.kind !== 'budget') this.#ended = stop;
    return stop;
  }

  interrupt(): void {
    this.#machine.stop();
  }

  /** The last run's end, if the guest can run no more (exited, trapped, halted). */
  get ended(): TargetStop | undefined {
    return this.#ended;
  }
  /** How the last run ended (undefined before the first). */
  get lastResult(): RunResult | undefined {
    return this.#last;
  }
}
