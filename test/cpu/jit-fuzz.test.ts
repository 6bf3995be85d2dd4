// The block compiler under hostile code: a loop whose body mixes random words (mostly illegal
// encodings, some anything at all), random compressed halfwords and valid instructions of every kind the
// hart has (ALU, M, loads, stores, AMOs, LR/SC, CSR reads, fence.i, ecall, ebreak, wfi, jumps forward and
// computed), run until it is compiled, with a trap handler that steps over whatever trapped. The program
// may wreck itself (random stores over its own code, random CSR writes, registers clobbered): whatever
// it does, the interpreter and the compiler must agree at every stop, and the host must survive. Once in
// M-mode on physical memory, once in S- or U-mode under Sv32 with timer interrupts, code mapped twice
// and, in half the programs, the page table itself writable by the random stores.
// LOCKSTEP_JIT_FUZZ_SEEDS=first-last runs another range (default 1-150).
import { describe, expect, it } from 'vitest';
import { Asm, rv, rvc } from '../helpers/asm.js';
import { HAS_JIT, inStep } from '../helpers/engines.js';
import { CLINT, CSR, DATA, MIE, RAM, RAM_SIZE } from './harness.js';
import { prng } from './prng.js';

const [firstSeed, lastSeed] = (process.env.LOCKSTEP_JIT_FUZZ_SEEDS ?? '1-150').split('-').map(Number) as [number, number];

/** Registers the generated instructions write (x28-x30 belong to the handler, x31 counts the loop, x2 is the data base). */
const DST = [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27];
const SRC = [0, 2, ...DST];
/** CSRs the generated code may read: all deterministic (counters count instructions). */
const READ_CSRS = [CSR.mscratch, CSR.misa, CSR.mhartid, CSR.mstatus, CSR.mcycle, CSR.minstret, CSR.cycle, CSR.instret, CSR.mcause, CSR.mepc, CSR.mtval];

type Rnd = () => number;

/**
 * The random loop body (8-47 items), then the loop's end: `addi x31, -1; bne x31, loop` and the closing
 * ebreak at 'end'. `alias` (paged programs): the code is mapped at VA - 0x40000000 too, and computed
 * jumps go there now and then.
 */
function body(a: Asm, rnd: Rnd, alias: boolean): void {
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
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
      a.word(rnd() < 0.03 ? rv.wfi() : pick([rv.fence(), rv.fence_i(), rv.ecall(), rv.ebreak(), rv.sfence_vma(0, 0), rv.sfence_vma(r1, 0)]));
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
      // A computed jump forward (a jalr through a register, with a random low bit the hart must clear),
      // in a paged program sometimes to the same code through its alias.
      const l = `f${labels++}`;
      a.la(rd, l);
      if (alias && rnd() < 0.5) a.lui(30, 0xc0000).add(rd, rd, 30);
      a.jalr(pick([0, 1]), rd, int(2));
      pending.push(l);
    } else {
      a.word(rv.jalr(pick([0, 1]), r1, int(4096) - 2048)); // anywhere at all
    }
    if (pending.length > 0 && rnd() < 0.35) a.label(pending.shift()!);
  }
  for (const l of pending) a.label(l);
  a.addi(31, 31, -1).bne(31, 0, 'loop');
  a.label('end').ebreak();
}

/** Random values in the registers the body writes, x2 = DATA, x31 = 200 iterations. */
function registers(a: Asm, rnd: Rnd): void {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
  for (const r of DST) a.li(r, rnd() < 0.3 ? pick([0, 1, -1, 0x80000000, 0x7fffffff, DATA, DATA + 3]) : Math.floor(rnd() * 2 ** 32));
  a.li(2, DATA);
  a.li(31, 200);
}

/**
 * The M-mode trap handler: steps over the instruction that trapped (its length from its first halfword,
 * read with MPRV as the trapping privilege sees it); a fetch fault (causes 0, 1, 12) goes back to the
 * loop; the closing ebreak ends the run (mtvec = 0 makes the next trap end it); a timer interrupt re-arms
 * the timer `tick` instructions on (paged programs).
 */
function handler(a: Asm, tick: number): void {
  a.align(4).label('handler').csrrs(28, CSR.mcause, 0); // mtvec's base is 4-byte aligned
  a.blt(28, 0, 'irq');
  a.li(29, 2).bltu(28, 29, 'refetch').li(29, 12).beq(28, 29, 'refetch');
  a.li(29, 3).bne(28, 29, 'step');
  a.csrrs(28, CSR.mepc, 0).la(29, 'end').bne(28, 29, 'step');
  a.csrrw(0, CSR.mtvec, 0).ebreak();
  a.label('step').li(30, MPRV).csrrs(0, CSR.mstatus, 30);
  a.csrrs(28, CSR.mepc, 0).lhu(29, 0, 28);
  a.csrrc(0, CSR.mstatus, 30).andi(29, 29, 3).li(30, 3);
  a.addi(28, 28, 2).bne(29, 30, 'set').addi(28, 28, 2);
  a.label('set').csrrw(0, CSR.mepc, 28).mret();
  a.label('refetch').la(28, 'loop').csrrw(0, CSR.mepc, 28).mret();
  a.label('irq').li(28, CLINT.mtime).lw(29, 0, 28).li(30, tick).add(29, 29, 30);
  a.li(28, CLINT.mtimecmp).sw(0, 4, 28).sw(29, 0, 28).mret();
}

/** M-mode, physical: the loop runs where it was loaded. */
function program(seed: number): Uint8Array {
  const rnd = prng(seed);
  const a = new Asm();
  a.la(5, 'handler').csrrw(0, CSR.mtvec, 5);
  registers(a, rnd);
  body(a, rnd, false);
  handler(a, 0);
  return a.bytes();
}

// Sv32 layout of the paged programs (physical = virtual for the code, which is also at ALIAS).
const ROOT = RAM + 0x40000; // root table
const L1 = RAM + 0x41000; // 4 KiB leaves for VAs 0x80000000-0x803fffff
const L1_ALIAS = RAM + 0x42000; // for VAs 0x40000000-0x403fffff
const ALIAS = RAM - 0x40000000;
const PTE = { V: 1, R: 2, W: 4, X: 8, U: 16, A: 64, D: 128 } as const;
const MPRV = 1 << 17;
const SATP = 0x180;
const PMPCFG0 = 0x3a0;
const PMPADDR0 = 0x3b0;

/**
 * S- or U-mode under Sv32 with an M timer: the code pages (also at ALIAS), the data page, and below it
 * either more data or — hostile — the leaf page table itself, writable, so random stores remap pages
 * under running (compiled) code. A U-mode program sometimes loses U on a page, an S one gains it.
 */
function pagedProgram(seed: number): { code: Uint8Array; tables: Array<[number, Uint8Array]>; mode: 'S' | 'U' } {
  const rnd = prng(seed);
  const mode = rnd() < 0.5 ? 'S' : 'U';
  const tick = 200 + Math.floor(rnd() * 3000);
  const a = new Asm();
  a.la(5, 'handler').csrrw(0, CSR.mtvec, 5);
  a.li(5, -1).csrrw(0, PMPADDR0, 5).li(5, 0x1f).csrrw(0, PMPCFG0, 5); // S and U may use all memory (NAPOT, RWX)
  a.li(5, 0x80000000 | (ROOT >>> 12)).csrrw(0, SATP, 5);
  a.li(5, 3 << 11).csrrc(0, CSR.mstatus, 5);
  if (mode === 'S') a.li(5, 1 << 11).csrrs(0, CSR.mstatus, 5);
  a.li(5, CLINT.mtime).lw(6, 0, 5).li(7, tick).add(6, 6, 7).li(5, CLINT.mtimecmp).sw(0, 4, 5).sw(6, 0, 5);
  a.li(5, MIE.MTIE).csrrs(0, CSR.mie, 5);
  registers(a, rnd);
  a.la(28, 'loop').csrrw(0, CSR.mepc, 28).mret();
  body(a, rnd, true);
  handler(a, tick);
  const code = a.bytes();

  const u = mode === 'U' ? PTE.U : 0;
  const leaf = (pa: number, flags: number) => (((pa >>> 12) << 10) | flags | PTE.V | PTE.A | PTE.D) >>> 0;
  const root = new Uint32Array(1024);
  const l1 = new Uint32Array(1024);
  const l1Alias = new Uint32Array(1024);
  root[(RAM >>> 22) & 0x3ff] = (((L1 >>> 12) << 10) | PTE.V) >>> 0;
  root[(ALIAS >>> 22) & 0x3ff] = (((L1_ALIAS >>> 12) << 10) | PTE.V) >>> 0;
  const vpn0 = (va: number) => (va >>> 12) & 0x3ff;
  const flip = () => (rnd() < 0.1 ? PTE.U : 0); // now and then a page the mode may not use
  for (let pa = RAM; pa < RAM + code.length + 4096; pa += 4096) {
    const f = PTE.R | PTE.X | (rnd() < 0.3 ? PTE.W : 0);
    l1[vpn0(pa)] = leaf(pa, f | (pa === RAM ? u : u ^ flip())); // the loop's own page stays usable
    l1Alias[vpn0(pa)] = leaf(pa, f | u);
  }
  l1[vpn0(DATA)] = leaf(DATA, PTE.R | PTE.W | u);
  l1[vpn0(DATA + 0x1000)] = leaf(DATA + 0x1000, PTE.R | PTE.W | (u ^ flip()));
  l1[vpn0(DATA - 0x1000)] = rnd() < 0.5 ? leaf(L1, PTE.R | PTE.W | u) : leaf(DATA - 0x1000, PTE.R | PTE.W | u);
  const bytes = (t: Uint32Array) => new Uint8Array(t.buffer);
  return { code, tables: [[ROOT, bytes(root)], [L1, bytes(l1)], [L1_ALIAS, bytes(l1Alias)]], mode };
}

/** Random stops, about `total` instructions in all (a program may never finish on its own). */
function* stops(seed: number, total: number): Generator<number> {
  const rnd = prng(seed * 7919);
  const mix = [1, 2, 3, 7, 19, 64, 333, 1001, 5000, 20_000];
  for (let done = 0; done < total;) {
    const b = mix[Math.floor(rnd() * mix.length)]!;
    done += b;
    yield b;
  }
}

describe.skipIf(!HAS_JIT)('block compiler against the interpreter on hostile code', () => {
  const range = `seeds ${firstSeed}-${lastSeed}`;
  const seeds = lastSeed - firstSeed + 1;
  it('LOCKSTEP_JIT_FUZZ_SEEDS is first-last', () => {
    expect(Number.isInteger(firstSeed) && Number.isInteger(lastSeed) && firstSeed <= lastSeed).toBe(true);
  });

  it(`M-mode: random words and every kind of instruction in a compiled loop agree at every stop (${range})`, async () => {
    let blocks = 0;
    let entries = 0;
    for (let seed = firstSeed; seed <= lastSeed; seed++) {
      const code = program(seed);
      const r = await inStep({ memory: RAM_SIZE }, (m) => {
        m.writeMemory(RAM, code);
        m.pc = RAM;
      }, stops(seed, 150_000));
      expect(r.stops, `seed ${seed}`).toBeGreaterThan(0);
      blocks += r.jit!.blocks;
      entries += r.jit!.entries;
    }
    // The compiler ran: programs were compiled and entered (not all: some wreck themselves early).
    expect(blocks).toBeGreaterThan(seeds);
    expect(entries).toBeGreaterThan(10 * seeds);
  }, 600_000);

  it(`S and U under Sv32 with a timer, page tables in reach of random stores, agree at every stop (${range})`, async () => {
    const modes = { S: 0, U: 0 };
    let translated = 0;
    for (let seed = firstSeed; seed <= lastSeed; seed++) {
      const p = pagedProgram(seed);
      const r = await inStep({ memory: RAM_SIZE, clock: 'virtual' }, (m) => {
        m.writeMemory(RAM, p.code);
        for (const [at, t] of p.tables) m.writeMemory(at, t);
        m.pc = RAM;
      }, stops(seed, 150_000));
      expect(r.stops, `seed ${seed}`).toBeGreaterThan(0);
      modes[p.mode]++;
      translated += r.jit!.translatedEntries;
    }
    // Paged code was compiled and entered, in both modes.
    expect(translated).toBeGreaterThan(10 * seeds);
    expect(modes.S).toBeGreaterThan(0);
    expect(modes.U).toBeGreaterThan(0);
  }, 600_000);
});
