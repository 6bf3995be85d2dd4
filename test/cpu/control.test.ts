// Control transfer: conditional branches taken and not taken (signed and unsigned edge cases), jal and
// jalr link values, jalr clearing bit 0 of the target, and the branches counter for each of them.
import { describe, expect, it } from 'vitest';
import { Asm, rv } from '../helpers/asm.js';
import { RAM, expectRegs, le32, load, runToEbreak } from './harness.js';

const INT_MIN = 0x80000000;
const INT_MAX = 0x7fffffff;

type Br = 'beq' | 'bne' | 'blt' | 'bge' | 'bltu' | 'bgeu';
// [instruction, x1, x2, taken]
const branchCases: Array<[Br, number, number, boolean]> = [
  ['beq', 5, 5, true], ['beq', 5, 6, false], ['beq', 0, 0xffffffff, false],
  ['bne', 5, 5, false], ['bne', 5, 6, true], ['bne', INT_MIN, INT_MAX, true],
  ['blt', 1, 2, true], ['blt', 2, 1, false], ['blt', 2, 2, false],
  ['blt', 0xffffffff, 0, true], // -1 < 0
  ['blt', INT_MIN, INT_MAX, true], ['blt', INT_MAX, INT_MIN, false],
  ['bge', 2, 2, true], ['bge', 1, 2, false], ['bge', 0, 0xffffffff, true], ['bge', INT_MIN, INT_MAX, false],
  ['bge', INT_MAX, INT_MIN, true],
  ['bltu', 1, 2, true], ['bltu', 2, 2, false],
  ['bltu', 0xffffffff, 0, false], // 2^32-1 is not below 0
  ['bltu', 0, 0xffffffff, true], ['bltu', INT_MAX, INT_MIN, true], ['bltu', INT_MIN, INT_MAX, false],
  ['bgeu', 2, 2, true], ['bgeu', 1, 2, false], ['bgeu', 0xffffffff, 0, true], ['bgeu', INT_MIN, INT_MAX, true],
  ['bgeu', 0, 0xffffffff, false],
];

describe('conditional branches', () => {
  it.each(branchCases)('%s with x1=%d, x2=%d: taken=%s', async (op, a, b, taken) => {
    const code = [
      rv[op](1, 2, 12), //    <op> x1, x2, .+12   -> taken path at RAM+12
      rv.addi(3, 0, 1), //    addi x3, x0, 1      (fall-through marker)
      rv.ebreak(), //         ebreak              (RAM+8)
      rv.addi(3, 0, 2), //    addi x3, x0, 2      (taken marker)
      rv.ebreak(), //         ebreak              (RAM+16)
    ];
    const m = load(code, { regs: { 1: a, 2: b } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: 3, pc: taken ? RAM + 16 : RAM + 8 });
    expectRegs(m, { 3: taken ? 2 : 1 });
    expect(m.counters).toEqual({ instret: 2n, branches: 1n }); // a branch counts whether taken or not
  });

  // A branch with x0 as either operand decodes to a compare-with-zero form (beqz, bnez, bltz, bgez, and
  // bgtz/blez for blt/bge with rs1 = x0): both positions, with a negative, zero and positive register.
  const zeroCases: Array<[Br, 'rs1' | 'rs2', number, boolean]> = [];
  const cmp: Record<Br, (a: number, b: number) => boolean> = {
    beq: (a, b) => a === b, bne: (a, b) => a !== b, blt: (a, b) => (a | 0) < (b | 0), bge: (a, b) => (a | 0) >= (b | 0),
    bltu: (a, b) => a >>> 0 < b >>> 0, bgeu: (a, b) => a >>> 0 >= b >>> 0,
  };
  for (const op of Object.keys(cmp) as Br[]) {
    for (const v of [INT_MIN, 0xffffffff, 0, 1, INT_MAX]) {
      zeroCases.push([op, 'rs2', v, cmp[op](v, 0)], [op, 'rs1', v, cmp[op](0, v)]);
    }
  }
  it.each(zeroCases)('%s with x0 as %s and the other register %d: taken=%s', async (op, zeroAt, v, taken) => {
    const code = [
      zeroAt === 'rs2' ? rv[op](1, 0, 12) : rv[op](0, 1, 12), // <op> x1, x0, .+12 or <op> x0, x1, .+12
      rv.addi(3, 0, 1), //    addi x3, x0, 1      (fall-through marker)
      rv.ebreak(), //         ebreak              (RAM+8)
      rv.addi(3, 0, 2), //    addi x3, x0, 2      (taken marker)
      rv.ebreak(), //         ebreak              (RAM+16)
    ];
    const m = load(code, { regs: { 1: v } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: 3, pc: taken ? RAM + 16 : RAM + 8 });
    expectRegs(m, { 3: taken ? 2 : 1 });
    expect(m.counters).toEqual({ instret: 2n, branches: 1n });
  });

  it('a backward branch loops the expected number of times', async () => {
    const a = new Asm();
    a.li(1, 10).li(2, 0);
    a.label('loop').addi(2, 2, 3).addi(1, 1, -1).bne(1, 0, 'loop'); // loop: addi x2,x2,3; addi x1,x1,-1; bne x1,x0,loop
    const { m } = await runToEbreak(a);
    expectRegs(m, { 1: 0, 2: 30 });
  });

  it('a branch with the largest offsets reaches +4094 and -4096', async () => {
    const a = new Asm();
    a.beq(0, 0, 'far'); //                  beq x0, x0, far     (+4094 is not 4-aligned: put a c.nop first)
    for (let i = 0; i < 1022; i++) a.nop();
    a.c_nop(); //                           pad to RAM + 4094
    a.label('far');
    expect(a.addr('far')).toBe(RAM + 4094);
    a.li(5, 77);
    const { m } = await runToEbreak(a);
    expectRegs(m, { 5: 77 });

    const b = new Asm();
    b.j('start'); //                         jal x0, start
    b.label('back').li(5, 88).ebreak();
    while (b.offset < 4096 + 4) b.nop();
    b.label('start').beq(0, 0, 'back'); //   beq x0, x0, back    (offset -4096)
    const bytes = b.bytes();
    expect(b.addr('start') - b.addr('back')).toBe(4096);
    const m2 = load(bytes);
    const r = await m2.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: 3, pc: RAM + 8 });
    expectRegs(m2, { 5: 88 });
  });
});

describe('jal and jalr', () => {
  it('jal links pc+4 and jumps by its offset', async () => {
    const code = [
      rv.jal(1, 12), //       jal x1, .+12        (RAM+0 -> RAM+12)
      rv.addi(5, 0, 1), //    addi x5, x0, 1      (skipped)
      rv.ebreak(), //         ebreak
      rv.addi(6, 0, 2), //    addi x6, x0, 2      (RAM+12)
      rv.ebreak(), //         ebreak              (RAM+16)
    ];
    const m = load(code);
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: 3, pc: RAM + 16 });
    expectRegs(m, { 1: RAM + 4, 5: 0, 6: 2 });
    expect(m.counters).toEqual({ instret: 2n, branches: 1n });
  });

  it('jal x0 jumps without linking, and a backward jal reaches earlier code', async () => {
    const a = new Asm();
    a.j('fwd'); //                           jal x0, fwd
    a.label('back').li(6, 2).ebreak();
    a.label('fwd').li(5, 1).jal(0, 'back'); // addi x5, x0, 1; jal x0, back
    const m = load(a);
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: 3, pc: RAM + 8 });
    expectRegs(m, { 0: 0, 5: 1, 6: 2 });
    expect(m.counters.branches).toBe(2n);
  });

  it('jalr jumps to rs1 + offset and links pc+4', async () => {
    const code = [
      rv.jalr(1, 2, -4), //   jalr x1, -4(x2)     with x2 = RAM + 16 -> RAM + 12
      rv.addi(5, 0, 1), //    addi x5, x0, 1      (skipped)
      rv.ebreak(), //         ebreak
      rv.addi(6, 0, 2), //    addi x6, x0, 2      (RAM+12)
      rv.ebreak(), //         ebreak              (RAM+16)
    ];
    const m = load(code, { regs: { 2: RAM + 16 } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: 3, pc: RAM + 16 });
    expectRegs(m, { 1: RAM + 4, 5: 0, 6: 2 });
    expect(m.counters).toEqual({ instret: 2n, branches: 1n });
  });

  it('jalr x0 (ret, jr) jumps to rs1 + offset with bit 0 cleared and links nothing', async () => {
    const code = [
      rv.jalr(0, 2, -3), //   jalr x0, -3(x2)     with x2 = RAM + 16 -> (RAM + 13) & ~1 = RAM + 12
      rv.addi(5, 0, 1), //    addi x5, x0, 1      (skipped)
      rv.ebreak(), //         ebreak
      rv.add(7, 0, 0), //     add x7, x0, x0      (RAM+12: x0 still reads 0)
      rv.ebreak(), //         ebreak              (RAM+16)
    ];
    const m = load(code, { regs: { 1: 0x1234, 2: RAM + 16, 7: 99 } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: 3, pc: RAM + 16 });
    expectRegs(m, { 0: 0, 1: 0x1234, 2: RAM + 16, 5: 0, 7: 0 });
    expect(m.counters).toEqual({ instret: 2n, branches: 1n });
  });

  it('jalr clears bit 0 of the computed target', async () => {
    const code = [
      rv.jalr(1, 2, 1), //    jalr x1, 1(x2)      with x2 = RAM + 12 -> (RAM + 13) & ~1 = RAM + 12
      rv.addi(5, 0, 1), //    addi x5, x0, 1
      rv.ebreak(), //         ebreak
      rv.addi(6, 0, 2), //    addi x6, x0, 2      (RAM+12)
      rv.ebreak(), //         ebreak
    ];
    const m = load(code, { regs: { 2: RAM + 12 } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: 3, pc: RAM + 16 });
    expectRegs(m, { 1: RAM + 4, 6: 2 });

    const m2 = load(code, { regs: { 2: RAM + 13 } }); // an odd register value with offset 0
    m2.writeMemory(RAM, le32(rv.jalr(1, 2, 0))); //     jalr x1, 0(x2)
    const r2 = await m2.run({ maxInstructions: 100 });
    expect(r2).toMatchObject({ kind: 'trap', cause: 3, pc: RAM + 16 });
    expectRegs(m2, { 6: 2 });
  });

  it('jalr with rd = rs1 jumps to the old rs1 value and then links', async () => {
    const code = [
      rv.jalr(2, 2, 0), //    jalr x2, 0(x2)      with x2 = RAM + 12
      rv.ebreak(), //         ebreak
      rv.ebreak(), //         ebreak
      rv.addi(6, 0, 2), //    addi x6, x0, 2      (RAM+12)
      rv.ebreak(), //         ebreak
    ];
    const m = load(code, { regs: { 2: RAM + 12 } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: 3, pc: RAM + 16 });
    expectRegs(m, { 2: RAM + 4, 6: 2 });
  });

  it('jalr to a 2-byte aligned address is allowed with the C extension (IALIGN=16)', async () => {
    const a = new Asm();
    a.jalr(1, 2, 0); //                      jalr x1, 0(x2)      x2 = RAM + 6
    a.c_nop(); //                            c.nop               (RAM+4)
    a.c_li(5, 9); //                         c.li x5, 9          (RAM+6)
    a.ebreak(); //                           ebreak              (RAM+8)
    const m = load(a, { regs: { 2: RAM + 6 } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: 3, pc: RAM + 8 });
    expectRegs(m, { 1: RAM + 4, 5: 9 });
  });

  it('call and return through ra work as a pair', async () => {
    const a = new Asm();
    a.li(10, 5).jal(1, 'double').jal(1, 'double').j('done'); // two calls: 5 -> 10 -> 20
    a.label('double').add(10, 10, 10).jalr(0, 1, 0); //        add a0,a0,a0; ret
    a.label('done');
    const { m } = await runToEbreak(a);
    expectRegs(m, { 10: 20 });
    expect(m.counters.branches).toBe(5n); // 2 calls + 2 returns + 1 jump
  });
});
