// Random valid programs (RV32IMAC user instructions, 16- and 32-bit mixed, forward branches and jumps)
// run on the machine and on a small TypeScript model; registers, memory, instret and branches must agree.
import { describe, expect, it } from 'vitest';
import { Asm, rv } from '../helpers/asm.js';
import { CAUSE, DATA, RAM, hex, load, release } from './harness.js';
import { prng, u32 } from './prng.js';
import { riModel, rrModel } from './reference.js';

const WINDOW = 4096; // bytes of data memory at DATA, addressed from x2 (sp), which no instruction writes

class State {
  readonly x = new Uint32Array(32);
  readonly mem = new Uint8Array(WINDOW);
  constructor(readonly addr: (index: number) => number) {}
  get(r: number): number { return r === 0 ? 0 : this.x[r]!; }
  set(r: number, v: number): void { if (r !== 0) this.x[r] = v >>> 0; }
  load(off: number, size: number, signed: boolean): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = (v * 256 + this.mem[off + i]!) >>> 0;
    if (signed && size < 4 && v & (1 << (size * 8 - 1))) v = (v - 2 ** (size * 8)) >>> 0;
    return v;
  }
  store(off: number, size: number, v: number): void {
    for (let i = 0; i < size; i++) this.mem[off + i] = (v >>> (8 * i)) & 0xff;
  }
}

/** One generated instruction (or a tiny fixed sequence): how to emit it and what it does. */
interface Ins {
  text: string;
  emit(a: Asm): void;
  /** Executes at program index `i`; returns the index to continue at (default i + 1). */
  exec(s: State, i: number): number | void;
  /** Instructions it retires, and how many of those are branches. */
  retires: number;
  branches: number;
}

type Rnd = () => number;
const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
const int = (rnd: Rnd, lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
/** Destination registers: x0..x15 except sp; x0 now and then to check that its writes vanish. */
const rd = (rnd: Rnd) => (rnd() < 0.05 ? 0 : pick(rnd, [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]));
const rs = (rnd: Rnd) => int(rnd, 0, 15);
const rdc = (rnd: Rnd) => int(rnd, 8, 15); // x8..x15, for the 3-bit register fields
const rdNz = (rnd: Rnd) => pick(rnd, [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
const sext = (v: number, bits: number) => ((v << (32 - bits)) >> (32 - bits));

function generate(rnd: Rnd, n: number): Ins[] {
  const prog: Ins[] = [];
  const target = (i: number) => Math.min(n, i + 1 + int(rnd, 0, 5)); // forward only: always terminates
  const simple = (text: string, emit: (a: Asm) => void, exec: (s: State) => void): Ins =>
    ({ text, emit, exec: (s) => { exec(s); }, retires: 1, branches: 0 });

  for (let i = 0; i < n; i++) {
    const kind = rnd();
    let ins: Ins;
    if (kind < 0.25) {
      const op = pick(rnd, Object.keys(rrModel));
      const [d, a, b] = [rd(rnd), rs(rnd), rs(rnd)];
      ins = simple(`${op} x${d}, x${a}, x${b}`, (A) => A.word((rv as unknown as Record<string, (...n: number[]) => number>)[op]!(d, a, b)),
        (s) => s.set(d, rrModel[op]!(s.get(a), s.get(b))));
    } else if (kind < 0.42) {
      const op = pick(rnd, Object.keys(riModel));
      const shift = op === 'slli' || op === 'srli' || op === 'srai';
      const imm = shift ? int(rnd, 0, 31) : int(rnd, -2048, 2047);
      const [d, a] = [rd(rnd), rs(rnd)];
      ins = simple(`${op} x${d}, x${a}, ${imm}`, (A) => A.word((rv as unknown as Record<string, (...n: number[]) => number>)[op]!(d, a, imm)),
        (s) => s.set(d, riModel[op]!(s.get(a), imm >>> 0)));
    } else if (kind < 0.46) {
      const d = rd(rnd);
      const imm = u32(rnd) >>> 12;
      if (rnd() < 0.5) {
        ins = simple(`lui x${d}, ${imm}`, (A) => A.lui(d, imm), (s) => s.set(d, imm << 12));
      } else {
        ins = { text: `auipc x${d}, ${imm}`, emit: (A) => A.auipc(d, imm), retires: 1, branches: 0,
          exec: (s, at) => { s.set(d, s.addr(at) + (imm << 12)); } };
      }
    } else if (kind < 0.58) {
      const [op, size, signed] = pick(rnd, [['lb', 1, true], ['lh', 2, true], ['lw', 4, true], ['lbu', 1, false],
        ['lhu', 2, false]] as const);
      const off = int(rnd, 0, 2040); // misaligned offsets included: RAM handles them
      const d = rd(rnd);
      ins = simple(`${op} x${d}, ${off}(sp)`, (A) => A.word(rv[op](d, off, 2)), (s) => s.set(d, s.load(off, size, signed)));
    } else if (kind < 0.68) {
      const [op, size] = pick(rnd, [['sb', 1], ['sh', 2], ['sw', 4]] as const);
      const off = int(rnd, 0, 2040);
      const v = rs(rnd);
      ins = simple(`${op} x${v}, ${off}(sp)`, (A) => A.word(rv[op](v, off, 2)), (s) => s.store(off, size, s.get(v)));
    } else if (kind < 0.72) {
      const op = pick(rnd, ['amoswap_w', 'amoadd_w', 'amoxor_w', 'amoand_w', 'amoor_w', 'amomin_w', 'amomax_w',
        'amominu_w', 'amomaxu_w'] as const);
      const f: Record<typeof op, (m: number, v: number) => number> = {
        amoswap_w: (_m, v) => v, amoadd_w: rrModel.add!, amoxor_w: rrModel.xor!, amoand_w: rrModel.and!,
        amoor_w: rrModel.or!, amomin_w: (m, v) => ((m | 0) < (v | 0) ? m : v), amomax_w: (m, v) => ((m | 0) > (v | 0) ? m : v),
        amominu_w: (m, v) => Math.min(m >>> 0, v >>> 0), amomaxu_w: (m, v) => Math.max(m >>> 0, v >>> 0),
      };
      const [d, v] = [rd(rnd), rs(rnd)];
      ins = simple(`${op} x${d}, x${v}, (sp)`, (A) => A.word(rv[op](d, v, 2)), (s) => {
        const old = s.load(0, 4, false);
        const src = s.get(v);
        s.store(0, 4, f[op](old, src));
        s.set(d, old);
      });
    } else if (kind < 0.8) {
      // Compressed computational forms.
      const c = int(rnd, 0, 12);
      const d = rdNz(rnd);
      const dc = rdc(rnd);
      const sc = rdc(rnd);
      const imm6 = int(rnd, -32, 31) || 1;
      const sh = int(rnd, 1, 31);
      switch (c) {
        case 0: ins = simple(`c.addi x${d}, ${imm6}`, (A) => A.c_addi(d, imm6), (s) => s.set(d, s.get(d) + imm6)); break;
        case 1: ins = simple(`c.li x${d}, ${imm6}`, (A) => A.c_li(d, imm6), (s) => s.set(d, imm6)); break;
        case 2: {
          const u = rnd() < 0.5 ? int(rnd, 1, 0x1f) : int(rnd, 0xfffe0, 0xfffff);
          ins = simple(`c.lui x${d}, ${u}`, (A) => A.c_lui(d, u), (s) => s.set(d, sext(u & 0x3f, 6) << 12));
          break;
        }
        case 3: ins = simple(`c.srli x${dc}, ${sh}`, (A) => A.c_srli(dc, sh), (s) => s.set(dc, s.get(dc) >>> sh)); break;
        case 4: ins = simple(`c.srai x${dc}, ${sh}`, (A) => A.c_srai(dc, sh), (s) => s.set(dc, s.get(dc) >> sh)); break;
        case 5: ins = simple(`c.andi x${dc}, ${imm6}`, (A) => A.c_andi(dc, imm6), (s) => s.set(dc, s.get(dc) & imm6)); break;
        case 6: ins = simple(`c.sub x${dc}, x${sc}`, (A) => A.c_sub(dc, sc), (s) => s.set(dc, s.get(dc) - s.get(sc))); break;
        case 7: ins = simple(`c.xor x${dc}, x${sc}`, (A) => A.c_xor(dc, sc), (s) => s.set(dc, s.get(dc) ^ s.get(sc))); break;
        case 8: ins = simple(`c.or x${dc}, x${sc}`, (A) => A.c_or(dc, sc), (s) => s.set(dc, s.get(dc) | s.get(sc))); break;
        case 9: ins = simple(`c.and x${dc}, x${sc}`, (A) => A.c_and(dc, sc), (s) => s.set(dc, s.get(dc) & s.get(sc))); break;
        case 10: ins = simple(`c.slli x${d}, ${sh}`, (A) => A.c_slli(d, sh), (s) => s.set(d, s.get(d) << sh)); break;
        case 11: {
          const src = rdNz(rnd);
          ins = simple(`c.mv x${d}, x${src}`, (A) => A.c_mv(d, src), (s) => s.set(d, s.get(src)));
          break;
        }
        default: {
          const src = rdNz(rnd);
          ins = simple(`c.add x${d}, x${src}`, (A) => A.c_add(d, src), (s) => s.set(d, s.get(d) + s.get(src)));
        }
      }
    } else if (kind < 0.85) {
      // Compressed memory forms, all based on sp.
      const c = int(rnd, 0, 2);
      if (c === 0) {
        const off = 4 * int(rnd, 0, 63);
        const d = rdNz(rnd);
        ins = simple(`c.lwsp x${d}, ${off}(sp)`, (A) => A.c_lwsp(d, off), (s) => s.set(d, s.load(off, 4, false)));
      } else if (c === 1) {
        const off = 4 * int(rnd, 0, 63);
        const v = rs(rnd);
        ins = simple(`c.swsp x${v}, ${off}(sp)`, (A) => A.c_swsp(v, off), (s) => s.store(off, 4, s.get(v)));
      } else {
        const off = 4 * int(rnd, 1, 255);
        const d = rdc(rnd);
        ins = simple(`c.addi4spn x${d}, sp, ${off}`, (A) => A.c_addi4spn(d, off), (s) => s.set(d, s.get(2) + off));
      }
    } else if (kind < 0.95) {
      // Forward conditional branches, 32- and 16-bit.
      const t = target(i);
      const label = `L${t}`;
      if (rnd() < 0.7) {
        const op = pick(rnd, ['beq', 'bne', 'blt', 'bge', 'bltu', 'bgeu'] as const);
        const [a, b] = [rs(rnd), rs(rnd)];
        const cond = {
          beq: (x: number, y: number) => x === y, bne: (x: number, y: number) => x !== y,
          blt: (x: number, y: number) => (x | 0) < (y | 0), bge: (x: number, y: number) => (x | 0) >= (y | 0),
          bltu: (x: number, y: number) => x < y, bgeu: (x: number, y: number) => x >= y,
        }[op];
        ins = { text: `${op} x${a}, x${b}, ${label}`, emit: (A) => A[op](a, b, label), retires: 1, branches: 1,
          exec: (s, at) => (cond(s.get(a), s.get(b)) ? t : at + 1) };
      } else {
        const op = pick(rnd, ['c_beqz', 'c_bnez'] as const);
        const a = rdc(rnd);
        ins = { text: `${op} x${a}, ${label}`, emit: (A) => A[op](a, label), retires: 1, branches: 1,
          exec: (s, at) => ((s.get(a) === 0) === (op === 'c_beqz') ? t : at + 1) };
      }
    } else {
      // Forward jumps: jal, c.j, c.jal, and register jumps through a la-loaded address.
      const t = target(i);
      const label = `L${t}`;
      const c = int(rnd, 0, 4);
      const d = rd(rnd);
      const via = rdNz(rnd);
      if (c === 0) {
        ins = { text: `jal x${d}, ${label}`, emit: (A) => A.jal(d, label), retires: 1, branches: 1,
          exec: (s, at) => { s.set(d, s.addr(at) + 4); return t; } };
      } else if (c === 1) {
        ins = { text: `c.j ${label}`, emit: (A) => A.c_j(label), retires: 1, branches: 1, exec: () => t };
      } else if (c === 2) {
        ins = { text: `c.jal ${label}`, emit: (A) => A.c_jal(label), retires: 1, branches: 1,
          exec: (s, at) => { s.set(1, s.addr(at) + 2); return t; } };
      } else if (c === 3) {
        const off = int(rnd, 0, 1); // jalr ignores bit 0 of the sum
        ins = { text: `la x${via}, ${label}; jalr x${d}, ${off}(x${via})`, emit: (A) => A.la(via, label).jalr(d, via, off),
          retires: 3, branches: 1, exec: (s, at) => { s.set(via, s.addr(t)); s.set(d, s.addr(at) + 12); return t; } };
      } else {
        const link = rnd() < 0.5;
        ins = { text: `la x${via}, ${label}; ${link ? 'c.jalr' : 'c.jr'} x${via}`,
          emit: (A) => { A.la(via, label); if (link) A.c_jalr(via); else A.c_jr(via); },
          retires: 3, branches: 1,
          exec: (s, at) => { s.set(via, s.addr(t)); if (link) s.set(1, s.addr(at) + 10); return t; } };
      }
    }
    prog.push(ins);
  }
  return prog;
}

describe('differential: machine against a TypeScript model', () => {
  it('random valid programs end with the same registers, memory, instret and branches', async () => {
    const rnd = prng(0xd1ff);
    for (let round = 0; round < 150; round++) {
      const n = 300;
      const prog = generate(rnd, n);
      const a = new Asm(RAM);
      prog.forEach((ins, i) => { a.label(`L${i}`); ins.emit(a); });
      a.label(`L${n}`).ebreak();
      const bytes = a.bytes();

      const regs: Record<number, number> = {};
      for (let r = 1; r < 16; r++) regs[r] = rnd() < 0.2 ? int(rnd, -4, 4) >>> 0 : u32(rnd);
      regs[2] = DATA;
      const init = new Uint8Array(WINDOW);
      for (let k = 0; k < WINDOW; k++) init[k] = Math.floor(rnd() * 256);

      // Model.
      const s = new State((i) => a.addr(`L${i}`));
      for (const [r, v] of Object.entries(regs)) s.set(Number(r), v);
      s.mem.set(init);
      let instret = 0;
      let branches = 0;
      const trace: string[] = [];
      for (let i = 0; i < n;) {
        const ins = prog[i]!;
        trace.push(ins.text);
        const next = ins.exec(s, i);
        instret += ins.retires;
        branches += ins.branches;
        i = typeof next === 'number' ? next : i + 1;
      }

      // Machine.
      const m = load(bytes, { regs, data: init });
      const r = await m.run({ maxInstructions: 100_000 });
      const context = `round ${round}; executed:\n${trace.slice(-12).join('\n')}`;
      expect(r, context).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: a.addr(`L${n}`) });
      const got = Array.from(m.registers(), hex);
      const want = Array.from(s.x, hex);
      expect(got, context).toEqual(want);
      expect(Buffer.from(m.readMemory(DATA, WINDOW)).equals(Buffer.from(s.mem)), context).toBe(true);
      expect({ instret: r.instret, branches: r.branches }, context)
        .toEqual({ instret: BigInt(instret), branches: BigInt(branches) });
      release(m);
    }
  });
});
