// Running one guest on both engines in step: the interpreter (the reference) and the block compiler
// must agree on the stop, the whole hart state and the state hash at every stop.
import { expect } from 'vitest';
import { Machine, type Engine, type MachineOptions, type RunResult } from '../../src/index.js';

export const ENGINES: readonly Engine[] = ['interp', 'jit'];

/** Whether this host has the block compiler (x86-64 Linux); elsewhere `engine: 'jit'` runs the interpreter. */
export const HAS_JIT = (() => {
  const m = new Machine({ memory: 4096, engine: 'jit' });
  const e = m.engine;
  m.close();
  return e === 'jit';
})();

/** The engine a Machine built without `engine` runs here: LOCKSTEP_ENGINE's, else the compiler where there is one. */
export const DEFAULT_ENGINE: Engine = (process.env.LOCKSTEP_ENGINE || 'jit') === 'jit' && HAS_JIT ? 'jit' : 'interp';

// Every CSR whose value the hart state includes (M, S, counters, PMP's first entry).
const CSRS = [0x300, 0x301, 0x302, 0x303, 0x304, 0x305, 0x306, 0x340, 0x341, 0x342, 0x343, 0x344, 0x100, 0x104, 0x105,
  0x106, 0x140, 0x141, 0x142, 0x143, 0x144, 0x180, 0x3a0, 0x3b0, 0xb00, 0xb02, 0xb80, 0xb82];

/** Everything a host can observe of the hart at a stop, and the state hash (registers + RAM). */
export function hartState(m: Machine) {
  return {
    pc: m.pc,
    privilege: m.privilege,
    counters: m.counters,
    x: Array.from(m.registers()),
    csrs: CSRS.map((c) => m.getCsr(c)),
    hash: m.stateHash(),
  };
}

/**
 * Runs one guest on both engines in step: the same budgets, then the same stop reason and the same hart
 * state at every stop, until a stop other than the budget. Returns the stops made and the JIT machine's counters.
 */
export async function inStep(options: MachineOptions, setup: (m: Machine) => void, budgets: Iterable<number>) {
  const ms = ENGINES.map((engine) => {
    const m = new Machine({ ...options, engine });
    setup(m);
    return m;
  });
  try {
    let stops = 0;
    let last: RunResult | undefined;
    for (const b of budgets) {
      const [a, j] = await Promise.all(ms.map((m) => m.run({ maxInstructions: b })));
      expect(j, `stop ${stops} (budget ${b})`).toEqual(a);
      expect(hartState(ms[1]!), `stop ${stops} at instret ${a!.instret}`).toEqual(hartState(ms[0]!));
      stops++;
      last = a;
      if (a!.kind !== 'budget') break;
    }
    return { stops, last: last!, jit: ms[1]!.jitStats(), engine: ms[1]!.engine };
  } finally {
    for (const m of ms) m.close();
  }
}
