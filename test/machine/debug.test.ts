// The machine's debugger support (Machine.setDebug): breakpoints stop before an instruction, watchpoints
// before the accessing instruction, single steps stop at trap handlers, and none of it changes what the guest computes;
// a replay restored from a mid-run snapshot (Replayer resumeAt) ends in the recording's final state.
import { afterEach, describe, expect, it } from 'vitest';
import { Machine, Replayer, parseElf, type RunResult } from '../../src/index.js';
import { Asm } from '../helpers/asm.js';
import { guestElf, record } from '../helpers/replay.js';

const machines: Machine[] = [];
function make(opts: ConstructorParameters<typeof Machine>[0] = {}): Machine {
  const m = new Machine({ memory: 1 << 20, ...opts });
  machines.push(m);
  return m;
}
afterEach(() => {
  while (machines.length) machines.pop()!.close();
});

const recurse = guestElf('recurse');
const symbols = parseElf(recurse, { base: 0x8000_0000, size: 1 << 20 }).symbols;
const FIB = symbols.get('fib')!;
const CALLS = symbols.get('calls')!;

/** The state hash a plain machine (no debugger) has at `instret`. */
async function plainHashAt(elf: Uint8Array, instret: bigint): Promise<bigint> {
  const m = make();
  m.load(elf);
  const r = await m.run({ untilInstret: instret });
  expect(r.instret).toBe(instret);
  return m.stateHash();
}

function debugStop(r: RunResult): Extract<RunResult, { kind: 'debug' }> {
  if (r.kind !== 'debug') throw new Error(`expected a debug stop, got ${r.kind}`);
  return r;
}

/** ecall at 0x80000010 traps to a handler at 0x80000100 whose first instruction is `addi t1, t1, 1`. */
function trapProgram(): Uint8Array {
  const a = new Asm();
  a.la(5, 'handler');
  a.csrrw(0, 0x305, 5); // mtvec
  a.label('ecall');
  a.ecall();
  a.label('spin');
  a.jal(0, 'spin');
  while (a.offset < 0x100) a.addi(0, 0, 0);
  a.label('handler');
  a.addi(6, 6, 1);
  a.label('hspin');
  a.jal(0, 'hspin');
  return a.bytes();
}

describe('Machine.setDebug', () => {
  it('stops at a breakpoint before its instruction runs, in the state a plain run has there', async () => {
    const m = make();
    m.load(recurse);
    m.setDebug({ breakpoints: [FIB] });
    const r = debugStop(await m.run());
    expect(r.stop).toBe('breakpoint');
    expect(r.pc).toBe(FIB);
    expect(r.address).toBe(FIB);
    expect(m.stateHash()).toBe(await plainHashAt(recurse, r.instret));
  });

  it('resumes over the breakpoint it stopped at and stops at its next hit', async () => {
    const m = make();
    m.load(recurse);
    m.setDebug({ breakpoints: [FIB] });
    const first = debugStop(await m.run());
    m.setDebug({ breakpoints: [FIB] });
    const second = debugStop(await m.run());
    expect(second.pc).toBe(FIB);
    expect(second.instret).toBeGreaterThan(first.instret);
  });

  it('stops before a store to a watched word, and a step then makes the store', async () => {
    const m = make();
    m.load(recurse);
    m.setDebug({ watchpoints: [{ kind: 'watch', address: CALLS, length: 4 }] });
    const r = debugStop(await m.run());
    expect(r.stop).toBe('watch');
    expect(r.address).toBe(CALLS);
    expect(m.stateHash()).toBe(await plainHashAt(recurse, r.instret));
    m.setDebug({ watchpoints: [{ kind: 'watch', address: CALLS, length: 4 }], step: true });
    const stepped = debugStop(await m.run());
    expect(stepped.stop).toBe('step');
    expect(stepped.instret).toBe(r.instret + 1n);
    expect(m.stateHash()).toBe(await plainHashAt(recurse, stepped.instret));
    // Resumed again, it stops before the next store there, not at once.
    m.setDebug({ watchpoints: [{ kind: 'watch', address: CALLS, length: 4 }] });
    const next = debugStop(await m.run());
    expect(next.instret).toBeGreaterThan(stepped.instret);
  });

  it('stops before a load of a watched word (rwatch) and not at a store (watch) elsewhere', async () => {
    const m = make();
    m.load(recurse);
    m.setDebug({ watchpoints: [{ kind: 'rwatch', address: CALLS, length: 4 }, { kind: 'watch', address: CALLS + 64, length: 4 }] });
    const r = debugStop(await m.run());
    expect(r.stop).toBe('rwatch');
    expect(r.address).toBe(CALLS);
    // The instruction at pc is a load (opcode 0x03, or c.lw / c.lwsp) through the watched address.
    const insn = new DataView(m.readMemory(r.pc, 4).buffer).getUint32(0, true);
    const compressed = (insn & 3) !== 3;
    expect(compressed ? [0x4000, 0x4002].includes(insn & 0xe003) : (insn & 0x7f) === 0x03).toBe(true);
  });

  it('single-steps one instruction at a time, and into a trap handler before it runs', async () => {
    const m = make();
    m.writeMemory(0x8000_0000, trapProgram());
    m.pc = 0x8000_0000;
    const pcs: number[] = [];
    for (let i = 0; i < 5; i++) {
      m.setDebug({ step: true });
      const r = debugStop(await m.run());
      expect(r.stop).toBe('step');
      pcs.push(r.pc);
    }
    // la is two instructions, csrw one, then the ecall traps (retiring nothing) to the handler.
    expect(pcs.slice(0, 4)).toEqual([0x8000_0004, 0x8000_0008, 0x8000_000c, 0x8000_0100]);
    expect(m.counters.instret).toBe(4n);
    expect(m.getRegister(6)).toBe(1);
  });

  it('never changes what the guest computes: a debugged run ends in the plain run\'s final state', async () => {
    const m = make();
    m.load(guestElf('hello'));
    for (let i = 0; i < 50; i++) {
      m.setDebug({ step: true });
      debugStop(await m.run());
    }
    m.setDebug({ breakpoints: [0x8000_0000 + 0x10_0000], watchpoints: [{ kind: 'awatch', address: 0x8000_f000, length: 16 }] });
    const debugged = await m.run();
    m.setDebug(undefined);
    const plain = make();
    plain.load(guestElf('hello'));
    const r = await plain.run();
    expect(debugged.kind).toBe('exit');
    expect(debugged.instret).toBe(r.instret);
    expect(m.stateHash()).toBe(plain.stateHash());
  });

  it('replays from a snapshot taken mid-replay to the recording\'s final state (Replayer resumeAt)', async () => {
    const timer = guestElf('timer');
    const options = { memory: 1 << 20, clock: 'real' as const };
    const rec = await record(timer, options);
    expect(rec.result.kind).toBe('exit');
    const half = rec.result.instret / 2n;
    const a = make(options);
    a.load(timer);
    const ra = new Replayer(a);
    for (const b of rec.batches) ra.feed(b);
    ra.end();
    expect((await a.run({ untilInstret: half })).kind).toBe('budget');
    const snap = a.snapshot();
    const b = make(options);
    b.load(timer);
    b.restore(snap);
    const rb = new Replayer(b, { resumeAt: half });
    for (const batch of rec.batches) rb.feed(batch);
    rb.end();
    const end = await b.run();
    expect(end.kind).toBe('exit');
    expect(end.instret).toBe(rec.result.instret);
    expect(b.stateHash()).toBe(rec.hash);
    expect(end.replay?.ended).toBe(true);
  });
});
