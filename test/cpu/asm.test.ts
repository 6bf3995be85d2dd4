// Checks the in-test assembler (test/helpers/asm.ts) byte for byte against GNU as, over every
// instruction with edge-case and seeded random operands. Skipped, with a printed reason, without binutils.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Asm, rv, rvc } from '../helpers/asm.js';
import { prng } from './prng.js';

const AS = 'riscv64-unknown-elf-as';
const OBJCOPY = 'riscv64-unknown-elf-objcopy';

function haveTool(tool: string): boolean {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const toolsMissing = [AS, OBJCOPY].filter((t) => !haveTool(t));
if (toolsMissing.length > 0) {
  console.log(`asm.test.ts: skipping the GNU as comparison: ${toolsMissing.join(', ')} not found ` +
    '(Debian package binutils-riscv64-unknown-elf)');
}

/** One line of assembly and what our encoder says it is. */
interface Case { text: string; code: number; size: 2 | 4 }

function buildCases(): Case[] {
  const rnd = prng(0x5eed);
  const cases: Case[] = [];
  const w = (text: string, code: number) => cases.push({ text, code, size: 4 });
  const h = (text: string, code: number) => cases.push({ text, code, size: 2 });
  const x = (r: number) => `x${r}`;
  const regs = [0, 1, 2, 5, 8, 15, 16, 31];
  const r = () => regs[Math.floor(rnd() * regs.length)]!;
  const any = () => Math.floor(rnd() * 32);
  const cr = () => 8 + Math.floor(rnd() * 8);
  const imm12 = [0, 1, -1, 2047, -2048, 0x555, -0x556, 42];
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!;
  const si = (bitsN: number, align = 1) => {
    const lim = 2 ** (bitsN - 1) / align;
    return (Math.floor(rnd() * 2 * lim) - lim) * align;
  };

  for (let k = 0; k < 6; k++) {
    const u20 = pick([0, 1, 0xfffff, 0x80000, 0x12345, Math.floor(rnd() * 0x100000)]);
    const rd = any();
    w(`lui ${x(rd)}, ${u20}`, rv.lui(rd, u20));
    w(`auipc ${x(rd)}, ${u20}`, rv.auipc(rd, u20));
  }
  for (const off of [0, 2, -2, 4, 2046, -2048, 0xffffe, -0x100000, si(21, 2), si(21, 2)]) {
    const rd = r();
    w(`jal ${x(rd)}, .${off >= 0 ? '+' : ''}${off}`, rv.jal(rd, off));
  }
  for (const i of imm12) {
    const [rd, rs1] = [any(), any()];
    w(`jalr ${x(rd)}, ${i}(${x(rs1)})`, rv.jalr(rd, rs1, i));
  }
  const branches = ['beq', 'bne', 'blt', 'bge', 'bltu', 'bgeu'] as const;
  for (const b of branches) {
    for (const off of [0, 2, -2, 4094, -4096, si(13, 2)]) {
      const [a, c] = [any(), any()];
      w(`${b} ${x(a)}, ${x(c)}, .${off >= 0 ? '+' : ''}${off}`, rv[b](a, c, off));
    }
  }
  for (const op of ['lb', 'lh', 'lw', 'lbu', 'lhu', 'sb', 'sh', 'sw'] as const) {
    for (const i of imm12) {
      const [a, c] = [any(), any()];
      w(`${op} ${x(a)}, ${i}(${x(c)})`, rv[op](a, i, c));
    }
  }
  for (const op of ['addi', 'slti', 'sltiu', 'xori', 'ori', 'andi'] as const) {
    for (const i of [...imm12, si(12), si(12)]) {
      const [a, c] = [any(), any()];
      w(`${op} ${x(a)}, ${x(c)}, ${i}`, rv[op](a, c, i));
    }
  }
  for (const op of ['slli', 'srli', 'srai'] as const) {
    for (const s of [0, 1, 15, 31]) {
      const [a, c] = [any(), any()];
      w(`${op} ${x(a)}, ${x(c)}, ${s}`, rv[op](a, c, s));
    }
  }
  const rr = ['add', 'sub', 'sll', 'slt', 'sltu', 'xor', 'srl', 'sra', 'or', 'and',
    'mul', 'mulh', 'mulhsu', 'mulhu', 'div', 'divu', 'rem', 'remu'] as const;
  for (const op of rr) {
    for (let k = 0; k < 4; k++) {
      const [a, b, c] = [any(), any(), any()];
      w(`${op} ${x(a)}, ${x(b)}, ${x(c)}`, rv[op](a, b, c));
    }
  }
  w('fence', rv.fence());
  w('fence rw, rw', rv.fence('rw', 'rw'));
  w('fence r, w', rv.fence('r', 'w'));
  w('fence iorw, o', rv.fence('iorw', 'o'));
  w('fence i, iorw', rv.fence('i', 'iorw'));
  w('fence.i', rv.fence_i());
  w('ecall', rv.ecall());
  w('ebreak', rv.ebreak());
  w('mret', rv.mret());
  w('sret', rv.sret());
  w('wfi', rv.wfi());
  w('sfence.vma', rv.sfence_vma());
  for (let k = 0; k < 3; k++) {
    const [a, b] = [any(), any()];
    w(`sfence.vma ${x(a)}, ${x(b)}`, rv.sfence_vma(a, b));
  }

  const orders = [[{}, ''], [{ aq: true }, '.aq'], [{ rl: true }, '.rl'], [{ aq: true, rl: true }, '.aqrl']] as const;
  for (const [o, sfx] of orders) {
    const [a, b, c] = [any(), any(), any()];
    w(`lr.w${sfx} ${x(a)}, (${x(b)})`, rv.lr_w(a, b, o));
    w(`sc.w${sfx} ${x(a)}, ${x(c)}, (${x(b)})`, rv.sc_w(a, c, b, o));
    for (const op of ['swap', 'add', 'xor', 'and', 'or', 'min', 'max', 'minu', 'maxu'] as const) {
      const [d, s2, s1] = [any(), any(), any()];
      w(`amo${op}.w${sfx} ${x(d)}, ${x(s2)}, (${x(s1)})`, rv[`amo${op}_w`](d, s2, s1, o));
    }
  }
  for (const c of [0x300, 0x305, 0x341, 0xc00, 0xc82, 0xf14, 0xfff, 0]) {
    const [a, b] = [any(), any()];
    const z = Math.floor(rnd() * 32);
    w(`csrrw ${x(a)}, ${c}, ${x(b)}`, rv.csrrw(a, c, b));
    w(`csrrs ${x(a)}, ${c}, ${x(b)}`, rv.csrrs(a, c, b));
    w(`csrrc ${x(a)}, ${c}, ${x(b)}`, rv.csrrc(a, c, b));
    w(`csrrwi ${x(a)}, ${c}, ${z}`, rv.csrrwi(a, c, z));
    w(`csrrsi ${x(a)}, ${c}, ${z}`, rv.csrrsi(a, c, z));
    w(`csrrci ${x(a)}, ${c}, ${z}`, rv.csrrci(a, c, z));
  }

  // RV32C: explicit c. mnemonics under .option rvc.
  for (const u of [4, 8, 16, 32, 64, 512, 1020, 4 * (1 + Math.floor(rnd() * 254))]) {
    const d = cr();
    h(`c.addi4spn ${x(d)}, sp, ${u}`, rvc.c_addi4spn(d, u));
  }
  for (const u of [0, 4, 32, 64, 124, 4 * Math.floor(rnd() * 32)]) {
    const [a, b] = [cr(), cr()];
    h(`c.lw ${x(a)}, ${u}(${x(b)})`, rvc.c_lw(a, u, b));
    h(`c.sw ${x(a)}, ${u}(${x(b)})`, rvc.c_sw(a, u, b));
  }
  h('c.nop', rvc.c_nop());
  for (const i of [1, -1, 31, -32, 7]) {
    const d = 1 + Math.floor(rnd() * 31);
    h(`c.addi ${x(d)}, ${i}`, rvc.c_addi(d, i));
  }
  for (const off of [0, 2, -2, 2046, -2048, 0x2aa, -0x556, si(12, 2)]) {
    h(`c.jal .${off >= 0 ? '+' : ''}${off}`, rvc.c_jal(off));
    h(`c.j .${off >= 0 ? '+' : ''}${off}`, rvc.c_j(off));
  }
  for (const i of [0, 1, -1, 31, -32, si(6)]) {
    const d = 1 + Math.floor(rnd() * 31);
    h(`c.li ${x(d)}, ${i}`, rvc.c_li(d, i));
  }
  for (const i of [16, -16, 496, -512, 32, 64, 128, 256, -32]) h(`c.addi16sp sp, ${i}`, rvc.c_addi16sp(i));
  for (const u of [1, 0x1f, 0xfffe0, 0xfffff, 0x10]) {
    let d = 1 + Math.floor(rnd() * 31);
    if (d === 2) d = 3;
    h(`c.lui ${x(d)}, ${u}`, rvc.c_lui(d, u));
  }
  for (const s of [1, 16, 31]) {
    const d = cr();
    h(`c.srli ${x(d)}, ${s}`, rvc.c_srli(d, s));
    h(`c.srai ${x(d)}, ${s}`, rvc.c_srai(d, s));
    const d2 = 1 + Math.floor(rnd() * 31);
    h(`c.slli ${x(d2)}, ${s}`, rvc.c_slli(d2, s));
  }
  for (const i of [0, 1, -1, 31, -32]) {
    const d = cr();
    h(`c.andi ${x(d)}, ${i}`, rvc.c_andi(d, i));
  }
  for (const op of ['sub', 'xor', 'or', 'and'] as const) {
    for (let k = 0; k < 3; k++) {
      const [a, b] = [cr(), cr()];
      h(`c.${op} ${x(a)}, ${x(b)}`, rvc[`c_${op}`](a, b));
    }
  }
  for (const off of [0, 2, -2, 254, -256, 0xaa, -0x56, si(9, 2)]) {
    const a = cr();
    h(`c.beqz ${x(a)}, .${off >= 0 ? '+' : ''}${off}`, rvc.c_beqz(a, off));
    h(`c.bnez ${x(a)}, .${off >= 0 ? '+' : ''}${off}`, rvc.c_bnez(a, off));
  }
  for (const u of [0, 4, 32, 128, 252, 4 * Math.floor(rnd() * 64)]) {
    const d = 1 + Math.floor(rnd() * 31);
    const s = Math.floor(rnd() * 32);
    h(`c.lwsp ${x(d)}, ${u}(sp)`, rvc.c_lwsp(d, u));
    h(`c.swsp ${x(s)}, ${u}(sp)`, rvc.c_swsp(s, u));
  }
  for (let k = 0; k < 4; k++) {
    const [a, b] = [1 + Math.floor(rnd() * 31), 1 + Math.floor(rnd() * 31)];
    h(`c.jr ${x(a)}`, rvc.c_jr(a));
    h(`c.jalr ${x(a)}`, rvc.c_jalr(a));
    h(`c.mv ${x(a)}, ${x(b)}`, rvc.c_mv(a, b));
    h(`c.add ${x(a)}, ${x(b)}`, rvc.c_add(a, b));
  }
  h('c.ebreak', rvc.c_ebreak());
  return cases;
}

describe.skipIf(toolsMissing.length > 0)('assembler agrees with GNU as', () => {
  it('encodes every instruction of RV32IMAC + Zicsr + Zifencei byte for byte like GNU as', () => {
    const cases = buildCases();
    const lines = ['.option norelax'];
    let rvcMode: boolean | undefined;
    for (const c of cases) {
      const want = c.size === 2;
      if (want !== rvcMode) {
        lines.push(want ? '.option rvc' : '.option norvc');
        rvcMode = want;
      }
      lines.push(c.text);
    }
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-asm-'));
    try {
      writeFileSync(join(dir, 'a.s'), lines.join('\n') + '\n');
      execFileSync(AS, ['-march=rv32imac_zicsr_zifencei', '-mabi=ilp32', '-mno-relax', '-o', join(dir, 'a.o'),
        join(dir, 'a.s')]);
      execFileSync(OBJCOPY, ['-O', 'binary', '-j', '.text', join(dir, 'a.o'), join(dir, 'a.bin')]);
      const gnu = readFileSync(join(dir, 'a.bin'));
      let off = 0;
      const mismatches: string[] = [];
      for (const c of cases) {
        const got = c.size === 4 ? gnu.readUInt32LE(off) : gnu.readUInt16LE(off);
        if (got !== c.code) {
          mismatches.push(`${c.text}: GNU as 0x${got.toString(16)}, ours 0x${c.code.toString(16)}`);
        }
        off += c.size;
      }
      expect(mismatches).toEqual([]);
      expect(off).toBe(gnu.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('resolves labels forwards and backwards like GNU as', () => {
    const a = new Asm();
    a.label('top').addi(1, 1, -1).c_beqz(8, 'out').bne(1, 0, 'top').c_j('top').c_bnez(9, 'top')
      .jal(1, 'out').beq(0, 0, 'top').c_jal('out').label('out').c_nop();
    const src = ['.option norelax', 'top:', '.option norvc', 'addi x1, x1, -1', '.option rvc', 'c.beqz x8, out',
      '.option norvc', 'bne x1, x0, top', '.option rvc', 'c.j top', 'c.bnez x9, top', '.option norvc', 'jal x1, out',
      'beq x0, x0, top', '.option rvc', 'c.jal out', 'out:', 'c.nop'];
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-asm-'));
    try {
      writeFileSync(join(dir, 'a.s'), src.join('\n') + '\n');
      execFileSync(AS, ['-march=rv32imac_zicsr_zifencei', '-mabi=ilp32', '-mno-relax', '-o', join(dir, 'a.o'),
        join(dir, 'a.s')]);
      execFileSync(OBJCOPY, ['-O', 'binary', '-j', '.text', join(dir, 'a.o'), join(dir, 'a.bin')]);
      expect(Buffer.from(a.bytes()).toString('hex')).toBe(readFileSync(join(dir, 'a.bin')).toString('hex'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('assembler', () => {
  it('li loads every 32-bit value with lui + addi', () => {
    // Checked by evaluating the two instructions' arithmetic here: lui sets imm<<12, addi adds a sign-extended 12 bits.
    for (const v of [0, 1, -1, 0x7ff, 0x800, 0xfff, 0x1000, 0x7fffffff, 0x80000000, 0xfffff800, 0x12345678, 0xdeadbeef]) {
      const b = new Asm().li(5, v).bytes();
      const dv = new DataView(b.buffer);
      let acc = 0;
      for (let o = 0; o < b.length; o += 4) {
        const ins = dv.getUint32(o, true);
        if ((ins & 0x7f) === 0x37) acc = (ins & 0xfffff000) >>> 0;
        else acc = (acc + (ins >> 20)) >>> 0; // addi: immediate sign-extended by the arithmetic shift
      }
      expect(acc).toBe(v >>> 0);
    }
  });

  it('rejects out-of-range operands instead of truncating them', () => {
    expect(() => rv.addi(1, 1, 2048)).toThrow(RangeError);
    expect(() => rv.beq(1, 1, 3)).toThrow(RangeError);
    expect(() => rv.add(32, 0, 0)).toThrow(RangeError);
    expect(() => rvc.c_lw(1, 0, 8)).toThrow(RangeError);
    expect(() => rvc.c_addi4spn(8, 0)).toThrow(RangeError);
    expect(() => new Asm().j('nowhere').bytes()).toThrow(/undefined label/);
  });
});
