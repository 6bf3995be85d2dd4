// Shared fixture for the instruction tests: builds a small Machine, loads a snippet at RAM, runs it to its
// closing ebreak and closes every machine after each test. Holds the CSR, CLINT and cause numbers used.
import { afterEach, expect } from 'vitest';
import { Machine } from '../../src/index.js';
import type { Engine, RunResult } from '../../src/machine/types.js';
import { Asm, rv } from '../helpers/asm.js';

export { Machine };
export type { RunResult };

/** Base of guest RAM on the virt board. */
export const RAM = 0x80000000;
/** RAM size every test machine gets. */
export const RAM_SIZE = 1 << 20;
/** A scratch data area inside RAM, far from the code. */
export const DATA = 0x80080000;
/** First address past the end of RAM (unmapped). */
export const RAM_END = RAM + RAM_SIZE;
/** An address with nothing mapped at it on the virt board. */
export const UNMAPPED = 0x90000000;

export const CSR = {
  fcsr: 0x003, hstatus: 0x600,
  mstatus: 0x300, misa: 0x301, mie: 0x304, mtvec: 0x305, mcounteren: 0x306,
  mscratch: 0x340, mepc: 0x341, mcause: 0x342, mtval: 0x343, mip: 0x344,
  mcycle: 0xb00, minstret: 0xb02, mcycleh: 0xb80, minstreth: 0xb82,
  cycle: 0xc00, time: 0xc01, instret: 0xc02, cycleh: 0xc80, timeh: 0xc81, instreth: 0xc82,
  mvendorid: 0xf11, marchid: 0xf12, mimpid: 0xf13, mhartid: 0xf14,
} as const;

export const MSTATUS = { MIE: 1 << 3, MPIE: 1 << 7, MPP: 3 << 11 } as const;
export const MIE = { MSIE: 1 << 3, MTIE: 1 << 7, MEIE: 1 << 11 } as const;

export const CLINT = {
  msip: 0x02000000, mtimecmp: 0x02004000, mtimecmph: 0x02004004, mtime: 0x0200bff8, mtimeh: 0x0200bffc,
} as const;

/** mcause values (privileged spec, table "Machine cause register values after trap"). */
export const CAUSE = {
  fetchMisaligned: 0, fetchAccess: 1, illegal: 2, breakpoint: 3, loadMisaligned: 4, loadAccess: 5,
  storeMisaligned: 6, storeAccess: 7, ecallU: 8, ecallM: 11,
  softwareInterrupt: 0x80000003, timerInterrupt: 0x80000007,
} as const;

const live: Machine[] = [];
afterEach(() => {
  while (live.length > 0) live.pop()!.close();
});

let engine: Engine | undefined;
/** The engine machine() builds with from now on (undefined: the Machine's default). */
export function useEngine(e: Engine | undefined): void {
  engine = e;
}

/** A fresh machine with 1 MiB of RAM and the virtual clock, closed automatically after the test. */
export function machine(): Machine {
  const m = new Machine({ memory: RAM_SIZE, clock: 'virtual', ...(engine ? { engine } : {}) });
  live.push(m);
  return m;
}

/** Closes a machine before the end of its test (tests that create many). */
export function release(m: Machine): void {
  const i = live.indexOf(m);
  if (i >= 0) live.splice(i, 1);
  m.close();
}

/** Register values by register number; values may be written signed, they are compared as u32. */
export type Regs = Record<number, number>;

export interface Setup {
  /** Initial register values. */
  regs?: Regs;
  /** Bytes to place at {@link DATA}. */
  data?: Uint8Array;
  /** Other memory to load: [address, bytes]. */
  mem?: Array<[number, Uint8Array]>;
  /** CSR values to set from the host before the run. */
  csrs?: Record<number, number>;
}

/** Code to load: an {@link Asm} (based at RAM), raw 32-bit words, or bytes. */
export type Code = Asm | number[] | Uint8Array;

function toBytes(code: Code): Uint8Array {
  if (code instanceof Uint8Array) return code;
  if (code instanceof Asm) return code.bytes();
  const a = new Asm(RAM);
  for (const w of code) a.word(w);
  return a.bytes();
}

/** Creates a machine and loads `code` at RAM with the given setup; pc = RAM. */
export function load(code: Code, setup: Setup = {}): Machine {
  const m = machine();
  m.writeMemory(RAM, toBytes(code));
  if (setup.data) m.writeMemory(DATA, setup.data);
  for (const [addr, bytes] of setup.mem ?? []) m.writeMemory(addr, bytes);
  for (const [r, v] of Object.entries(setup.regs ?? {})) m.setRegister(Number(r), v >>> 0);
  for (const [c, v] of Object.entries(setup.csrs ?? {})) m.setCsr(Number(c), v >>> 0);
  m.pc = RAM;
  return m;
}

/**
 * Loads `code` followed by an `ebreak`, runs it, and checks that the run stopped on exactly that ebreak
 * (mtvec = 0, so the breakpoint ends the run as {kind:'trap', cause:3}). Returns the machine and result.
 */
export async function runToEbreak(code: Asm | number[], setup: Setup = {}, maxInstructions = 100_000):
Promise<{ m: Machine; r: RunResult }> {
  let bytes: Uint8Array;
  if (code instanceof Asm) {
    code.ebreak();
    bytes = code.bytes();
  } else {
    bytes = toBytes([...code, rv.ebreak()]);
  }
  const end = RAM + bytes.length - 4;
  const m = load(bytes, setup);
  const r = await m.run({ maxInstructions });
  expect(r, 'the snippet runs to its closing ebreak').toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: end });
  return { m, r };
}

/** Checks registers as unsigned 32-bit values. */
export function expectRegs(m: Machine, want: Regs): void {
  const got: Record<string, string> = {};
  const exp: Record<string, string> = {};
  for (const [r, v] of Object.entries(want)) {
    got[`x${r}`] = hex(m.getRegister(Number(r)));
    exp[`x${r}`] = hex(v >>> 0);
  }
  expect(got).toEqual(exp);
}

/** 0x-prefixed 8-digit hex, for readable failure messages. */
export function hex(v: number): string {
  return '0x' + (v >>> 0).toString(16).padStart(8, '0');
}

/** Little-endian u32 from guest memory. */
export function readU32(m: Machine, addr: number): number {
  const b = m.readMemory(addr, 4);
  return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
}

/** Little-endian bytes of u32 values. */
export function le32(...vs: number[]): Uint8Array {
  const out = new Uint8Array(vs.length * 4);
  const dv = new DataView(out.buffer);
  vs.forEach((v, i) => dv.setUint32(i * 4, v >>> 0, true));
  return out;
}

/** `csrw csr, rs` */
export const csrw = (c: number, rs: number) => rv.csrrw(0, c, rs);
/** `csrr rd, csr` */
export const csrr = (rd: number, c: number) => rv.csrrs(rd, c, 0);

/**
 * Appends a trap handler that spins (`handler: j handler`), and returns its label. Programs install it with
 * `a.la(t0, 'handler'); a.csrrw(0, CSR.mtvec, t0)` and run with a budget; the run then ends at the handler
 * with mepc/mcause/mtval describing the trap.
 */
export function spinHandler(a: Asm, name = 'handler'): string {
  a.align(4).label(name).j(name);
  return name;
}

/** Runs with a budget and checks the machine ended spinning in the handler at `handlerAddr`. */
export async function runToHandler(m: Machine, handlerAddr: number, maxInstructions = 10_000): Promise<RunResult> {
  const r = await m.run({ maxInstructions });
  expect({ kind: r.kind, pc: hex(r.pc) }, 'the run ends spinning in the trap handler')
    .toEqual({ kind: 'budget', pc: hex(handlerAddr) });
  return r;
}

/** A CSR read from the host that must exist (getCsr returns undefined for a CSR the hart lacks). */
export function csrOf(m: Machine, csr: number): number {
  const v = m.getCsr(csr);
  expect(v, `CSR 0x${csr.toString(16)} exists`).not.toBeUndefined();
  return v! >>> 0;
}

/** `x1=0x00000005 x2=0x00000007`, for test titles. */
export function fmtRegs(regs: Regs): string {
  const parts = Object.entries(regs).map(([r, v]) => `x${r}=${hex(v)}`);
  return parts.length > 0 ? parts.join(' ') : '(reset registers)';
}
