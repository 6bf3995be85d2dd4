// The block compiler under hostile code: a loop whose body mixes random words (mostly illegal
// encodings, some anything at all), random compressed halfwords and valid instructions of every kind the
// hart has (ALU, M, loads, stores, AMOs, LR/SC, CSR reads, fence.i, ecall, ebreak, wfi, jumps forward and
// computed), run until it is compiled, with a trap handler that steps over whatever trapped. The program
// may wreck itself (random stores over its own code, random CSR writes, registers clobbered): whatever
// it does, the interpreter and the compiler must agree at every stop, and the host must survive.
// LOCKSTEP_JIT_FUZZ_SEEDS=first-last runs another range (default 1-150).
import { describe, expect, it } from 'vitest';
import { Asm, rv, rvc } from '../helpers/asm.js';
import { HAS_JIT, inStep } from '../helpers/engines.js';
import { CSR, DATA, RAM, RAM_SIZE } from './harness.js';
import { prng } from './prng.js';

const [firstSeed, lastSeed] = (process.env.LOCKSTEP_JIT_FUZZ_SEEDS ?? '1-150').split('-').map(Number) as [number, number];

/** Registers the generated instructions write (x28-x30 belong to the handler, x31 counts the loop, x2 is the data base). */
const DST = [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27];
const SRC = [0, 2, ...DST];
/** CSRs the generated code may read: all deterministic (counters count instructions). */
const READ_CSRS = [CSR.mscratch, CSR.misa, CSR.mhartid, CSR.mstatus, CSR.mcycle, CSR.minstret, CSR.cycle, CSR.instret, CSR.mcause, CSR.mepc, CSR.mtval];

function program(seed: number): Uint8Array {
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
  const a = new Asm();
  a.la(5, 'handler').csrrw(0, CSR.mtvec, 5);
  for (const r of DST) a.li(r, rnd() < 0.3 ? pick([0, 1, -1, 0x80000000, 0x7fffffff, DATA, DATA + 3]) : Math.floor(rnd() * 2 ** 32));
  a.li(2, DATA);
  a.li(31, 200);
  a.label('loop');
  const pending: string[] = [];
  let labels = 0;
  const n = 8 + int(40);
  for (let i = 0; i < n; i++) {
    const rd = pick(DST), r1 = pick(SRC), r2 = pick(SRC);
    const k = int(100);
    if (k < 12) {
      a.word(((Math.floor(rnd() * 2 ** 32) >>> 2) << 2) | 3); // any 32-bit encoding
    } else if (k < 18) {
      let h = int(0x10000);
      if ((h & 3) === 3) h &= ~1; // a 16-bit encoding
      a.half(h);
    } else if (k < 40) {
      const op = pick(['add', 'sub', 'xor', 'or', 'and', 'sll', 'srl', 'sra', 'slt', 'sltu', 'mul', 'mulh', 'mulhsu', 'mulhu', 'div', 'divu', 'rem', 'remu'] as const);
      a.word(rv[op](rd, r1, r2));
    } else if (k < 48) {
      a.word(rv[pick(['addi', 'xori', 'ori', 'andi', 'slti', 'sltiu'] as const)](rd, r1, int(4096) - 2048));
    } else if (k < 56) {
      a.word(rv[pick(['lw', 'lh', 'lhu', 'lb', 'lbu'] as const)](rd, int(4096) - 2048, pick([2, 2, 2, r1])));
    } else if (k < 62) {
      a.word(rv[pick(['sw', 'sh', 'sb'] as const)](r1, int(4096) - 2048, pick([2, 2, 2, r2])));
    } else if (k < 68) {
      const op = pick(['amoswap_w', 'amoadd_w', 'amoxor_w', 'amoand_w', 'amoor_w', 'amomin_w', 'amomax_w', 'amominu_w', 'amomaxu_w'] as const);
      a.word(rv[op](rd, r2, pick([2, 2, r1]))); // rd, value, address
    } else if (k < 71) {
      a.word(rv.lr_w(rd, pick([2, r1])));
      if (rnd() < 0.7) a.word(rv.sc_w(pick(DST), r2, pick([2, r1])));
    } else if (k < 75) {
      a.word(rv.csrrs(rd, pick(READ_CSRS), 0));
    } else if (k < 77) {
      a.word(rv.csrrw(rd, CSR.mscratch, r1));
    } else if (k < 80) {
      // wfi with no interrupt enabled halts the hart for good: rare, or most programs would end there.
      a.word(rnd() < 0.03 ? rv.wfi() : pick([rv.fence(), rv.fence_i(), rv.ecall(), rv.ebreak()]));
    } else if (k < 84) {
      a.half(pick([rvc.c_nop(), 0x9002 /* c.ebreak */]));
    } else if (k < 92) {
      const l = `f${labels++}`;
      a[pick(['beq', 'bne', 'blt', 'bge', 'bltu', 'bgeu'] as const)](r1, r2, l);
      pending.push(l);
    } else if (k < 95) {
      const l = `f${labels++}`;
      a.jal(pick([0, 1]), l);
      pending.push(l);
    } else if (k < 98) {
      // A computed jump forward (a jalr through a register, with a random low bit the hart must clear).
      const l = `f${labels++}`;
      a.la(rd, l).jalr(pick([0, 1]), rd, int(2));
      pending.push(l);
    } else {
      a.word(rv.jalr(pick([0, 1]), r1, int(4096) - 2048)); // anywhere at all
    }
    if (pending.length > 0 && rnd() < 0.35) a.label(pending.shift()!);
  }
  for (const l of pending) a.label(l);
  a.addi(31, 31, -1).bne(31, 0, 'loop');
  a.label('end').ebreak();
  // Steps over the instruction that trapped (its length from its first halfword); a fetch fault
  // (misaligned, access, page: causes 0, 1, 12) goes back to the loop instead.
  a.align(4).label('handler').csrrs(28, CSR.mcause, 0); // mtvec's base is 4-byte aligned
  a.li(29, 2).bltu(28, 29, 'refetch').li(29, 12).beq(28, 29, 'refetch');
  a.li(29, 3).bne(28, 29, 'step');
  // The closing ebreak (after the loop) ends the run: mtvec = 0 makes the next trap a fetch fault at 0.
  a.csrrs(28, CSR.mepc, 0).la(29, 'end').bne(28, 29, 'step');
  a.csrrw(0, CSR.mtvec, 0).ebreak();
  a.label('step').csrrs(28, CSR.mepc, 0).lhu(29, 0, 28).andi(29, 29, 3).li(30, 3);
  a.addi(28, 28, 2).bne(29, 30, 'set').addi(28, 28, 2);
  a.label('set').csrrw(0, CSR.mepc, 28).mret();
  a.label('refetch').la(28, 'loop').csrrw(0, CSR.mepc, 28).mret();
  return a.bytes();
}

describe.skipIf(!HAS_JIT)('block compiler against the interpreter on hostile code', () => {
  it(`random words and every kind of instruction in a compiled loop agree at every stop (seeds ${firstSeed}-${lastSeed})`, async () => {
    expect(Number.isInteger(firstSeed) && Number.isInteger(lastSeed) && firstSeed <= lastSeed, 'LOCKSTEP_JIT_FUZZ_SEEDS is first-last').toBe(true);
    let blocks = 0;
    let entries = 0;
    for (let seed = firstSeed; seed <= lastSeed; seed++) {
      const code = program(seed);
      const rnd = prng(seed * 7919);
      const mix = [1, 2, 3, 7, 19, 64, 333, 1001, 5000, 20_000];
      let total = 0;
      // Random stops, about 150 000 instructions in all, then the end (the run may never finish on its own).
      const budgets = (function* () {
        while (total < 150_000) {
          const b = mix[Math.floor(rnd() * mix.length)]!;
          total += b;
          yield b;
        }
      })();
      const r = await inStep({ memory: RAM_SIZE }, (m) => {
        m.writeMemory(RAM, code);
        m.pc = RAM;
      }, budgets);
      expect(r.stops, `seed ${seed}`).toBeGreaterThan(0);
      blocks += r.jit!.blocks;
      entries += r.jit!.entries;
    }
    // The compiler ran: programs were compiled and entered (not all: some wreck themselves early).
    expect(blocks).toBeGreaterThan(lastSeed - firstSeed + 1);
    expect(entries).toBeGreaterThan(10 * (lastSeed - firstSeed + 1));
  }, 600_000);
});
