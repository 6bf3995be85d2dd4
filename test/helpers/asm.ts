// A tiny RV32IMAC + Zicsr + Zifencei (and privileged) assembler for tests: one encoder per instruction
// returning the raw word (or halfword for RV32C), and a builder with labels. Checked byte for byte against GNU as in
// test/cpu/asm.test.ts; it validates operand ranges and throws, it never silently truncates.

/** A register number 0..31 (x0..x31). */
export type Reg = number;

/** ABI register names to numbers, for readability in tests. */
export const R = {
  zero: 0, ra: 1, sp: 2, gp: 3, tp: 4, t0: 5, t1: 6, t2: 7, s0: 8, fp: 8, s1: 9,
  a0: 10, a1: 11, a2: 12, a3: 13, a4: 14, a5: 15, a6: 16, a7: 17,
  s2: 18, s3: 19, s4: 20, s5: 21, s6: 22, s7: 23, s8: 24, s9: 25, s10: 26, s11: 27,
  t3: 28, t4: 29, t5: 30, t6: 31,
} as const;

function reg(r: Reg): number {
  if (!Number.isInteger(r) || r < 0 || r > 31) throw new RangeError(`bad register x${r}`);
  return r;
}

/** A register usable in the 3-bit fields of RV32C (x8..x15), returned as its 3-bit code. */
function creg(r: Reg): number {
  if (!Number.isInteger(r) || r < 8 || r > 15) throw new RangeError(`compressed register must be x8..x15, got x${r}`);
  return r - 8;
}

/** Checks that `v` is a signed `bits`-wide integer that is a multiple of `align`. */
function simm(v: number, bits: number, align = 1, what = 'immediate'): number {
  const lim = 2 ** (bits - 1);
  if (!Number.isInteger(v) || v < -lim || v >= lim || v % align !== 0) {
    throw new RangeError(`${what} ${v} does not fit a signed ${bits}-bit field (multiple of ${align})`);
  }
  return v;
}

/** Checks that `v` is an unsigned `bits`-wide integer that is a multiple of `align`. */
function uimm(v: number, bits: number, align = 1, what = 'immediate'): number {
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** bits || v % align !== 0) {
    throw new RangeError(`${what} ${v} does not fit an unsigned ${bits}-bit field (multiple of ${align})`);
  }
  return v;
}

/** Bits hi..lo of v (as an unsigned number). */
function bits(v: number, hi: number, lo: number): number {
  return Math.floor(v / 2 ** lo) & ((1 << (hi - lo + 1)) - 1) & 0xffffffff;
}

// ---- base formats ---------------------------------------------------------------------------------

function rType(op: number, f3: number, f7: number, rd: Reg, rs1: Reg, rs2: Reg): number {
  return ((f7 << 25) | (reg(rs2) << 20) | (reg(rs1) << 15) | (f3 << 12) | (reg(rd) << 7) | op) >>> 0;
}
function iType(op: number, f3: number, rd: Reg, rs1: Reg, imm: number): number {
  return (((simm(imm, 12) & 0xfff) << 20) | (reg(rs1) << 15) | (f3 << 12) | (reg(rd) << 7) | op) >>> 0;
}
function sType(op: number, f3: number, rs2: Reg, rs1: Reg, imm: number): number {
  const i = simm(imm, 12) & 0xfff;
  return ((bits(i, 11, 5) << 25) | (reg(rs2) << 20) | (reg(rs1) << 15) | (f3 << 12) | (bits(i, 4, 0) << 7) | op) >>> 0;
}
function bType(f3: number, rs1: Reg, rs2: Reg, off: number): number {
  const i = simm(off, 13, 2, 'branch offset') & 0x1fff;
  return ((bits(i, 12, 12) << 31) | (bits(i, 10, 5) << 25) | (reg(rs2) << 20) | (reg(rs1) << 15) | (f3 << 12) |
    (bits(i, 4, 1) << 8) | (bits(i, 11, 11) << 7) | 0x63) >>> 0;
}
function uType(op: number, rd: Reg, imm20: number): number {
  return ((uimm(imm20, 20, 1, 'upper immediate') << 12) | (reg(rd) << 7) | op) >>> 0;
}
function jType(rd: Reg, off: number): number {
  const i = simm(off, 21, 2, 'jump offset') & 0x1fffff;
  return ((bits(i, 20, 20) << 31) | (bits(i, 10, 1) << 21) | (bits(i, 11, 11) << 20) | (bits(i, 19, 12) << 12) |
    (reg(rd) << 7) | 0x6f) >>> 0;
}
function shiftImm(f3: number, f7: number, rd: Reg, rs1: Reg, shamt: number): number {
  return rType(0x13, f3, f7, rd, rs1, uimm(shamt, 5, 1, 'shift amount'));
}
function amo(f5: number, rd: Reg, rs1: Reg, rs2: Reg, aq: boolean, rl: boolean): number {
  return rType(0x2f, 2, (f5 << 2) | (aq ? 2 : 0) | (rl ? 1 : 0), rd, rs1, rs2);
}
function csr(f3: number, rd: Reg, csrNum: number, src: number): number {
  return ((uimm(csrNum, 12, 1, 'csr') << 20) | (src << 15) | (f3 << 12) | (reg(rd) << 7) | 0x73) >>> 0;
}
function fenceSet(s: string): number {
  let v = 0;
  for (const ch of s) {
    const i = 'iorw'.indexOf(ch);
    if (i < 0) throw new RangeError(`bad fence set ${s}`);
    v |= 8 >> i;
  }
  return v;
}

/** Memory-ordering bits of an AMO / LR / SC. */
export interface Order { aq?: boolean; rl?: boolean }

/** RV32I, M, A, Zicsr, Zifencei and privileged instructions: each returns the 32-bit instruction word. */
export const rv = {
  lui: (rd: Reg, imm20: number) => uType(0x37, rd, imm20),
  auipc: (rd: Reg, imm20: number) => uType(0x17, rd, imm20),
  jal: (rd: Reg, off: number) => jType(rd, off),
  jalr: (rd: Reg, rs1: Reg, imm: number) => iType(0x67, 0, rd, rs1, imm),
  beq: (rs1: Reg, rs2: Reg, off: number) => bType(0, rs1, rs2, off),
  bne: (rs1: Reg, rs2: Reg, off: number) => bType(1, rs1, rs2, off),
  blt: (rs1: Reg, rs2: Reg, off: number) => bType(4, rs1, rs2, off),
  bge: (rs1: Reg, rs2: Reg, off: number) => bType(5, rs1, rs2, off),
  bltu: (rs1: Reg, rs2: Reg, off: number) => bType(6, rs1, rs2, off),
  bgeu: (rs1: Reg, rs2: Reg, off: number) => bType(7, rs1, rs2, off),
  lb: (rd: Reg, imm: number, rs1: Reg) => iType(0x03, 0, rd, rs1, imm),
  lh: (rd: Reg, imm: number, rs1: Reg) => iType(0x03, 1, rd, rs1, imm),
  lw: (rd: Reg, imm: number, rs1: Reg) => iType(0x03, 2, rd, rs1, imm),
  lbu: (rd: Reg, imm: number, rs1: Reg) => iType(0x03, 4, rd, rs1, imm),
  lhu: (rd: Reg, imm: number, rs1: Reg) => iType(0x03, 5, rd, rs1, imm),
  sb: (rs2: Reg, imm: number, rs1: Reg) => sType(0x23, 0, rs2, rs1, imm),
  sh: (rs2: Reg, imm: number, rs1: Reg) => sType(0x23, 1, rs2, rs1, imm),
  sw: (rs2: Reg, imm: number, rs1: Reg) => sType(0x23, 2, rs2, rs1, imm),
  addi: (rd: Reg, rs1: Reg, imm: number) => iType(0x13, 0, rd, rs1, imm),
  slti: (rd: Reg, rs1: Reg, imm: number) => iType(0x13, 2, rd, rs1, imm),
  sltiu: (rd: Reg, rs1: Reg, imm: number) => iType(0x13, 3, rd, rs1, imm),
  xori: (rd: Reg, rs1: Reg, imm: number) => iType(0x13, 4, rd, rs1, imm),
  ori: (rd: Reg, rs1: Reg, imm: number) => iType(0x13, 6, rd, rs1, imm),
  andi: (rd: Reg, rs1: Reg, imm: number) => iType(0x13, 7, rd, rs1, imm),
  slli: (rd: Reg, rs1: Reg, sh: number) => shiftImm(1, 0x00, rd, rs1, sh),
  srli: (rd: Reg, rs1: Reg, sh: number) => shiftImm(5, 0x00, rd, rs1, sh),
  srai: (rd: Reg, rs1: Reg, sh: number) => shiftImm(5, 0x20, rd, rs1, sh),
  add: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 0, 0x00, rd, rs1, rs2),
  sub: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 0, 0x20, rd, rs1, rs2),
  sll: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 1, 0x00, rd, rs1, rs2),
  slt: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 2, 0x00, rd, rs1, rs2),
  sltu: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 3, 0x00, rd, rs1, rs2),
  xor: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 4, 0x00, rd, rs1, rs2),
  srl: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 5, 0x00, rd, rs1, rs2),
  sra: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 5, 0x20, rd, rs1, rs2),
  or: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 6, 0x00, rd, rs1, rs2),
  and: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 7, 0x00, rd, rs1, rs2),
  /** `fence pred, succ` with sets written like GNU as (`'iorw'`, `'rw'`, ...). */
  fence: (pred = 'iorw', succ = 'iorw') => ((fenceSet(pred) << 24) | (fenceSet(succ) << 20) | 0x0f) >>> 0,
  fence_i: () => 0x0000100f,
  ecall: () => 0x00000073,
  ebreak: () => 0x00100073,
  mret: () => 0x30200073,
  sret: () => 0x10200073,
  wfi: () => 0x10500073,
  /** `sfence.vma rs1, rs2` (x0 operands: all addresses / all ASIDs) */
  sfence_vma: (rs1: Reg = 0, rs2: Reg = 0) => rType(0x73, 0, 0x09, 0, rs1, rs2),

  mul: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 0, 0x01, rd, rs1, rs2),
  mulh: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 1, 0x01, rd, rs1, rs2),
  mulhsu: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 2, 0x01, rd, rs1, rs2),
  mulhu: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 3, 0x01, rd, rs1, rs2),
  div: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 4, 0x01, rd, rs1, rs2),
  divu: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 5, 0x01, rd, rs1, rs2),
  rem: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 6, 0x01, rd, rs1, rs2),
  remu: (rd: Reg, rs1: Reg, rs2: Reg) => rType(0x33, 7, 0x01, rd, rs1, rs2),

  /** `lr.w rd, (rs1)` */
  lr_w: (rd: Reg, rs1: Reg, o: Order = {}) => amo(0x02, rd, rs1, 0, !!o.aq, !!o.rl),
  /** `sc.w rd, rs2, (rs1)` */
  sc_w: (rd: Reg, rs2: Reg, rs1: Reg, o: Order = {}) => amo(0x03, rd, rs1, rs2, !!o.aq, !!o.rl),
  /** `amoswap.w rd, rs2, (rs1)`, and likewise for every AMO below. */
  amoswap_w: (rd: Reg, rs2: Reg, rs1: Reg, o: Order = {}) => amo(0x01, rd, rs1, rs2, !!o.aq, !!o.rl),
  amoadd_w: (rd: Reg, rs2: Reg, rs1: Reg, o: Order = {}) => amo(0x00, rd, rs1, rs2, !!o.aq, !!o.rl),
  amoxor_w: (rd: Reg, rs2: Reg, rs1: Reg, o: Order = {}) => amo(0x04, rd, rs1, rs2, !!o.aq, !!o.rl),
  amoand_w: (rd: Reg, rs2: Reg, rs1: Reg, o: Order = {}) => amo(0x0c, rd, rs1, rs2, !!o.aq, !!o.rl),
  amoor_w: (rd: Reg, rs2: Reg, rs1: Reg, o: Order = {}) => amo(0x08, rd, rs1, rs2, !!o.aq, !!o.rl),
  amomin_w: (rd: Reg, rs2: Reg, rs1: Reg, o: Order = {}) => amo(0x10, rd, rs1, rs2, !!o.aq, !!o.rl),
  amomax_w: (rd: Reg, rs2: Reg, rs1: Reg, o: Order = {}) => amo(0x14, rd, rs1, rs2, !!o.aq, !!o.rl),
  amominu_w: (rd: Reg, rs2: Reg, rs1: Reg, o: Order = {}) => amo(0x18, rd, rs1, rs2, !!o.aq, !!o.rl),
  amomaxu_w: (rd: Reg, rs2: Reg, rs1: Reg, o: Order = {}) => amo(0x1c, rd, rs1, rs2, !!o.aq, !!o.rl),

  csrrw: (rd: Reg, c: number, rs1: Reg) => csr(1, rd, c, reg(rs1)),
  csrrs: (rd: Reg, c: number, rs1: Reg) => csr(2, rd, c, reg(rs1)),
  csrrc: (rd: Reg, c: number, rs1: Reg) => csr(3, rd, c, reg(rs1)),
  csrrwi: (rd: Reg, c: number, z: number) => csr(5, rd, c, uimm(z, 5, 1, 'csr uimm')),
  csrrsi: (rd: Reg, c: number, z: number) => csr(6, rd, c, uimm(z, 5, 1, 'csr uimm')),
  csrrci: (rd: Reg, c: number, z: number) => csr(7, rd, c, uimm(z, 5, 1, 'csr uimm')),
};

// ---- RV32C ----------------------------------------------------------------------------------------

function cjImm(off: number): number {
  const i = simm(off, 12, 2, 'jump offset') & 0xfff;
  return (bits(i, 11, 11) << 12) | (bits(i, 4, 4) << 11) | (bits(i, 9, 8) << 9) | (bits(i, 10, 10) << 8) |
    (bits(i, 6, 6) << 7) | (bits(i, 7, 7) << 6) | (bits(i, 3, 1) << 3) | (bits(i, 5, 5) << 2);
}
function cbImm(off: number): number {
  const i = simm(off, 9, 2, 'branch offset') & 0x1ff;
  return (bits(i, 8, 8) << 12) | (bits(i, 4, 3) << 10) | (bits(i, 7, 6) << 5) | (bits(i, 2, 1) << 3) |
    (bits(i, 5, 5) << 2);
}
/** CI-format 6-bit immediate split as imm[5] at bit 12 and imm[4:0] at bits 6..2. */
function ci6(v: number): number {
  return (bits(v & 0x3f, 5, 5) << 12) | (bits(v & 0x3f, 4, 0) << 2);
}
function nonzero(v: number, what: string): number {
  if (v === 0) throw new RangeError(`${what} must be non-zero`);
  return v;
}
function notX0(r: Reg, what: string): Reg {
  if (reg(r) === 0) throw new RangeError(`${what} must not be x0`);
  return r;
}

/** RV32C: each returns the 16-bit instruction halfword. Register operands are plain register numbers. */
export const rvc = {
  /** `c.addi4spn rd', sp, nzuimm` */
  c_addi4spn: (rd: Reg, nzuimm: number) => {
    const u = nonzero(uimm(nzuimm, 10, 4, 'nzuimm'), 'c.addi4spn immediate');
    return (bits(u, 5, 4) << 11) | (bits(u, 9, 6) << 7) | (bits(u, 2, 2) << 6) | (bits(u, 3, 3) << 5) | (creg(rd) << 2);
  },
  /** `c.lw rd', uimm(rs1')` */
  c_lw: (rd: Reg, off: number, rs1: Reg) => {
    const u = uimm(off, 7, 4, 'offset');
    return (2 << 13) | (bits(u, 5, 3) << 10) | (creg(rs1) << 7) | (bits(u, 2, 2) << 6) | (bits(u, 6, 6) << 5) | (creg(rd) << 2);
  },
  /** `c.sw rs2', uimm(rs1')` */
  c_sw: (rs2: Reg, off: number, rs1: Reg) => {
    const u = uimm(off, 7, 4, 'offset');
    return (6 << 13) | (bits(u, 5, 3) << 10) | (creg(rs1) << 7) | (bits(u, 2, 2) << 6) | (bits(u, 6, 6) << 5) | (creg(rs2) << 2);
  },
  c_nop: () => 0x0001,
  /** `c.addi rd, nzimm` */
  c_addi: (rd: Reg, nzimm: number) => (reg(notX0(rd, 'c.addi rd')) << 7) | ci6(nonzero(simm(nzimm, 6), 'c.addi immediate')) | 0x1,
  /** `c.jal offset` (RV32 only; links x1 = pc + 2) */
  c_jal: (off: number) => (1 << 13) | cjImm(off) | 0x1,
  /** `c.li rd, imm` */
  c_li: (rd: Reg, imm: number) => (2 << 13) | (reg(notX0(rd, 'c.li rd')) << 7) | ci6(simm(imm, 6)) | 0x1,
  /** `c.addi16sp sp, nzimm` */
  c_addi16sp: (nzimm: number) => {
    const i = nonzero(simm(nzimm, 10, 16, 'c.addi16sp immediate'), 'c.addi16sp immediate') & 0x3ff;
    return (3 << 13) | (bits(i, 9, 9) << 12) | (2 << 7) | (bits(i, 4, 4) << 6) | (bits(i, 6, 6) << 5) |
      (bits(i, 8, 7) << 3) | (bits(i, 5, 5) << 2) | 0x1;
  },
  /**
   * `c.lui rd, nzimm` where nzimm is the value of bits 17..12 as GNU as writes it: 1..0x1f, or
   * 0xfffe0..0xfffff for negative values (sign-extended from bit 17).
   */
  c_lui: (rd: Reg, nzimm: number) => {
    if (reg(rd) === 0 || rd === 2) throw new RangeError('c.lui rd must not be x0 or x2');
    const ok = (nzimm >= 1 && nzimm <= 0x1f) || (nzimm >= 0xfffe0 && nzimm <= 0xfffff);
    if (!Number.isInteger(nzimm) || !ok) throw new RangeError(`c.lui immediate ${nzimm} out of range`);
    return (3 << 13) | (rd << 7) | ci6(nzimm & 0x3f) | 0x1;
  },
  c_srli: (rd: Reg, sh: number) => (4 << 13) | (0 << 10) | (creg(rd) << 7) | ci6(nonzero(uimm(sh, 5, 1, 'shift'), 'shift')) | 0x1,
  c_srai: (rd: Reg, sh: number) => (4 << 13) | (1 << 10) | (creg(rd) << 7) | ci6(nonzero(uimm(sh, 5, 1, 'shift'), 'shift')) | 0x1,
  c_andi: (rd: Reg, imm: number) => (4 << 13) | (2 << 10) | (creg(rd) << 7) | ci6(simm(imm, 6)) | 0x1,
  c_sub: (rd: Reg, rs2: Reg) => (0x23 << 10) | (creg(rd) << 7) | (0 << 5) | (creg(rs2) << 2) | 0x1,
  c_xor: (rd: Reg, rs2: Reg) => (0x23 << 10) | (creg(rd) << 7) | (1 << 5) | (creg(rs2) << 2) | 0x1,
  c_or: (rd: Reg, rs2: Reg) => (0x23 << 10) | (creg(rd) << 7) | (2 << 5) | (creg(rs2) << 2) | 0x1,
  c_and: (rd: Reg, rs2: Reg) => (0x23 << 10) | (creg(rd) << 7) | (3 << 5) | (creg(rs2) << 2) | 0x1,
  c_j: (off: number) => (5 << 13) | cjImm(off) | 0x1,
  c_beqz: (rs1: Reg, off: number) => (6 << 13) | cbImm(off) | (creg(rs1) << 7) | 0x1,
  c_bnez: (rs1: Reg, off: number) => (7 << 13) | cbImm(off) | (creg(rs1) << 7) | 0x1,
  c_slli: (rd: Reg, sh: number) => (reg(notX0(rd, 'c.slli rd')) << 7) | ci6(nonzero(uimm(sh, 5, 1, 'shift'), 'shift')) | 0x2,
  /** `c.lwsp rd, uimm(sp)` */
  c_lwsp: (rd: Reg, off: number) => {
    const u = uimm(off, 8, 4, 'offset');
    return (2 << 13) | (bits(u, 5, 5) << 12) | (reg(notX0(rd, 'c.lwsp rd')) << 7) | (bits(u, 4, 2) << 4) | (bits(u, 7, 6) << 2) | 0x2;
  },
  c_jr: (rs1: Reg) => (8 << 12) | (reg(notX0(rs1, 'c.jr rs1')) << 7) | 0x2,
  c_mv: (rd: Reg, rs2: Reg) => (8 << 12) | (reg(notX0(rd, 'c.mv rd')) << 7) | (reg(notX0(rs2, 'c.mv rs2')) << 2) | 0x2,
  c_ebreak: () => 0x9002,
  /** `c.jalr rs1` (links x1 = pc + 2) */
  c_jalr: (rs1: Reg) => (9 << 12) | (reg(notX0(rs1, 'c.jalr rs1')) << 7) | 0x2,
  c_add: (rd: Reg, rs2: Reg) => (9 << 12) | (reg(notX0(rd, 'c.add rd')) << 7) | (reg(notX0(rs2, 'c.add rs2')) << 2) | 0x2,
  /** `c.swsp rs2, uimm(sp)` */
  c_swsp: (rs2: Reg, off: number) => {
    const u = uimm(off, 8, 4, 'offset');
    return (6 << 13) | (bits(u, 5, 2) << 9) | (bits(u, 7, 6) << 7) | (reg(rs2) << 2) | 0x2;
  },
};

// ---- builder --------------------------------------------------------------------------------------

/** A branch or jump target: a label name, or a byte offset relative to the instruction. */
export type Target = string | number;

type Rv = typeof rv;
type Rvc = typeof rvc;
/** Methods whose last operand is a pc-relative target; the builder gives them label support. */
type PcRel = 'jal' | 'beq' | 'bne' | 'blt' | 'bge' | 'bltu' | 'bgeu' | 'c_jal' | 'c_j' | 'c_beqz' | 'c_bnez';
type Chain<T> = { [K in keyof T]: T[K] extends (...a: infer A) => number ? (...a: A) => Asm : never };
type Plain = Omit<Rv, PcRel> & Omit<Rvc, PcRel>;

// Interface merged into the class below: every non-pc-relative encoder becomes a chaining method.
export interface Asm extends Chain<Plain> {}

interface Fixup { at: number; target: string; encode: (off: number) => number; size: 2 | 4 }

/**
 * Builds a program: `new Asm(base)`, call instruction methods (same names and operand order as {@link rv}
 * and {@link rvc}; branch and jump targets may be labels), then `bytes()`.
 */
export class Asm {
  #out: number[] = [];
  #labels = new Map<string, number>();
  #fixups: Fixup[] = [];

  /** @param base the address the first byte will be loaded at (used by {@link addr} and {@link la}). */
  constructor(readonly base = 0x80000000) {}

  /** Current offset in bytes from the start of the program. */
  get offset(): number { return this.#out.length; }
  /** Current absolute address. */
  get here(): number { return (this.base + this.#out.length) >>> 0; }

  label(name: string): this {
    if (this.#labels.has(name)) throw new Error(`duplicate label ${name}`);
    this.#labels.set(name, this.#out.length);
    return this;
  }
  /** Absolute address of a defined label. */
  addr(name: string): number {
    const o = this.#labels.get(name);
    if (o === undefined) throw new Error(`undefined label ${name}`);
    return (this.base + o) >>> 0;
  }

  /** Appends a raw 32-bit word (instruction or data), little-endian. */
  word(w: number): this {
    w = w >>> 0;
    this.#out.push(w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, (w >>> 24) & 0xff);
    return this;
  }
  /** Appends a raw 16-bit halfword, little-endian. */
  half(h: number): this {
    this.#out.push(h & 0xff, (h >>> 8) & 0xff);
    return this;
  }
  /** Pads with zero bytes to a multiple of `n` bytes from the start. */
  align(n: number): this {
    while (this.#out.length % n !== 0) this.#out.push(0);
    return this;
  }

  /** `li rd, value`: lui + addi (or a single addi), always full-size instructions. */
  li(rd: Reg, value: number): this {
    const v = value >>> 0;
    const lo = ((v & 0xfff) ^ 0x800) - 0x800;
    const hi = ((v - lo) >>> 12) & 0xfffff;
    if (hi === 0) return this.word(rv.addi(rd, 0, lo));
    this.word(rv.lui(rd, hi));
    if (lo !== 0) this.word(rv.addi(rd, rd, lo));
    return this;
  }
  /** Loads the absolute address of a label (defined before or after): always lui + addi. */
  la(rd: Reg, name: string): this {
    const at = this.#out.length;
    this.word(0).word(0);
    this.#fixups.push({
      at, target: name, size: 4, encode: () => {
        const v = this.addr(name);
        const lo = ((v & 0xfff) ^ 0x800) - 0x800;
        const hi = ((v - lo) >>> 12) & 0xfffff;
        const w2 = rv.addi(rd, rd, lo);
        this.#put(at + 4, w2, 4);
        return rv.lui(rd, hi);
      },
    });
    return this;
  }
  /** `nop` = addi x0, x0, 0 */
  nop(): this { return this.word(rv.addi(0, 0, 0)); }
  /** `j target` = jal x0, target */
  j(t: Target): this { return this.jal(0, t); }

  jal(rd: Reg, t: Target): this { return this.#rel(t, 4, (o) => rv.jal(rd, o)); }
  beq(a: Reg, b: Reg, t: Target): this { return this.#rel(t, 4, (o) => rv.beq(a, b, o)); }
  bne(a: Reg, b: Reg, t: Target): this { return this.#rel(t, 4, (o) => rv.bne(a, b, o)); }
  blt(a: Reg, b: Reg, t: Target): this { return this.#rel(t, 4, (o) => rv.blt(a, b, o)); }
  bge(a: Reg, b: Reg, t: Target): this { return this.#rel(t, 4, (o) => rv.bge(a, b, o)); }
  bltu(a: Reg, b: Reg, t: Target): this { return this.#rel(t, 4, (o) => rv.bltu(a, b, o)); }
  bgeu(a: Reg, b: Reg, t: Target): this { return this.#rel(t, 4, (o) => rv.bgeu(a, b, o)); }
  c_jal(t: Target): this { return this.#rel(t, 2, (o) => rvc.c_jal(o)); }
  c_j(t: Target): this { return this.#rel(t, 2, (o) => rvc.c_j(o)); }
  c_beqz(a: Reg, t: Target): this { return this.#rel(t, 2, (o) => rvc.c_beqz(a, o)); }
  c_bnez(a: Reg, t: Target): this { return this.#rel(t, 2, (o) => rvc.c_bnez(a, o)); }

  /** The assembled program; throws if a label is undefined or a target is out of range. */
  bytes(): Uint8Array {
    for (const f of this.#fixups) {
      const target = this.#labels.get(f.target);
      if (target === undefined) throw new Error(`undefined label ${f.target}`);
      this.#put(f.at, f.encode(target - f.at), f.size);
    }
    return Uint8Array.from(this.#out);
  }

  #put(at: number, w: number, size: number): void {
    for (let i = 0; i < size; i++) this.#out[at + i] = Math.floor((w >>> 0) / 2 ** (8 * i)) & 0xff;
  }

  #rel(t: Target, size: 2 | 4, encode: (off: number) => number): this {
    if (typeof t === 'number') {
      const w = encode(t);
      return size === 4 ? this.word(w) : this.half(w);
    }
    const at = this.#out.length;
    this.#fixups.push({ at, target: t, size, encode });
    encode(0); // validates the register operands now, where the stack trace points at the caller
    return size === 4 ? this.word(0) : this.half(0);
  }
}

const pcRel = new Set<string>(['jal', 'beq', 'bne', 'blt', 'bge', 'bltu', 'bgeu', 'c_jal', 'c_j', 'c_beqz', 'c_bnez']);
for (const [name, fn] of Object.entries(rv)) {
  if (pcRel.has(name)) continue;
  (Asm.prototype as unknown as Record<string, unknown>)[name] = function (this: Asm, ...args: unknown[]) {
    return this.word((fn as (...a: unknown[]) => number)(...args));
  };
}
for (const [name, fn] of Object.entries(rvc)) {
  if (pcRel.has(name)) continue;
  (Asm.prototype as unknown as Record<string, unknown>)[name] = function (this: Asm, ...args: unknown[]) {
    return this.half((fn as (...a: unknown[]) => number)(...args));
  };
}

/** Little-endian bytes of a list of 32-bit words. */
export function words(...ws: number[]): Uint8Array {
  const a = new Asm();
  for (const w of ws) a.word(w);
  return a.bytes();
}
