// Tiny guests for the micro-benchmarks, one per instruction class: each is an endless loop built with
// the test assembler (test/helpers/asm.ts) and run for a fixed instruction budget, so the time per
// budget gives MIPS for that class alone. Code at 0x8000_0000, data at 0x8010_0000.
import { Asm, R } from '../../test/helpers/asm.js';

export const CODE_BASE = 0x8000_0000;
const DATA_BASE = 0x8010_0000;
const UART = 0x1000_0000;
const CSR = { mscratch: 0x340, mcycle: 0xb00, minstret: 0xb02, cycle: 0xc00, instret: 0xc02 } as const;

export interface MicroProgram {
  name: string;
  /** What the loop body executes, for the report. */
  what: string;
  code: Uint8Array;
}

const { t0, t1, t2, t3, t4, t5, t6, a0, a1, a2, a3, a4, a5, s0, s1, ra } = R;

/** Repeats `body` n times inside `loop: … j loop` after `init`. */
function loop(init: (a: Asm) => void, body: (a: Asm, i: number) => void, n: number): Uint8Array {
  const a = new Asm(CODE_BASE);
  init(a);
  a.label('loop');
  for (let i = 0; i < n; i++) body(a, i);
  a.j('loop');
  return a.bytes();
}

const seed = (a: Asm): void => {
  a.li(t0, 0x1234_5678).li(t1, 0x9abc_def1).li(t2, 13).li(t3, 7).li(t4, 0x0f0f_0f0f);
  a.li(a0, DATA_BASE).li(a1, 3).li(a2, 0x7fff_ffff);
};

export const programs: MicroProgram[] = [
  {
    name: 'alu',
    what: 'register/immediate ALU ops (add, sub, xor, or, and, shifts, slt), 32 per loop',
    code: loop(seed, (a, i) => {
      switch (i % 8) {
        case 0: a.add(t5, t0, t1); break;
        case 1: a.xor(t6, t5, t4); break;
        case 2: a.srl(t0, t6, t3); break;
        case 3: a.addi(t1, t1, 77); break;
        case 4: a.sll(t5, t1, t2); break;
        case 5: a.sub(t6, t5, t0); break;
        case 6: a.slli(t4, t6, 3); break;
        default: a.sltu(t3, t0, t1); a.andi(t3, t3, 15);
      }
    }, 28),
  },
  {
    name: 'muldiv',
    what: 'M extension: mul, mulh, mulhu, div, divu, rem, remu, 28 per loop',
    code: loop(seed, (a, i) => {
      switch (i % 7) {
        case 0: a.mul(t5, t0, t1); break;
        case 1: a.mulh(t6, t0, t1); break;
        case 2: a.mulhu(t5, t1, t2); break;
        case 3: a.div(t6, t0, t2); break;
        case 4: a.divu(t5, t1, t3); break;
        case 5: a.rem(t6, t0, t3); break;
        default: a.remu(t5, t1, t2);
      }
    }, 28),
  },
  {
    name: 'load/store',
    what: 'lw/sw/lh/sh/lbu/sb to one 4 KiB page of RAM, 32 per loop',
    code: loop(seed, (a, i) => {
      const off = (i * 36) % 2048;
      switch (i % 6) {
        case 0: a.sw(t0, off & ~3, a0); break;
        case 1: a.lw(t5, off & ~3, a0); break;
        case 2: a.sh(t1, off & ~1, a0); break;
        case 3: a.lh(t6, off & ~1, a0); break;
        case 4: a.sb(t5, off, a0); break;
        default: a.lbu(t6, off, a0);
      }
    }, 32),
  },
  {
    name: 'branch',
    what: 'conditional branches, alternately taken (skipping one instruction) and not taken',
    code: loop(seed, (a, i) => {
      if (i % 2 === 0) {
        a.beq(t0, t0, `skip${i}`); // taken
        a.addi(t6, t6, 1); // never executed
        a.label(`skip${i}`);
      } else {
        a.bne(t0, t0, 8); // not taken: falls through
      }
    }, 32),
  },
  {
    name: 'call/return',
    what: 'jal to a two-instruction leaf function and jalr back, 8 calls per loop',
    code: (() => {
      const a = new Asm(CODE_BASE);
      seed(a);
      a.j('loop');
      a.label('leaf').addi(t5, t5, 1).jalr(0, ra, 0);
      a.label('loop');
      for (let i = 0; i < 8; i++) a.jal(ra, 'leaf').addi(t6, t6, 1);
      a.j('loop');
      return a.bytes();
    })(),
  },
  {
    name: 'compressed',
    what: 'RV32C only: c.addi, c.add, c.mv, c.xor, c.sub, c.slli, c.srli, c.lw, c.sw, c.j',
    code: (() => {
      const a = new Asm(CODE_BASE);
      a.li(s0, DATA_BASE).li(s1, 5).li(a3, 9).li(a4, 1).li(a5, 2);
      a.label('loop');
      for (let i = 0; i < 4; i++) {
        a.c_addi(a3, 3).c_add(a4, a3).c_mv(a5, a4).c_xor(a5, a3).c_sub(a4, s1);
        a.c_slli(a3, 1).c_srli(a3, 1).c_sw(a5, 4 * i, s0).c_lw(a4, 4 * i, s0);
      }
      a.c_j('loop');
      return a.bytes();
    })(),
  },
  {
    name: 'csr',
    what: 'csrr minstret/mcycle/instret/cycle, csrrw mscratch, 30 per loop',
    code: loop(seed, (a, i) => {
      switch (i % 5) {
        case 0: a.csrrs(t5, CSR.minstret, 0); break;
        case 1: a.csrrs(t6, CSR.mcycle, 0); break;
        case 2: a.csrrs(t5, CSR.instret, 0); break;
        case 3: a.csrrs(t6, CSR.cycle, 0); break;
        default: a.csrrw(t0, CSR.mscratch, t0);
      }
    }, 30),
  },
  {
    name: 'mmio store',
    what: 'sb to the UART scratch register (device access, no console output), 32 per loop',
    code: loop((a) => { seed(a); a.li(a0, UART); }, (a) => { a.sb(t0, 7, a0); }, 32),
  },
  {
    name: 'uart output',
    what: "sb to the UART THR: every byte goes through the console ring to a 'console' event",
    code: loop((a) => { seed(a); a.li(a0, UART).li(t0, 0x2e); }, (a) => { a.sb(t0, 0, a0); }, 32),
  },
];
