// A extension: every AMO's read-modify-write (signed and unsigned min/max), LR/SC success and failure,
// the aq/rl bits, misaligned AMO/LR/SC traps (6 for AMO and SC, 4 for LR) and access faults on unmapped memory.
import { describe, expect, it } from 'vitest';
import { rv, type Order } from '../helpers/asm.js';
import { CAUSE, DATA, RAM, UNMAPPED, expectRegs, hex, le32, load, readU32, runToEbreak } from './harness.js';

type AmoName = 'amoswap_w' | 'amoadd_w' | 'amoxor_w' | 'amoand_w' | 'amoor_w' | 'amomin_w' | 'amomax_w' |
  'amominu_w' | 'amomaxu_w';

// [disassembly, instruction, old memory value, x6, new memory value]; x5 always receives the old value.
const amos: Array<[string, AmoName, number, number, number]> = [
  ['amoswap.w x5, x6, (x7)', 'amoswap_w', 0x11111111, 0x22222222, 0x22222222],
  ['amoadd.w x5, x6, (x7)', 'amoadd_w', 40, 2, 42],
  ['amoadd.w x5, x6, (x7)', 'amoadd_w', 0xffffffff, 1, 0], // wraps
  ['amoxor.w x5, x6, (x7)', 'amoxor_w', 0xff00ff00, 0x0ff00ff0, 0xf0f0f0f0],
  ['amoand.w x5, x6, (x7)', 'amoand_w', 0xff00ff00, 0x0ff00ff0, 0x0f000f00],
  ['amoor.w x5, x6, (x7)', 'amoor_w', 0xff00ff00, 0x0ff00ff0, 0xfff0fff0],
  ['amomin.w x5, x6, (x7)', 'amomin_w', 0xffffffff, 1, 0xffffffff], //   -1 < 1
  ['amomin.w x5, x6, (x7)', 'amomin_w', 0x80000000, 0x7fffffff, 0x80000000],
  ['amomin.w x5, x6, (x7)', 'amomin_w', 5, 3, 3],
  ['amomax.w x5, x6, (x7)', 'amomax_w', 0xffffffff, 1, 1],
  ['amomax.w x5, x6, (x7)', 'amomax_w', 0x80000000, 0x7fffffff, 0x7fffffff],
  ['amominu.w x5, x6, (x7)', 'amominu_w', 0xffffffff, 1, 1], //         2^32-1 > 1
  ['amominu.w x5, x6, (x7)', 'amominu_w', 0x80000000, 0x7fffffff, 0x7fffffff],
  ['amomaxu.w x5, x6, (x7)', 'amomaxu_w', 0xffffffff, 1, 0xffffffff],
  ['amomaxu.w x5, x6, (x7)', 'amomaxu_w', 0x80000000, 0x7fffffff, 0x80000000],
];

const orders: Array<[string, Order]> = [['', {}], ['.aq', { aq: true }], ['.rl', { rl: true }], ['.aqrl', { aq: true, rl: true }]];

describe('AMOs', () => {
  for (const [asm, op, old, src, after] of amos) {
    it(`${asm}: memory ${hex(old)}, x6 ${hex(src)} -> memory ${hex(after)}, x5 = old memory`, async () => {
      const { m } = await runToEbreak([rv[op](5, 6, 7)], { regs: { 6: src, 7: DATA }, data: le32(old, 0x5a5a5a5a) });
      expectRegs(m, { 5: old, 6: src, 7: DATA });
      expect(readU32(m, DATA)).toBe(after >>> 0);
      expect(readU32(m, DATA + 4)).toBe(0x5a5a5a5a); // the neighbouring word is untouched
    });
  }

  it.each(orders)('amoadd.w%s behaves the same whatever the aq/rl bits', async (_sfx, o) => {
    const { m } = await runToEbreak([rv.amoadd_w(5, 6, 7, o)], { regs: { 6: 3, 7: DATA }, data: le32(4) });
    expectRegs(m, { 5: 4 });
    expect(readU32(m, DATA)).toBe(7);
  });

  it('an AMO with rd = x0 still updates memory', async () => {
    const { m } = await runToEbreak([rv.amoswap_w(0, 6, 7)], { regs: { 6: 99, 7: DATA }, data: le32(1) });
    expectRegs(m, { 0: 0 });
    expect(readU32(m, DATA)).toBe(99);
  });

  it('an AMO with rd = rs2 stores the original rs2 and returns the old memory value', async () => {
    const { m } = await runToEbreak([rv.amoswap_w(6, 6, 7)], { regs: { 6: 0xaaaa, 7: DATA }, data: le32(0xbbbb) });
    expectRegs(m, { 6: 0xbbbb });
    expect(readU32(m, DATA)).toBe(0xaaaa);
  });
});

describe('LR/SC', () => {
  it('lr.w then sc.w to the same address succeeds: rd = 0 and memory is written', async () => {
    const { m } = await runToEbreak([
      rv.lr_w(5, 7), //        lr.w x5, (x7)
      rv.addi(5, 5, 1), //     addi x5, x5, 1
      rv.sc_w(6, 5, 7), //     sc.w x6, x5, (x7)
    ], { regs: { 6: 0x77, 7: DATA }, data: le32(41) });
    expectRegs(m, { 5: 42, 6: 0 });
    expect(readU32(m, DATA)).toBe(42);
  });

  it.each(orders)('lr.w%s / sc.w%s succeed whatever the aq/rl bits', async (_sfx, o) => {
    const { m } = await runToEbreak([rv.lr_w(5, 7, o), rv.sc_w(6, 8, 7, o)],
      { regs: { 6: 0x77, 7: DATA, 8: 9 }, data: le32(1) });
    expectRegs(m, { 5: 1, 6: 0 });
    expect(readU32(m, DATA)).toBe(9);
  });

  it('sc.w without a reservation fails: rd = 1 and memory is unchanged', async () => {
    const { m } = await runToEbreak([rv.sc_w(6, 8, 7)], { regs: { 7: DATA, 8: 9 }, data: le32(1) });
    expectRegs(m, { 6: 1 });
    expect(readU32(m, DATA)).toBe(1);
  });

  it('a second sc.w fails because the first sc.w consumed the reservation', async () => {
    const { m } = await runToEbreak([
      rv.lr_w(5, 7), //        lr.w x5, (x7)
      rv.sc_w(6, 8, 7), //     sc.w x6, x8, (x7)   succeeds
      rv.sc_w(9, 10, 7), //    sc.w x9, x10, (x7)  fails
    ], { regs: { 7: DATA, 8: 2, 10: 3 }, data: le32(1) });
    expectRegs(m, { 6: 0, 9: 1 });
    expect(readU32(m, DATA)).toBe(2);
  });

  it('sc.w to an address outside the reservation set fails and writes nothing', async () => {
    const { m } = await runToEbreak([
      rv.lr_w(5, 7), //        lr.w x5, (x7)
      rv.sc_w(6, 8, 11), //    sc.w x6, x8, (x11)  x11 = x7 + 4 KiB
    ], { regs: { 7: DATA, 8: 2, 11: DATA + 4096 } });
    expectRegs(m, { 6: 1 });
    expect(readU32(m, DATA + 4096)).toBe(0);
  });

  it('a failed sc.w after a failed one still reports 1, and a new lr.w re-arms it', async () => {
    const { m } = await runToEbreak([
      rv.sc_w(6, 8, 7), //     sc.w x6, x8, (x7)   fails
      rv.lr_w(5, 7), //        lr.w x5, (x7)
      rv.sc_w(9, 8, 7), //     sc.w x9, x8, (x7)   succeeds
    ], { regs: { 7: DATA, 8: 5 } });
    expectRegs(m, { 6: 1, 9: 0 });
    expect(readU32(m, DATA)).toBe(5);
  });
});

describe('misaligned and faulting atomics', () => {
  // [disassembly, encoding, expected cause]
  const misaligned: Array<[string, number, number]> = [
    ['lr.w x5, (x7)', rv.lr_w(5, 7), CAUSE.loadMisaligned],
    ['sc.w x5, x6, (x7)', rv.sc_w(5, 6, 7), CAUSE.storeMisaligned],
    ['amoswap.w x5, x6, (x7)', rv.amoswap_w(5, 6, 7), CAUSE.storeMisaligned],
    ['amoadd.w x5, x6, (x7)', rv.amoadd_w(5, 6, 7), CAUSE.storeMisaligned],
    ['amoxor.w x5, x6, (x7)', rv.amoxor_w(5, 6, 7), CAUSE.storeMisaligned],
    ['amoand.w x5, x6, (x7)', rv.amoand_w(5, 6, 7), CAUSE.storeMisaligned],
    ['amoor.w x5, x6, (x7)', rv.amoor_w(5, 6, 7), CAUSE.storeMisaligned],
    ['amomin.w x5, x6, (x7)', rv.amomin_w(5, 6, 7), CAUSE.storeMisaligned],
    ['amomax.w x5, x6, (x7)', rv.amomax_w(5, 6, 7), CAUSE.storeMisaligned],
    ['amominu.w x5, x6, (x7)', rv.amominu_w(5, 6, 7), CAUSE.storeMisaligned],
    ['amomaxu.w x5, x6, (x7)', rv.amomaxu_w(5, 6, 7), CAUSE.storeMisaligned],
  ];

  for (const off of [1, 2, 3]) {
    it.each(misaligned)(`%s at DATA+${off} (0x%x) traps with cause %i and mtval = the address`, async (_asm, code, cause) => {
      const m = load([code, rv.ebreak()], { regs: { 5: 0x1234, 6: 0x99, 7: DATA + off }, data: le32(0x01020304, 0x05060708) });
      const r = await m.run({ maxInstructions: 10 });
      expect(r).toMatchObject({ kind: 'trap', cause, pc: RAM, tval: DATA + off });
      expectRegs(m, { 5: 0x1234 });
      expect(Array.from(m.readMemory(DATA, 8))).toEqual([4, 3, 2, 1, 8, 7, 6, 5]);
    });
  }

  it('a misaligned sc.w traps even with a valid reservation, before writing', async () => {
    const m = load([rv.lr_w(5, 7), rv.sc_w(6, 8, 9), rv.ebreak()], { regs: { 7: DATA, 8: 7, 9: DATA + 2 } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.storeMisaligned, pc: RAM + 4, tval: DATA + 2 });
    expect(readU32(m, DATA)).toBe(0);
  });

  it('lr.w from unmapped memory raises a load access fault (cause 5)', async () => {
    const m = load([rv.lr_w(5, 7), rv.ebreak()], { regs: { 7: UNMAPPED } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.loadAccess, pc: RAM, tval: UNMAPPED });
  });

  it.each([
    ['amoadd.w x5, x6, (x7)', rv.amoadd_w(5, 6, 7)],
    ['amoswap.w x5, x6, (x7)', rv.amoswap_w(5, 6, 7)],
  ] as const)('%s on unmapped memory raises a store/AMO access fault (cause 7)', async (_asm, code) => {
    const m = load([code, rv.ebreak()], { regs: { 7: UNMAPPED } });
    const r = await m.run({ maxInstructions: 10 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.storeAccess, pc: RAM, tval: UNMAPPED });
  });
});
