// Fixtures for the S-mode, Sv32 and PMP tests: the supervisor CSR numbers, PTE bits, a page-table
// builder that writes Sv32 tables into guest RAM from the host, and an M-mode prologue that opens PMP,
// installs satp and enters S- or U-mode at a label with mret.
import { Asm } from '../helpers/asm.js';
import { RAM, le32, readU32, type Machine } from './harness.js';

export const SCSR = {
  sstatus: 0x100, sie: 0x104, stvec: 0x105, scounteren: 0x106, senvcfg: 0x10a,
  sscratch: 0x140, sepc: 0x141, scause: 0x142, stval: 0x143, sip: 0x144, satp: 0x180,
  medeleg: 0x302, mideleg: 0x303, menvcfg: 0x30a, menvcfgh: 0x31a,
  pmpcfg0: 0x3a0, pmpcfg1: 0x3a1, pmpcfg2: 0x3a2, pmpcfg3: 0x3a3, pmpaddr0: 0x3b0,
  tselect: 0x7a0, tdata1: 0x7a1, tdata2: 0x7a2, tdata3: 0x7a3, tinfo: 0x7a4,
} as const;

/** mstatus bits beyond the M-mode ones in harness.ts. */
export const MST = {
  SIE: 1 << 1, MIE: 1 << 3, SPIE: 1 << 5, MPIE: 1 << 7, SPP: 1 << 8, MPP: 3 << 11, MPP_S: 1 << 11,
  MPRV: 1 << 17, SUM: 1 << 18, MXR: 1 << 19, TVM: 1 << 20, TW: 1 << 21, TSR: 1 << 22,
} as const;

/** mip/mie bits. */
export const IRQ = { SSI: 1 << 1, MSI: 1 << 3, STI: 1 << 5, MTI: 1 << 7, SEI: 1 << 9, MEI: 1 << 11 } as const;

/** Exception causes added by S-mode and paging. */
export const XCAUSE = {
  ecallS: 9, fetchPage: 12, loadPage: 13, storePage: 15, fetchAccess: 1, loadAccess: 5, storeAccess: 7,
} as const;

/** Sv32 PTE bits. */
export const PTE = { V: 1, R: 2, W: 4, X: 8, U: 16, G: 32, A: 64, D: 128 } as const;
/** Leaf permission shorthands (V set, A and D clear: the walker sets them). */
export const P = {
  R: PTE.V | PTE.R, RW: PTE.V | PTE.R | PTE.W, RX: PTE.V | PTE.R | PTE.X, RWX: PTE.V | PTE.R | PTE.W | PTE.X,
  X: PTE.V | PTE.X,
} as const;

/** A PTE naming physical address `pa` (page-aligned) with `flags`. */
export function pte(pa: number, flags: number): number {
  return ((Math.floor(pa / 4096) << 10) | flags) >>> 0;
}

/** satp for Sv32 with the root table at `root` and an ASID. */
export function satpOf(root: number, asid = 0): number {
  return ((1 << 31) | ((asid & 0x1ff) << 22) | Math.floor(root / 4096)) >>> 0;
}

/** Where the tests keep their page tables: the last 64 KiB of the 1 MiB test RAM. */
export const PT_BASE = RAM + 0xf0000;

/**
 * Builds Sv32 page tables in guest RAM through the host: a root table at {@link PT_BASE} and second-level
 * tables allocated after it as needed.
 */
export class PageTables {
  readonly root = PT_BASE;
  #next = PT_BASE + 4096;
  readonly #tables = new Map<number, number>(); // vpn1 -> table address

  constructor(readonly m: Machine) {
    m.writeMemory(this.root, new Uint8Array(4096));
  }

  /** Maps the 4 KiB page at `va` to `pa` with `flags`. */
  map(va: number, pa: number, flags: number): this {
    const vpn1 = va >>> 22;
    let table = this.#tables.get(vpn1);
    if (table === undefined) {
      table = this.#next;
      this.#next += 4096;
      this.m.writeMemory(table, new Uint8Array(4096));
      this.#tables.set(vpn1, table);
      this.m.writeMemory(this.root + vpn1 * 4, le32(pte(table, PTE.V)));
    }
    this.m.writeMemory(table + ((va >>> 12) & 0x3ff) * 4, le32(pte(pa, flags)));
    return this;
  }

  /** Maps `n` pages from `va` to `pa` onwards. */
  mapRange(va: number, pa: number, n: number, flags: number): this {
    for (let i = 0; i < n; i++) this.map(va + i * 4096, pa + i * 4096, flags);
    return this;
  }

  /** A 4 MiB superpage: a leaf in the root table. `pa` need not be 4 MiB-aligned (to test that fault). */
  mapSuper(va: number, pa: number, flags: number): this {
    this.m.writeMemory(this.root + (va >>> 22) * 4, le32(pte(pa, flags)));
    return this;
  }

  /** Raw write of the root entry for `va` (e.g. a pointer with bad bits). */
  setRoot(va: number, value: number): this {
    this.m.writeMemory(this.root + (va >>> 22) * 4, le32(value));
    return this;
  }

  /** Physical address of the leaf PTE of `va` (which must have a second-level table). */
  leafAddr(va: number): number {
    const table = this.#tables.get(va >>> 22);
    if (table === undefined) throw new Error(`no second-level table for 0x${va.toString(16)}`);
    return table + ((va >>> 12) & 0x3ff) * 4;
  }

  /** Current value of the leaf PTE of `va`. */
  leaf(va: number): number {
    return readU32(this.m, this.leafAddr(va));
  }

  /** Current value of the root PTE of `va`. */
  rootEntry(va: number): number {
    return readU32(this.m, this.root + (va >>> 22) * 4);
  }

  satp(asid = 0): number {
    return satpOf(this.root, asid);
  }
}

/**
 * M-mode prologue (uses t0): PMP entry 0 over all memory with RWX, satp = `satp`, then mret into
 * `mode` at label `entry` with the extra mstatus bits `mstatus` set. Everything before the label runs in M.
 */
export function enter(a: Asm, mode: 'S' | 'U', entry: string, opts: { satp?: number; mstatus?: number } = {}): Asm {
  a.li(5, 0xffffffff).csrrw(0, SCSR.pmpaddr0, 5); //   pmpaddr0 = all of memory
  a.li(5, 0x1f).csrrw(0, SCSR.pmpcfg0, 5); //          pmpcfg0 = NAPOT | X | W | R
  if (opts.satp !== undefined) a.li(5, opts.satp).csrrw(0, SCSR.satp, 5);
  a.li(5, MST.MPP).csrrc(0, 0x300, 5); //                mstatus.MPP = U
  const set = (mode === 'S' ? MST.MPP_S : 0) | (opts.mstatus ?? 0);
  if (set !== 0) a.li(5, set).csrrs(0, 0x300, 5);
  a.la(5, entry).csrrw(0, 0x341, 5); //                 mepc = entry
  return a.mret();
}

/** A fresh Asm based at RAM. */
export function asm(): Asm {
  return new Asm(RAM);
}
