// Robustness: random 32-bit and 16-bit words as code and random addresses for every load, store and AMO
// (seeded, bounded) must never crash the process; every run ends with a well-formed RunResult.
import { describe, expect, it } from 'vitest';
import { Asm, rv } from '../helpers/asm.js';
import { CSR, DATA, RAM, load, release, type Machine, type RunResult } from './harness.js';
import { prng, u32 } from './prng.js';

const HANDLER = RAM + 0x10000;
const BUDGET = 20_000;

/**
 * A trap handler that skips 2 bytes past mepc and returns, so random code keeps going after each fault.
 * Saves x31 in mscratch; the random code may of course clobber all of this, which is fine.
 */
function skipHandler(): Uint8Array {
  const a = new Asm(HANDLER);
  a.csrrw(31, CSR.mscratch, 31); //   csrrw x31, mscratch, x31
  a.csrrs(31, CSR.mepc, 0); //        csrr x31, mepc
  a.addi(31, 31, 2); //               addi x31, x31, 2
  a.csrrw(0, CSR.mepc, 31); //        csrw mepc, x31
  a.csrrw(31, CSR.mscratch, 31); //   csrrw x31, mscratch, x31
  a.mret();
  return a.bytes();
}

const KINDS = ['exit', 'trap', 'budget', 'halted', 'stopped'];

function checkResult(m: Machine, r: RunResult, budget: number): void {
  expect(KINDS).toContain(r.kind);
  expect(typeof r.instret).toBe('bigint');
  expect(typeof r.branches).toBe('bigint');
  expect(r.instret).toBeLessThanOrEqual(BigInt(budget));
  expect(r.branches).toBeLessThanOrEqual(r.instret);
  expect(Number.isInteger(r.pc) && r.pc >= 0 && r.pc <= 0xffffffff).toBe(true);
  if (r.kind === 'budget') expect(r.instret).toBe(BigInt(budget));
  if (r.kind === 'trap') {
    expect(Number.isInteger(r.cause) && Number.isInteger(r.tval)).toBe(true);
    expect((r.cause >>> 0) & 0x7fffffff).toBeLessThan(16); // an exception or an interrupt code
  }
  if (r.kind === 'exit') {
    expect(Number.isInteger(r.code)).toBe(true);
    expect(['finisher', 'semihosting', 'htif']).toContain(r.via);
  }
  expect(m.counters.instret).toBe(r.instret);
  expect(m.getRegister(0)).toBe(0);
  expect(['M', 'U']).toContain(m.privilege);
}

/** Registers: a mix of random values and pointers into RAM, so some accesses land in memory. */
function randomRegs(rnd: () => number): Record<number, number> {
  const regs: Record<number, number> = {};
  for (let r = 1; r < 32; r++) {
    const x = rnd();
    regs[r] = x < 0.3 ? DATA + (Math.floor(rnd() * 0x10000) & ~3) : x < 0.4 ? Math.floor(rnd() * 64) : u32(rnd);
  }
  return regs;
}

async function runRandom(code: Uint8Array, rnd: () => number, trapsStop: boolean): Promise<RunResult> {
  const m = load(code, { regs: randomRegs(rnd), mem: [[HANDLER, skipHandler()]], csrs: trapsStop ? {} : { [CSR.mtvec]: HANDLER } });
  const r = await m.run({ maxInstructions: BUDGET });
  checkResult(m, r, BUDGET);
  release(m);
  return r;
}

describe('fuzz', () => {
  it('random 32-bit words as code always end in a defined RunResult', async () => {
    const rnd = prng(0xf022);
    const kinds = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const code = new Uint8Array(4096);
      const dv = new DataView(code.buffer);
      for (let o = 0; o < code.length; o += 4) dv.setUint32(o, u32(rnd), true);
      const r = await runRandom(code, rnd, i % 4 === 0);
      kinds.set(r.kind, (kinds.get(r.kind) ?? 0) + 1);
    }
    // Both ways of ending occur: a trap with mtvec = 0, and the budget while the skip handler keeps going.
    expect(kinds.get('trap')).toBeGreaterThan(0);
    expect(kinds.get('budget')).toBeGreaterThan(0);
  });

  it('random 16-bit words as code always end in a defined RunResult', async () => {
    const rnd = prng(0xc0de16);
    for (let i = 0; i < 200; i++) {
      const code = new Uint8Array(4096);
      const dv = new DataView(code.buffer);
      // Mostly compressed encodings (low bits != 11), so the decoder sees many RVC forms.
      for (let o = 0; o < code.length; o += 2) {
        let h = Math.floor(rnd() * 0x10000);
        if ((h & 3) === 3 && rnd() < 0.9) h &= ~1;
        dv.setUint16(o, h, true);
      }
      await runRandom(code, rnd, i % 4 === 0);
    }
  });

  it('random addresses for every load, store, LR/SC and AMO always end in a defined RunResult', async () => {
    const rnd = prng(0xadd7);
    type Enc = (rnd: () => number) => number;
    const ops: Enc[] = [
      (r) => rv.lb(6, off(r), 5), (r) => rv.lh(6, off(r), 5), (r) => rv.lw(6, off(r), 5),
      (r) => rv.lbu(6, off(r), 5), (r) => rv.lhu(6, off(r), 5),
      (r) => rv.sb(7, off(r), 5), (r) => rv.sh(7, off(r), 5), (r) => rv.sw(7, off(r), 5),
      () => rv.lr_w(6, 5), () => rv.sc_w(6, 7, 5), () => rv.amoswap_w(6, 7, 5), () => rv.amoadd_w(6, 7, 5),
      () => rv.amoxor_w(6, 7, 5), () => rv.amoand_w(6, 7, 5), () => rv.amoor_w(6, 7, 5),
      () => rv.amomin_w(6, 7, 5), () => rv.amomax_w(6, 7, 5), () => rv.amominu_w(6, 7, 5), () => rv.amomaxu_w(6, 7, 5),
    ];
    function off(r: () => number): number {
      return r() < 0.5 ? 0 : Math.floor(r() * 4096) - 2048;
    }
    // Address pools: anywhere, RAM data, the end of RAM, and every device window of the virt board.
    const devices = [0x00100000, 0x02000000, 0x02004000, 0x0200bff8, 0x0c000000, 0x0c002000, 0x0c200000,
      0x10000000, 0x10001000, 0x10002000, 0x10008000];
    const address = (r: () => number): number => {
      const x = r();
      if (x < 0.3) return u32(r);
      if (x < 0.5) return DATA + Math.floor(r() * 0x1000);
      if (x < 0.6) return RAM + (1 << 20) - 8 + Math.floor(r() * 16);
      return (devices[Math.floor(r() * devices.length)]! + Math.floor(r() * 0x100)) >>> 0;
    };
    for (let i = 0; i < 100; i++) {
      const a = new Asm();
      for (let k = 0; k < 100; k++) {
        // Stores avoid the finisher's magic values most of the time, so most programs run to their end.
        a.li(5, address(rnd)).li(7, u32(rnd) & 0xfff0fff0);
        a.word(ops[Math.floor(rnd() * ops.length)]!(rnd));
      }
      a.ebreak();
      const r = await runRandom(a.bytes(), rnd, false);
      expect(r.kind).not.toBe('stopped');
    }
  });
});
