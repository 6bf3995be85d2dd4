// RV32C: every compressed form computes what its expansion does, compressed jumps link pc+2, 16- and 32-bit
// instructions mix at 2-byte alignment, and reserved compressed encodings are illegal instructions.
import { describe, expect, it } from 'vitest';
import { Asm, rvc } from '../helpers/asm.js';
import { CAUSE, DATA, RAM, expectRegs, fmtRegs, le32, load, readU32, runToEbreak, type Regs } from './harness.js';

// [disassembly, halfword, initial registers, expected registers]
type Row = [string, number, Regs, Regs];

const rows: Row[] = [
  ['c.addi4spn x8, sp, 16', rvc.c_addi4spn(8, 16), { 2: 0x1000 }, { 8: 0x1010 }],
  ['c.addi4spn x15, sp, 1020', rvc.c_addi4spn(15, 1020), { 2: 0x1000 }, { 15: 0x13fc }],
  ['c.addi4spn x9, sp, 4', rvc.c_addi4spn(9, 4), { 2: 0xfffffffc }, { 9: 0 }],
  ['c.nop', rvc.c_nop(), { 5: 3 }, { 5: 3 }],
  ['c.addi x5, -3', rvc.c_addi(5, -3), { 5: 10 }, { 5: 7 }],
  ['c.addi x31, 31', rvc.c_addi(31, 31), { 31: 1 }, { 31: 32 }],
  ['c.addi x1, -32', rvc.c_addi(1, -32), { 1: 0 }, { 1: -32 }],
  ['c.li x5, -32', rvc.c_li(5, -32), { 5: 7 }, { 5: 0xffffffe0 }],
  ['c.li x5, 31', rvc.c_li(5, 31), {}, { 5: 31 }],
  ['c.li x5, 0', rvc.c_li(5, 0), { 5: 7 }, { 5: 0 }],
  ['c.addi16sp sp, -32', rvc.c_addi16sp(-32), { 2: 0x1000 }, { 2: 0xfe0 }],
  ['c.addi16sp sp, 496', rvc.c_addi16sp(496), { 2: 0x1000 }, { 2: 0x11f0 }],
  ['c.addi16sp sp, -512', rvc.c_addi16sp(-512), { 2: 0x1000 }, { 2: 0xe00 }],
  ['c.lui x5, 1', rvc.c_lui(5, 1), { 5: 0xfff }, { 5: 0x1000 }],
  ['c.lui x5, 0x1f', rvc.c_lui(5, 0x1f), {}, { 5: 0x1f000 }],
  ['c.lui x5, 0xfffe0', rvc.c_lui(5, 0xfffe0), {}, { 5: 0xfffe0000 }], // sign-extended from bit 17
  ['c.lui x5, 0xfffff', rvc.c_lui(5, 0xfffff), {}, { 5: 0xfffff000 }],
  ['c.srli x8, 31', rvc.c_srli(8, 31), { 8: 0x80000000 }, { 8: 1 }],
  ['c.srli x8, 4', rvc.c_srli(8, 4), { 8: 0xf0000000 }, { 8: 0x0f000000 }],
  ['c.srai x8, 4', rvc.c_srai(8, 4), { 8: 0xf0000000 }, { 8: 0xff000000 }],
  ['c.srai x9, 31', rvc.c_srai(9, 31), { 9: 0x7fffffff }, { 9: 0 }],
  ['c.andi x8, -2', rvc.c_andi(8, -2), { 8: 0xffffffff }, { 8: 0xfffffffe }], // immediate sign-extended
  ['c.andi x8, 15', rvc.c_andi(8, 15), { 8: 0x12345678 }, { 8: 8 }],
  ['c.andi x8, 0', rvc.c_andi(8, 0), { 8: 0x12345678 }, { 8: 0 }],
  ['c.sub x8, x9', rvc.c_sub(8, 9), { 8: 5, 9: 7 }, { 8: -2, 9: 7 }],
  ['c.xor x10, x11', rvc.c_xor(10, 11), { 10: 0xff00ff00, 11: 0x0ff00ff0 }, { 10: 0xf0f0f0f0 }],
  ['c.or x12, x13', rvc.c_or(12, 13), { 12: 0xff00ff00, 13: 0x0ff00ff0 }, { 12: 0xfff0fff0 }],
  ['c.and x14, x15', rvc.c_and(14, 15), { 14: 0xff00ff00, 15: 0x0ff00ff0 }, { 14: 0x0f000f00 }],
  ['c.slli x5, 31', rvc.c_slli(5, 31), { 5: 3 }, { 5: 0x80000000 }],
  ['c.slli x31, 1', rvc.c_slli(31, 1), { 31: 0x40000001 }, { 31: 0x80000002 }],
  ['c.mv x5, x6', rvc.c_mv(5, 6), { 5: 1, 6: 0xabcdef01 }, { 5: 0xabcdef01, 6: 0xabcdef01 }],
  ['c.add x5, x6', rvc.c_add(5, 6), { 5: 0xffffffff, 6: 2 }, { 5: 1 }],
  ['c.add x5, x5', rvc.c_add(5, 5), { 5: 21 }, { 5: 42 }],
];

describe('compressed computational forms', () => {
  for (const [asm, code, regs, want] of rows) {
    it(`${asm} with ${fmtRegs(regs)} gives ${fmtRegs(want)}`, async () => {
      const a = new Asm().half(code);
      const { m } = await runToEbreak(a, { regs });
      expectRegs(m, want);
    });
  }
});

describe('compressed loads and stores', () => {
  it('c.lw and c.sw address with a scaled unsigned offset from a compressed register', async () => {
    const a = new Asm();
    a.c_lw(9, 124, 8); //         c.lw x9, 124(x8)
    a.c_sw(9, 0, 8); //           c.sw x9, 0(x8)
    a.c_lw(10, 4, 8); //          c.lw x10, 4(x8)
    a.c_sw(10, 64, 8); //         c.sw x10, 64(x8)
    const data = new Uint8Array(128);
    data.set(le32(0xdeadbeef), 124);
    data.set(le32(0x80000001), 4);
    const { m } = await runToEbreak(a, { regs: { 8: DATA }, data });
    expectRegs(m, { 9: 0xdeadbeef, 10: 0x80000001 });
    expect(readU32(m, DATA)).toBe(0xdeadbeef);
    expect(readU32(m, DATA + 64)).toBe(0x80000001);
  });

  it('c.lwsp and c.swsp address from sp with a scaled unsigned offset and any register', async () => {
    const a = new Asm();
    a.c_lwsp(1, 252); //          c.lwsp x1, 252(sp)
    a.c_swsp(1, 0); //            c.swsp x1, 0(sp)
    a.c_lwsp(31, 128); //         c.lwsp x31, 128(sp)
    a.c_swsp(31, 68); //          c.swsp x31, 68(sp)
    a.c_swsp(0, 8); //            c.swsp x0, 8(sp)     (stores zero)
    const data = new Uint8Array(256).fill(0x11);
    data.set(le32(0x12345678), 252);
    data.set(le32(0xcafebabe), 128);
    const { m } = await runToEbreak(a, { regs: { 2: DATA }, data });
    expectRegs(m, { 1: 0x12345678, 31: 0xcafebabe });
    expect(readU32(m, DATA)).toBe(0x12345678);
    expect(readU32(m, DATA + 68)).toBe(0xcafebabe);
    expect(readU32(m, DATA + 8)).toBe(0);
  });
});

describe('compressed control transfer', () => {
  it('c.j jumps forwards and backwards without linking', async () => {
    const a = new Asm();
    a.c_j('fwd'); //              c.j fwd
    a.label('back').c_li(6, 2).ebreak();
    a.label('fwd').c_li(5, 1).c_j('back'); // c.li x5, 1; c.j back
    const m = load(a, { regs: { 1: 0x55 } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: RAM + 4 });
    expectRegs(m, { 1: 0x55, 5: 1, 6: 2 });
    expect(m.counters).toEqual({ instret: 4n, branches: 2n });
  });

  it('c.jal links pc+2, not pc+4', async () => {
    const a = new Asm();
    a.c_nop(); //                 c.nop                (RAM+0)
    a.c_jal('target'); //         c.jal target         (RAM+2) -> x1 = RAM+4
    a.ebreak();
    a.label('target').ebreak();
    const m = load(a);
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: a.addr('target') });
    expectRegs(m, { 1: RAM + 4 });
    expect(m.counters).toEqual({ instret: 2n, branches: 1n });
  });

  it('c.jalr links pc+2 and jumps to rs1; c.jr jumps without linking', async () => {
    const a = new Asm();
    a.c_jalr(5); //               c.jalr x5            (RAM+0) -> x1 = RAM+2
    a.ebreak(); //                                     (RAM+2)
    a.label('t1').c_jr(6); //     c.jr x6              (RAM+6)
    a.ebreak();
    a.label('t2').ebreak();
    a.bytes();
    const m = load(a, { regs: { 5: a.addr('t1'), 6: a.addr('t2') } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: a.addr('t2') });
    expectRegs(m, { 1: RAM + 2 });
    expect(m.counters).toEqual({ instret: 2n, branches: 2n });
  });

  it('c.jalr ra jumps to the old ra and then overwrites it', async () => {
    const a = new Asm();
    a.c_jalr(1); //               c.jalr x1
    a.ebreak();
    a.label('t').ebreak();
    a.bytes();
    const m = load(a, { regs: { 1: a.addr('t') } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: a.addr('t') });
    expectRegs(m, { 1: RAM + 2 });
  });

  it('c.jalr clears bit 0 of the target like jalr', async () => {
    const a = new Asm();
    a.c_jalr(5).ebreak().label('t').c_li(7, 3).ebreak();
    a.bytes();
    const m = load(a, { regs: { 5: a.addr('t') + 1 } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: a.addr('t') + 2 });
    expectRegs(m, { 7: 3 });
  });

  // [disassembly, x8, taken]
  const cb: Array<['c_beqz' | 'c_bnez', number, boolean]> = [
    ['c_beqz', 0, true], ['c_beqz', 1, false], ['c_beqz', 0x80000000, false],
    ['c_bnez', 0, false], ['c_bnez', 0xffffffff, true], ['c_bnez', 0x80000000, true],
  ];
  it.each(cb)('%s x8 with x8 = %i: taken = %s', async (op, v, taken) => {
    const a = new Asm();
    a[op](8, 'taken'); //         c.beqz/c.bnez x8, taken
    a.c_li(5, 1).ebreak(); //     fall-through marker
    a.label('taken').c_li(5, 2).ebreak();
    const m = load(a, { regs: { 8: v } });
    const r = await m.run({ maxInstructions: 100 });
    expect(r.kind).toBe('trap');
    expectRegs(m, { 5: taken ? 2 : 1 });
    expect(m.counters).toEqual({ instret: 2n, branches: 1n });
  });

  it('c.bnez loops backwards and c.beqz reaches its largest offsets', async () => {
    const a = new Asm();
    a.c_li(8, 5).c_li(9, 0);
    a.label('loop').c_addi(9, 2).c_addi(8, -1).c_bnez(8, 'loop');
    a.c_beqz(8, 'far'); //        taken: x8 = 0, offset +254
    for (let i = 0; i < 126; i++) a.c_nop();
    a.label('far');
    const { m } = await runToEbreak(a);
    expectRegs(m, { 8: 0, 9: 10 });
    expect(m.counters.branches).toBe(6n);
  });

  it('c.ebreak raises a breakpoint (cause 3) at its own address', async () => {
    const a = new Asm().c_nop().c_ebreak().c_nop();
    const m = load(a);
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: RAM + 2 });
    expect(m.counters.instret).toBe(1n);
  });
});

describe('mixing 16- and 32-bit instructions', () => {
  it('a 32-bit instruction at a 2-byte aligned address executes normally', async () => {
    const a = new Asm();
    a.c_li(5, 1); //              c.li x5, 1           (RAM+0)
    a.addi(6, 5, 100); //         addi x6, x5, 100     (RAM+2: spans two words)
    a.c_addi(6, 1); //            c.addi x6, 1         (RAM+6)
    a.jal(1, 'next'); //          jal x1, next         (RAM+8) -> x1 = RAM+12
    a.label('next');
    const { m } = await runToEbreak(a);
    expectRegs(m, { 5: 1, 6: 102, 1: RAM + 12 });
  });

  it('a 32-bit instruction straddling a 4 KiB page boundary executes normally', async () => {
    const a = new Asm();
    while (a.offset < 4096 - 2) a.c_nop();
    a.lui(5, 0x12345); //         lui x5, 0x12345      (RAM+4094)
    const { m } = await runToEbreak(a);
    expectRegs(m, { 5: 0x12345000 });
  });
});

describe('faults in compressed instructions', () => {
  it('c.lw from unmapped memory faults at its own 2-byte aligned address with mtval = the address', async () => {
    const a = new Asm().c_nop().c_lw(9, 4, 8).c_nop();
    const m = load(a, { regs: { 8: 0x90000000 } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.loadAccess, pc: RAM + 2, tval: 0x90000004, instret: 1n });
  });

  it('c.swsp to unmapped memory raises a store access fault', async () => {
    const a = new Asm().c_swsp(5, 8);
    const m = load(a, { regs: { 2: 0x90000000 } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.storeAccess, pc: RAM, tval: 0x90000008 });
  });

  it('c.jr to unmapped memory raises an instruction access fault at the target', async () => {
    const a = new Asm().c_jr(5);
    const m = load(a, { regs: { 5: 0x90000000 } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.fetchAccess, pc: 0x90000000, tval: 0x90000000 });
  });
});

describe('compressed HINTs', () => {
  // Unprivileged spec, RVC "HINT instructions": these encodings are HINTs, which execute as no-ops.
  const hints: Array<[string, number]> = [
    ['c.nop 1 (c.addi x0, 1)', 0x0005],
    ['c.addi x5, 0', 0x0281],
    ['c.li x0, 5', 0x4015],
    ['c.lui x0, 1', 0x6005],
    ['c.mv x0, x5', 0x8016],
    ['c.add x0, x5', 0x9016],
    ['c.slli x0, 1', 0x0006],
    ['c.slli x5, 0 (c.slli64)', 0x0282],
    ['c.srli x8, 0 (c.srli64)', 0x8001],
    ['c.srai x8, 0 (c.srai64)', 0x8401],
  ];
  it.each(hints)('%s (0x%x) retires as a no-op', async (_asm, half) => {
    const a = new Asm().half(half);
    const { m, r } = await runToEbreak(a, { regs: { 5: 0x55, 8: 0x88 } });
    expectRegs(m, { 0: 0, 5: 0x55, 8: 0x88 });
    expect(r.instret).toBe(1n);
  });
});

describe('reserved compressed encodings', () => {
  // Unprivileged spec, RVC opcode map: these encodings are reserved and so illegal here.
  const reserved: Array<[string, number]> = [
    ['0x0000 (all-zero halfword: c.addi4spn with nzuimm = 0)', 0x0000],
    ['c.addi4spn x9, sp, 0', 0x0004],
    ['c.lwsp x0, 0(sp)', 0x4002],
    ['c.jr x0', 0x8002],
    ['c.addi16sp sp, 0', 0x6101],
    ['c.lui x1, 0', 0x6081],
  ];
  it.each(reserved)('%s is an illegal instruction with mtval = its 16 bits (0x%x)', async (_asm, half) => {
    const a = new Asm().c_nop().half(half).c_nop();
    const m = load(a);
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.illegal, pc: RAM + 2, tval: half });
  });
});
