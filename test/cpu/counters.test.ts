// Instruction and branch accounting: closed-form counts for known loops, guest counter CSRs against the
// host's counters, exact stops at an instruction budget or a target instret, and chunked runs.
import { describe, expect, it } from 'vitest';
import { Asm, rv } from '../helpers/asm.js';
import { CAUSE, CSR, RAM, csrr, expectRegs, load } from './harness.js';
import { prng } from './prng.js';

/** `li x1, n; loop: (k - 2) x addi x2, x2, 1; addi x1, x1, -1; bne x1, x0, loop; ebreak` */
function countedLoop(n: number, k: number): Asm {
  const a = new Asm();
  a.li(1, n);
  a.label('loop');
  for (let i = 0; i < k - 2; i++) a.addi(2, 2, 1);
  a.addi(1, 1, -1).bne(1, 0, 'loop');
  return a.ebreak();
}

/** Instructions `li` expands to. */
const liLength = (v: number) => new Asm().li(1, v).bytes().length / 4;

describe('closed-form counts', () => {
  it.each([[1, 2], [10, 2], [1000, 3], [12345, 8], [100_000, 5]])(
    'a loop of %d iterations of %d instructions retires 1 + n*k instructions and n branches', async (n, k) => {
      const m = load(countedLoop(n, k));
      const r = await m.run({ maxInstructions: 10_000_000 });
      expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
      const instret = BigInt(liLength(n) + n * k);
      expect({ instret: r.instret, branches: r.branches }).toEqual({ instret, branches: BigInt(n) });
      expect(m.counters).toEqual({ instret, branches: BigInt(n) });
      expectRegs(m, { 1: 0, 2: n * (k - 2) });
    });

  it('nested loops retire the product of their counts', async () => {
    const a = new Asm();
    a.li(1, 30); //                                       outer = 30
    a.label('outer').li(2, 40); //                        inner = 40
    a.label('inner').addi(3, 3, 1).addi(2, 2, -1).bne(2, 0, 'inner');
    a.addi(1, 1, -1).bne(1, 0, 'outer');
    a.ebreak();
    const m = load(a);
    const r = await m.run({ maxInstructions: 1_000_000 });
    expect(r.kind).toBe('trap');
    expect(r.instret).toBe(BigInt(1 + 30 * (1 + 40 * 3 + 2)));
    expect(r.branches).toBe(BigInt(30 * 40 + 30));
    expectRegs(m, { 3: 1200 });
  });

  it('counters accumulate across runs and are 64-bit bigints', async () => {
    const m = load(countedLoop(50, 2));
    await m.run({ maxInstructions: 30 });
    await m.run({ maxInstructions: 30 });
    const r = await m.run({ maxInstructions: 1000 });
    expect(r.instret).toBe(101n);
    expect(typeof m.counters.instret).toBe('bigint');
    expect(m.counters).toEqual({ instret: 101n, branches: 50n });
  });

  it('traps, mret and fence are not branches; jal, jalr and compressed jumps are', async () => {
    const a = new Asm();
    a.la(5, 'handler').csrrw(0, CSR.mtvec, 5); //       2 + 1 instructions
    a.ecall(); //                                         trap: not retired
    a.word(rv.fence()).word(rv.fence_i()); //            2
    a.jal(1, 'f').c_jal('f').la(6, 'f').jalr(1, 6, 0).c_jalr(6); // 1 + 1 + 2 + 1 + 1, 4 branches -> f each time
    a.csrrw(0, CSR.mtvec, 0).ebreak(); //                 1
    a.label('f').c_jr(1); //                              4 returns, 4 branches
    a.align(4).label('handler');
    a.word(csrr(7, CSR.mepc)).addi(7, 7, 4).csrrw(0, CSR.mepc, 7).mret(); // 4
    const m = load(a);
    const r = await m.run({ maxInstructions: 1000 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expect(r.branches).toBe(8n);
    expect(r.instret).toBe(BigInt(3 + 4 + 2 + 6 + 4 + 1));
  });
});

describe('counter CSRs', () => {
  it('minstret reads the number of instructions retired before the reading instruction', async () => {
    const m = load([
      csrr(5, CSR.minstret), //      csrr x5, minstret   -> 0
      rv.addi(0, 0, 0), //           nop
      rv.addi(0, 0, 0), //           nop
      rv.addi(0, 0, 0), //           nop
      csrr(6, CSR.minstret), //      csrr x6, minstret   -> 4
      csrr(7, CSR.instret), //       csrr x7, instret    -> 5
      csrr(8, CSR.cycle), //         csrr x8, cycle      -> 6 (one instruction per cycle)
      csrr(9, CSR.mcycle), //        csrr x9, mcycle     -> 7
      csrr(10, CSR.minstreth), //    csrr x10, minstreth -> 0
      csrr(11, CSR.instreth), //     csrr x11, instreth  -> 0
      csrr(12, CSR.cycleh), //       csrr x12, cycleh    -> 0
      csrr(13, CSR.mcycleh), //      csrr x13, mcycleh   -> 0
      rv.ebreak(),
    ], { regs: { 10: 9, 11: 9, 12: 9, 13: 9 } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: RAM + 48 });
    expectRegs(m, { 5: 0, 6: 4, 7: 5, 8: 6, 9: 7, 10: 0, 11: 0, 12: 0, 13: 0 });
    expect(r.instret).toBe(12n);
  });

  it('minstret after a loop agrees with the host counter at the stop', async () => {
    const a = countedLoop(777, 4);
    const bytes = a.bytes();
    // Replace the final ebreak by: csrr x5, minstret; ebreak
    const b = new Asm();
    for (let i = 0; i < bytes.length - 4; i += 4) b.word(new DataView(bytes.buffer).getUint32(i, true));
    b.word(csrr(5, CSR.minstret)).ebreak();
    const m = load(b);
    const r = await m.run({ maxInstructions: 100_000 });
    expect(r.kind).toBe('trap');
    expect(BigInt(m.getRegister(5)) + 1n).toBe(r.instret);
  });

  it('the time CSR and CLINT mtime read floor(instret / 100) under the virtual clock', async () => {
    const a = new Asm();
    a.li(1, 1025).label('loop').addi(1, 1, -1).bne(1, 0, 'loop'); // 1 + 2050 instructions
    a.word(csrr(5, CSR.time)); //                         reads at instret 2051 -> 20
    a.li(7, 0x0200bff8).lw(6, 0, 7); //                   lw x6, mtime at instret 2054 -> 20
    a.word(csrr(8, CSR.timeh)).lw(9, 4, 7); //            high halves: 0
    a.ebreak();
    const m = load(a, { regs: { 8: 5, 9: 5 } });
    const r = await m.run({ maxInstructions: 100_000 });
    expect(r.kind).toBe('trap');
    expectRegs(m, { 5: 20, 6: 20, 8: 0, 9: 0 });
  });

  it('a value written to minstret is what the next instruction reads', async () => {
    const m = load([
      rv.addi(0, 0, 0), //           nop
      csrw(CSR.minstret, 6), //      csrw minstret, x6   (x6 = 1000)
      csrr(5, CSR.minstret), //      csrr x5, minstret   -> 1000
      rv.ebreak(),
    ], { regs: { 6: 1000 } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r.kind).toBe('trap');
    expectRegs(m, { 5: 1000 });
  });
});

function csrw(c: number, rs: number): number {
  return rv.csrrw(0, c, rs);
}

describe('exact stops', () => {
  it('maxInstructions retires exactly that many instructions and reports the next pc', async () => {
    const m = load(countedLoop(100, 2)); //                   li at RAM, addi at RAM+4, bne at RAM+8
    let total = 0;
    for (const n of [7, 1, 2, 10, 33]) {
      const r = await m.run({ maxInstructions: n });
      total += n;
      expect(r.kind).toBe('budget');
      expect(r.instret).toBe(BigInt(total));
      expect(m.counters.instret).toBe(BigInt(total));
      // After the li, odd totals sit at the addi, even totals at the bne.
      const pc = total % 2 === 1 ? RAM + 4 : RAM + 8;
      expect(r.pc).toBe(pc);
      expect(m.pc).toBe(pc);
      expect(r.branches).toBe(BigInt(Math.floor((total - 1) / 2)));
    }
  });

  it('single-stepping one instruction at a time visits every pc in order', async () => {
    const m = load(countedLoop(5, 3)); //                     li; loop: addi x2; addi x1; bne
    const pcs: number[] = [];
    for (let i = 0; i < 16; i++) {
      const r = await m.run({ maxInstructions: 1 });
      expect(r.kind).toBe('budget');
      pcs.push(r.pc - RAM);
    }
    expect(pcs).toEqual([4, 8, 12, 4, 8, 12, 4, 8, 12, 4, 8, 12, 4, 8, 12, 16]);
    const r = await m.run({ maxInstructions: 1 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: RAM + 16 });
    expect(r.instret).toBe(16n);
  });

  it.each([1n, 2n, 3n, 999n, 1234n, 4001n])('untilInstret: %s stops exactly there', async (target) => {
    const m = load(countedLoop(5000, 4));
    const r = await m.run({ untilInstret: target });
    expect(r.kind).toBe('budget');
    expect(r.instret).toBe(target);
    expect(m.counters.instret).toBe(target);
  });

  it('untilInstret counts from reset, not from the current position', async () => {
    const m = load(countedLoop(5000, 4));
    await m.run({ maxInstructions: 100 });
    const r = await m.run({ untilInstret: 250n });
    expect(r).toMatchObject({ kind: 'budget', instret: 250n });
  });

  it('stop() ends an endless loop at an instruction boundary consistent with the registers, and it resumes', async () => {
    const a = new Asm();
    a.label('loop').addi(5, 5, 1).j('loop'); //       loop: addi x5, x5, 1; j loop
    const m = load(a);
    const running = m.run();
    const timer = setTimeout(() => m.stop(), 20);
    const r = await running;
    clearTimeout(timer);
    expect(r.kind).toBe('stopped');
    expect(m.counters.instret).toBe(r.instret);
    const x5 = BigInt(m.getRegister(5));
    // At the addi, both instructions of every iteration retired; at the j, one more addi did.
    expect(r.instret).toBe(r.pc === RAM ? 2n * x5 : 2n * x5 - 1n);
    expect(r.branches).toBe(r.pc === RAM ? x5 : x5 - 1n);
    const r2 = await m.run({ maxInstructions: 10 });
    expect(r2).toMatchObject({ kind: 'budget', instret: r.instret + 10n, pc: r.pc });
  });

  // A forward conditional branch with a short block after it does not end its block (the interpreter
  // counts the block through it in advance and gives back the rest when it is taken). Stops at every
  // position of a loop full of them, taken and not, must still be exact.
  const forwardBranches = () => {
    const a = new Asm();
    a.li(1, 24).li(5, 0);
    a.label('loop');
    a.andi(3, 1, 1).beq(3, 0, 'even'); //          taken every other iteration
    a.addi(5, 5, 1).c_addi(6, 3);
    a.label('even');
    a.andi(8, 1, 2).c_bnez(8, 'skip'); //          taken two iterations in four
    a.addi(5, 5, 16).bltu(1, 5, 'skip'); //       taken once x5 passes x1
    a.xori(7, 7, 0x55);
    a.label('skip');
    a.bge(1, 0, 'next'); //                         always taken, to the next instruction
    a.label('next');
    a.addi(1, 1, -1).bne(1, 0, 'loop');
    return a.ebreak();
  };

  it('a stop at each position of a loop full of forward branches is exact', async () => {
    // The single-step trace (each instruction run alone, outside any block) is the reference.
    const stepped = load(forwardBranches());
    const trace: { pc: number; branches: bigint; regs: number[] }[] = [];
    for (;;) {
      const r = await stepped.run({ maxInstructions: 1 });
      if (r.kind !== 'budget') break;
      trace.push({ pc: r.pc, branches: r.branches, regs: Array.from(stepped.registers()) });
    }
    expect(trace.length).toBeGreaterThan(200);
    for (let k = 1; k <= trace.length; k++) {
      const m = load(forwardBranches());
      const r = await m.run({ maxInstructions: k });
      const want = trace[k - 1]!;
      expect({ k, kind: r.kind, instret: r.instret, pc: r.pc, branches: r.branches }).toEqual({
        k, kind: 'budget', instret: BigInt(k), pc: want.pc, branches: want.branches,
      });
      expect(Array.from(m.registers())).toEqual(want.regs);
    }
  });

  it('runs resumed at every position of a loop full of forward branches end as one straight run does', async () => {
    const straight = load(forwardBranches());
    const r1 = await straight.run({ maxInstructions: 100_000 });
    expect(r1).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    for (const chunk of [2, 3, 5, 7]) {
      const m = load(forwardBranches());
      let r = await m.run({ maxInstructions: chunk });
      while (r.kind === 'budget') r = await m.run({ maxInstructions: chunk });
      expect(r).toEqual(r1);
      expect(Array.from(m.registers())).toEqual(Array.from(straight.registers()));
    }
  });

  it('a run split into random chunks ends in the same state as one straight run', async () => {
    const build = () => {
      const a = new Asm();
      a.li(1, 3000).li(3, 0x12345).li(10, 0x80040000);
      a.label('loop');
      a.mul(3, 3, 3).xori(3, 3, 0x5a5).srli(4, 3, 7).andi(4, 4, 12).add(5, 10, 4).sw(3, 0, 5).lw(6, 4, 5);
      a.add(7, 7, 6).c_addi(1, -1).bne(1, 0, 'loop');
      return a.ebreak();
    };
    const straight = load(build());
    const r1 = await straight.run({ maxInstructions: 1_000_000 });
    const chunked = load(build());
    const rnd = prng(42);
    let r2 = await chunked.run({ maxInstructions: 1 });
    for (let i = 0; i < 200 && r2.kind === 'budget'; i++) {
      r2 = await chunked.run({ maxInstructions: 1 + Math.floor(rnd() * 300) });
    }
    while (r2.kind === 'budget') r2 = await chunked.run({ maxInstructions: 1_000_000 });
    expect(r2).toEqual(r1);
    expect(Array.from(chunked.registers())).toEqual(Array.from(straight.registers()));
    expect(chunked.readMemory(0x80040000, 32)).toEqual(straight.readMemory(0x80040000, 32));
  });
});
