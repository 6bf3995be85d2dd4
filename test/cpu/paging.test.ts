// Sv32 translation: 4 KiB pages and superpages, misaligned superpages, A/D updates by the walker,
// faults of each access type with their stval, permissions (U, SUM, MXR), MPRV, satp and sfence.vma.
// Traps go to M-mode with mtvec = 0, so each run ends at the first trap with its cause, pc and tval.
import { describe, expect, it } from 'vitest';
import { rv, rvc, type Asm } from '../helpers/asm.js';
import { CAUSE, CSR, DATA, RAM, csrOf, expectRegs, hex, le32, load, readU32, type Machine, type RunResult } from './harness.js';
import { MST, P, PTE, PT_BASE, PageTables, SCSR, XCAUSE, asm, enter, pte, satpOf } from './sv32.js';

/** The virtual page most tests map (to DATA unless they say otherwise). */
const VA = 0x40000000;
/** A virtual page nothing maps. */
const HOLE = 0x50000000;

interface Case {
  /** Mode the body runs in. */
  mode?: 'S' | 'U';
  /** Extra mstatus bits for the body (SUM, MXR, MPRV...). */
  mstatus?: number;
  /** Mappings beyond the code superpage (identity over RAM, U when mode is U). */
  map?: (pt: PageTables) => void;
  /** satp; default: Sv32 with the test tables. */
  satp?: number;
  /** Code after the body's label (data loads etc.), appended after the closing ebreak. */
  tail?: (a: Asm) => void;
  /** Instruction budget (default 10 000). */
  budget?: number;
}

/**
 * Runs `body` in S- or U-mode under Sv32 and returns at the first trap (mtvec = 0: every trap ends the
 * run). A body that completes ends with its closing ebreak (cause 3).
 */
async function run(body: (a: Asm) => void, c: Case = {}): Promise<{ m: Machine; r: RunResult; pt: PageTables; a: Asm }> {
  const a = asm();
  const mode = c.mode ?? 'S';
  enter(a, mode, 'body', { satp: c.satp ?? satpOf(RAM + 0xf0000), mstatus: c.mstatus });
  a.label('body');
  body(a);
  a.label('end').ebreak();
  c.tail?.(a);
  const m = load(a);
  const pt = new PageTables(m);
  pt.mapSuper(RAM, RAM, P.RWX | (mode === 'U' ? PTE.U : 0));
  c.map?.(pt);
  const r = await m.run({ maxInstructions: c.budget ?? 10_000 });
  return { m, r, pt, a };
}

/** Checks that the run stopped on the body's closing ebreak. */
function completed(x: { r: RunResult; a: Asm }): void {
  expect({ kind: x.r.kind, cause: 'cause' in x.r ? x.r.cause : undefined, pc: hex(x.r.pc) })
    .toEqual({ kind: 'trap', cause: CAUSE.breakpoint, pc: hex(x.a.addr('end')) });
}

/** Checks that the run stopped at a trap with this cause, faulting pc and tval. */
function trapped(r: RunResult, cause: number, pc: number, tval: number): void {
  expect(r.kind).toBe('trap');
  if (r.kind !== 'trap') return;
  expect({ cause: r.cause, pc: hex(r.pc), tval: hex(r.tval) }).toEqual({ cause, pc: hex(pc), tval: hex(tval) });
}

describe('translation', () => {
  it('S-mode loads and stores through a 4 KiB page reach the mapped physical page', async () => {
    const x = await run((a) => {
      a.li(10, VA).li(11, 0x1234abcd);
      a.sw(11, 8, 10); //        sw a1, 8(a0)      VA + 8 -> DATA + 8
      a.lw(12, 8, 10); //        lw a2, 8(a0)
      a.lbu(13, 9, 10); //       lbu a3, 9(a0)
      a.li(14, VA + 0xffe).sh(11, 0, 14); //    sh a1, 0(a4)  last halfword of the page
    }, { map: (pt) => pt.map(VA, DATA, P.RW) });
    completed(x);
    expectRegs(x.m, { 12: 0x1234abcd, 13: 0xab });
    expect(readU32(x.m, DATA + 8)).toBe(0x1234abcd);
    expect(readU32(x.m, DATA + 0xffc)).toBe(0xabcd0000);
  });

  it('a 4 MiB superpage maps VA + offset to PA + offset for the whole 4 MiB', async () => {
    const x = await run((a) => {
      a.li(10, 0xc0000000 + (DATA - RAM)).lw(12, 0, 10); //    lw a2, 0(a0)    through the superpage
      a.li(11, 0x5a5a).sw(11, 4, 10); //                       sw a1, 4(a0)
    }, { map: (pt) => pt.mapSuper(0xc0000000, RAM, P.RW) });
    completed(x);
    x.m.writeMemory(DATA, le32(7));
    expect(readU32(x.m, DATA + 4)).toBe(0x5a5a);
  });

  it('a leaf in the root table whose PPN[0] is not zero (a misaligned superpage) is a page fault', async () => {
    for (const [what, code, cause] of [
      ['load', (a: Asm) => a.lw(12, 0, 10), XCAUSE.loadPage],
      ['store', (a: Asm) => a.sw(0, 0, 10), XCAUSE.storePage],
      ['fetch', (a: Asm) => a.jalr(0, 10, 0), XCAUSE.fetchPage],
    ] as const) {
      const x = await run((a) => {
        a.li(10, 0xc0000000 + 0x123);
        a.label('probe');
        code(a);
      }, { map: (pt) => pt.mapSuper(0xc0000000, RAM + 0x1000, P.RWX) });
      const pc = what === 'fetch' ? 0xc0000122 : x.a.addr('probe');
      trapped(x.r, cause, pc, what === 'fetch' ? 0xc0000122 : 0xc0000123);
    }
  });

  it('executes code through a mapping whose physical page is elsewhere, and jumps within it', async () => {
    const CODE_PA = RAM + 0x40000;
    const x = await run((a) => {
      a.li(10, VA).jalr(1, 10, 0); //   jalr ra, 0(a0)    call the code at VA
    }, {
      map: (pt) => {
        pt.map(VA, CODE_PA, P.RX);
        const c = asm();
        c.li(12, 5).label('loop').addi(13, 13, 3).addi(12, 12, -1).bne(12, 0, 'loop').auipc(14, 0).jalr(0, 1, 0);
        pt.m.writeMemory(CODE_PA, c.bytes());
      },
    });
    completed(x);
    expectRegs(x.m, { 13: 15, 14: VA + 16 }); // auipc sees the virtual pc
  });
});

describe('accessed and dirty bits', () => {
  it('the walker sets A on a load, A and D on a store, in the PTE in RAM', async () => {
    const x = await run((a) => {
      a.li(10, VA).lw(12, 0, 10); //       lw a2, 0(a0)       -> A
      a.li(10, VA + 0x1000).sw(0, 0, 10); // sw x0, 0(a0)     -> A | D
    }, { map: (pt) => pt.map(VA, DATA, P.RW).map(VA + 0x1000, DATA + 0x1000, P.RW).map(VA + 0x2000, DATA + 0x2000, P.RW) });
    completed(x);
    expect(hex(x.pt.leaf(VA))).toBe(hex(pte(DATA, P.RW | PTE.A)));
    expect(hex(x.pt.leaf(VA + 0x1000))).toBe(hex(pte(DATA + 0x1000, P.RW | PTE.A | PTE.D)));
    expect(hex(x.pt.leaf(VA + 0x2000))).toBe(hex(pte(DATA + 0x2000, P.RW))); // untouched
  });

  it('a store to a page first read sets D then; a fetch sets A; a superpage leaf is updated in the root table', async () => {
    const CODE_PA = RAM + 0x40000;
    const x = await run((a) => {
      a.li(10, VA).lw(12, 0, 10).sw(12, 0, 10); //   read then write the same page
      a.li(10, VA + 0x1000).jalr(1, 10, 0); //        fetch from the code page
      a.li(10, 0xc0000000 + (DATA - RAM)).lw(12, 0, 10);
    }, {
      map: (pt) => {
        pt.map(VA, DATA, P.RW).map(VA + 0x1000, CODE_PA, P.RX).mapSuper(0xc0000000, RAM, P.RW);
        pt.m.writeMemory(CODE_PA, le32(rv.jalr(0, 1, 0)));
      },
    });
    completed(x);
    expect(hex(x.pt.leaf(VA))).toBe(hex(pte(DATA, P.RW | PTE.A | PTE.D)));
    expect(hex(x.pt.leaf(VA + 0x1000))).toBe(hex(pte(CODE_PA, P.RX | PTE.A)));
    expect(hex(x.pt.rootEntry(0xc0000000))).toBe(hex(pte(RAM, P.RW | PTE.A)));
  });

  it('a faulting access leaves A and D as they were', async () => {
    const x = await run((a) => {
      a.li(10, VA).sw(0, 0, 10); //   store to a read-only page: fault
    }, { map: (pt) => pt.map(VA, DATA, P.R) });
    expect(x.r).toMatchObject({ kind: 'trap', cause: XCAUSE.storePage });
    expect(hex(x.pt.leaf(VA))).toBe(hex(pte(DATA, P.R)));
  });

  it('clearing A and D in the PTE has the walker set them again on the next store', async () => {
    const x = await run((a) => {
      a.li(10, VA).sw(0, 0, 10); //                            A | D set
      a.li(11, pte(DATA, P.RW)).li(14, 0x60000000);
      a.sw(11, 0, 14); //                                      VA's PTE (mapped at 0x60000000) = plain RW again
      a.lw(12, 0, 14); //                                      read it back
      a.sw(0, 4, 10); //                                       store to VA: the walker sets A | D again
      a.lw(13, 0, 14);
    }, { map: (pt) => pt.map(VA, DATA, P.RW).map(0x60000000, pt.leafAddr(VA), P.RW) });
    completed(x);
    expect(x.pt.leafAddr(VA) & 0xfff).toBe(0); // VA is entry 0 of its table, so 0x60000000 points at it
    expectRegs(x.m, { 12: pte(DATA, P.RW), 13: pte(DATA, P.RW | PTE.A | PTE.D) });
  });
});

describe('page faults and their stval', () => {
  // [what, body (a0 = the address), mapping flags at VA, expected cause, tval offset from VA]
  const rows: Array<[string, (a: Asm) => void, number | undefined, number, number]> = [
    ['lw from an unmapped page', (a) => a.lw(12, 0, 10), undefined, XCAUSE.loadPage, 0],
    ['sw to an unmapped page', (a) => a.sw(0, 4, 10), undefined, XCAUSE.storePage, 4],
    ['lb from a page with V = 0', (a) => a.lb(12, 3, 10), P.RW & ~PTE.V, XCAUSE.loadPage, 3],
    ['lw from a page with only X', (a) => a.lw(12, 8, 10), P.X, XCAUSE.loadPage, 8],
    ['sw to a read-only page', (a) => a.sw(0, 8, 10), P.R, XCAUSE.storePage, 8],
    ['sh to an execute-only page', (a) => a.sh(0, 2, 10), P.X, XCAUSE.storePage, 2],
    ['lw from a W-without-R page (reserved encoding)', (a) => a.lw(12, 0, 10), PTE.V | PTE.W, XCAUSE.loadPage, 0],
    ['amoadd.w on a read-only page (an AMO faults as a store)', (a) => a.word(rv.amoadd_w(12, 0, 10)), P.R, XCAUSE.storePage, 0],
    ['lr.w from an unmapped page', (a) => a.word(rv.lr_w(12, 10)), undefined, XCAUSE.loadPage, 0],
    ['sc.w to a read-only page', (a) => a.word(rv.sc_w(12, 0, 10)), P.R, XCAUSE.storePage, 0],
    ['lw from a user page in S-mode without SUM', (a) => a.lw(12, 0, 10), P.RW | PTE.U, XCAUSE.loadPage, 0],
  ];
  for (const [what, body, flags, cause, off] of rows) {
    it(`${what}: cause ${cause}, stval = the virtual address`, async () => {
      const x = await run((a) => {
        a.li(10, VA);
        a.label('probe');
        body(a);
      }, { map: (pt) => { if (flags !== undefined) pt.map(VA, DATA, flags); else pt.map(VA + 0x1000, DATA, P.RW); } });
      trapped(x.r, cause, x.a.addr('probe'), VA + off);
      expect(x.m.counters.instret).toBe(BigInt(x.a.addr('probe') - RAM) / 4n); // the faulting access did not retire
    });
  }

  it('a fetch from an unmapped page faults with cause 12, mepc = stval = the target', async () => {
    const x = await run((a) => {
      a.li(10, HOLE + 0x10).jalr(1, 10, 0);
    });
    trapped(x.r, XCAUSE.fetchPage, HOLE + 0x10, HOLE + 0x10);
  });

  it('a fetch from a page without X faults with cause 12', async () => {
    const x = await run((a) => {
      a.li(10, VA + 0x20).jalr(1, 10, 0);
    }, { map: (pt) => pt.map(VA, DATA, P.RW) });
    trapped(x.r, XCAUSE.fetchPage, VA + 0x20, VA + 0x20);
  });

  it('a misaligned lw crossing into an unmapped page faults with stval = the first byte there', async () => {
    const x = await run((a) => {
      a.li(10, VA + 0xffe).label('probe').lw(12, 0, 10);
    }, { map: (pt) => pt.map(VA, DATA, P.RW) });
    trapped(x.r, XCAUSE.loadPage, x.a.addr('probe'), VA + 0x1000);
  });

  it('a misaligned sw crossing two mapped pages writes both physical pages, which need not be adjacent', async () => {
    const x = await run((a) => {
      a.li(10, VA + 0xffe).li(11, 0x44332211).sw(11, 0, 10).lw(12, 0, 10);
    }, { map: (pt) => pt.map(VA, DATA + 0x3000, P.RW).map(VA + 0x1000, DATA, P.RW) });
    completed(x);
    expectRegs(x.m, { 12: 0x44332211 });
    expect(hex(readU32(x.m, DATA + 0x3ffc))).toBe(hex(0x22110000));
    expect(hex(readU32(x.m, DATA))).toBe(hex(0x00004433));
  });

  it('a misaligned sw whose second page is read-only faults and writes nothing', async () => {
    const x = await run((a) => {
      a.li(10, VA + 0xffe).li(11, -1).label('probe').sw(11, 0, 10);
    }, { map: (pt) => pt.map(VA, DATA + 0x3000, P.RW).map(VA + 0x1000, DATA, P.R) });
    trapped(x.r, XCAUSE.storePage, x.a.addr('probe'), VA + 0x1000);
    expect(readU32(x.m, DATA + 0x3ffc)).toBe(0);
  });

  it('a 32-bit instruction across a page boundary into an unmapped page: cause 12, epc its start, stval the next page', async () => {
    const CODE_PA = RAM + 0x40000;
    const x = await run((a) => {
      a.li(10, VA + 0xffe).jalr(1, 10, 0);
    }, {
      map: (pt) => {
        pt.map(VA, CODE_PA, P.RX);
        pt.m.writeMemory(CODE_PA + 0xffe, le32(rv.addi(12, 0, 7)).subarray(0, 2)); // first half only
      },
    });
    trapped(x.r, XCAUSE.fetchPage, VA + 0xffe, VA + 0x1000);
    expect(x.m.getRegister(12)).toBe(0);
  });

  it('a 32-bit instruction across a page boundary runs with its halves on non-adjacent physical pages', async () => {
    const [PA1, PA2] = [RAM + 0x43000, RAM + 0x41000];
    const x = await run((a) => {
      a.li(10, VA + 0xffe).jalr(1, 10, 0);
    }, {
      map: (pt) => {
        pt.map(VA, PA1, P.RX).map(VA + 0x1000, PA2, P.RX);
        const w = le32(rv.lui(12, 0x12345), rv.jalr(0, 1, 0));
        pt.m.writeMemory(PA1 + 0xffe, w.subarray(0, 2));
        pt.m.writeMemory(PA2, w.subarray(2));
        // The physically next page holds something else, which must not be what runs.
        pt.m.writeMemory(PA1 + 0x1000, le32(0xffffffff));
      },
    });
    completed(x);
    expectRegs(x.m, { 12: 0x12345000 });
  });

  it('a page-table pointer outside RAM is an access fault, not a page fault', async () => {
    const x = await run((a) => {
      a.li(10, VA).label('probe').lw(12, 0, 10);
    }, { map: (pt) => pt.setRoot(VA, pte(0x20000000, PTE.V)) });
    trapped(x.r, XCAUSE.loadAccess, x.a.addr('probe'), VA);
  });

  it('a pointer PTE at the last level is a page fault', async () => {
    const x = await run((a) => {
      a.li(10, VA).label('probe').lw(12, 0, 10);
    }, { map: (pt) => pt.map(VA, DATA, PTE.V) });
    trapped(x.r, XCAUSE.loadPage, x.a.addr('probe'), VA);
  });
});

describe('U, SUM and MXR', () => {
  it('U-mode reads and writes U pages but faults on supervisor pages (load, store, fetch)', async () => {
    const ok = await run((a) => {
      a.li(10, VA).li(11, 99).sw(11, 0, 10).lw(12, 0, 10);
    }, { mode: 'U', map: (pt) => pt.map(VA, DATA, P.RW | PTE.U) });
    completed(ok);
    expectRegs(ok.m, { 12: 99 });
    for (const [code, cause] of [
      [(a: Asm) => a.lw(12, 0, 10), XCAUSE.loadPage],
      [(a: Asm) => a.sw(12, 0, 10), XCAUSE.storePage],
      [(a: Asm) => a.jalr(0, 10, 0), XCAUSE.fetchPage],
    ] as const) {
      const x = await run((a) => {
        a.li(10, VA).label('probe');
        code(a);
      }, { mode: 'U', map: (pt) => pt.map(VA, DATA, P.RWX) });
      const fetch = cause === XCAUSE.fetchPage;
      trapped(x.r, cause, fetch ? VA : x.a.addr('probe'), VA);
    }
  });

  it('S-mode with SUM reads and writes user pages, and never executes them', async () => {
    const x = await run((a) => {
      a.li(10, VA).li(11, 5).sw(11, 0, 10).lw(12, 0, 10);
      a.li(10, VA + 0x100).jalr(1, 10, 0);
    }, { mstatus: MST.SUM, map: (pt) => pt.map(VA, DATA, P.RWX | PTE.U) });
    trapped(x.r, XCAUSE.fetchPage, VA + 0x100, VA + 0x100);
    expectRegs(x.m, { 12: 5 });
  });

  it('MXR lets loads read execute-only pages, in S and in U', async () => {
    for (const mode of ['S', 'U'] as const) {
      const u = mode === 'U' ? PTE.U : 0;
      const without = await run((a) => { a.li(10, VA).label('probe').lw(12, 0, 10); }, { mode, map: (pt) => pt.map(VA, DATA, P.X | u) });
      trapped(without.r, XCAUSE.loadPage, without.a.addr('probe'), VA);
      const withMxr = await run((a) => { a.li(10, VA).lw(12, 0, 10); }, { mode, mstatus: MST.MXR, map: (pt) => {
        pt.map(VA, DATA, P.X | u);
        pt.m.writeMemory(DATA, le32(0xfeed));
      } });
      completed(withMxr);
      expectRegs(withMxr.m, { 12: 0xfeed });
    }
  });

  it('setting SUM at run time takes effect for the next load (the cached translation is not reused)', async () => {
    const x = await run((a) => {
      a.li(10, VA).li(5, MST.SUM);
      a.csrrs(0, SCSR.sstatus, 5).lw(12, 0, 10); //   SUM = 1: allowed (and cached)
      a.csrrc(0, SCSR.sstatus, 5).label('probe').lw(13, 0, 10); // SUM = 0: must fault
    }, { map: (pt) => { pt.map(VA, DATA, P.RW | PTE.U); pt.m.writeMemory(DATA, le32(3)); } });
    trapped(x.r, XCAUSE.loadPage, x.a.addr('probe'), VA);
    expectRegs(x.m, { 12: 3 });
  });
});

describe('MPRV', () => {
  it('M-mode loads and stores with MPRV = 1 and MPP = S are translated; fetches are not', async () => {
    const a = asm();
    a.li(5, 0xffffffff).csrrw(0, SCSR.pmpaddr0, 5).li(5, 0x1f).csrrw(0, SCSR.pmpcfg0, 5);
    a.li(5, satpOf(RAM + 0xf0000)).csrrw(0, SCSR.satp, 5);
    a.li(5, MST.MPRV | MST.MPP_S).csrrs(0, CSR.mstatus, 5);
    a.li(10, VA).li(11, 77).sw(11, 0, 10).lw(12, 0, 10); //   through VA -> DATA
    a.li(5, MST.MPRV).csrrc(0, CSR.mstatus, 5);
    a.li(10, DATA).lw(13, 0, 10); //                          physical again
    a.ebreak();
    const m = load(a);
    new PageTables(m).map(VA, DATA, P.RW);
    const r = await m.run({ maxInstructions: 1000 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expectRegs(m, { 12: 77, 13: 77 });
  });

  it('M-mode with MPRV = 1 and MPP = U faults on a supervisor page, and the trap leaves MPRV set', async () => {
    const a = asm();
    a.li(5, 0xffffffff).csrrw(0, SCSR.pmpaddr0, 5).li(5, 0x1f).csrrw(0, SCSR.pmpcfg0, 5);
    a.li(5, satpOf(RAM + 0xf0000)).csrrw(0, SCSR.satp, 5);
    a.li(5, MST.MPP).csrrc(0, CSR.mstatus, 5).li(5, MST.MPRV).csrrs(0, CSR.mstatus, 5);
    a.li(10, VA).label('probe').lw(12, 0, 10);
    const m = load(a);
    new PageTables(m).map(VA, DATA, P.RW);
    const r = await m.run({ maxInstructions: 1000 });
    trapped(r, XCAUSE.loadPage, a.addr('probe'), VA);
    expect(csrOf(m, CSR.mstatus) & MST.MPRV).toBe(MST.MPRV); // the trap into M leaves MPRV alone
  });
});

describe('satp and sfence.vma', () => {
  it('satp keeps MODE, all 9 ASID bits and the PPN', async () => {
    const a = asm();
    a.li(5, 0xffffffff).csrrw(6, SCSR.satp, 5).csrrs(7, SCSR.satp, 0).csrrw(0, SCSR.satp, 0).ebreak();
    const m = load(a);
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expectRegs(m, { 6: 0, 7: 0xffffffff });
  });

  // sfence.vma operands: [rs1 = address?, rs2 = ASID?]
  for (const [name, addr, asid] of [['sfence.vma', false, false], ['sfence.vma a0', true, false],
    ['sfence.vma x0, a1', false, true], ['sfence.vma a0, a1', true, true]] as const) {
    it(`${name}: after a leaf PTE is changed to another page, a load sees the new page`, async () => {
      const x = await run((a) => {
        a.li(10, VA).li(11, 3).lw(12, 0, 10); //                 old page
        a.li(14, 0x60000000).li(15, pte(DATA + 0x1000, P.RW));
        a.sw(15, 0, 14); //                                      remap VA through the table's own mapping
        a.word(rv.sfence_vma(addr ? 10 : 0, asid ? 11 : 0));
        a.lw(13, 0, 10); //                                      new page
      }, {
        satp: satpOf(RAM + 0xf0000, 3),
        map: (pt) => {
          pt.map(VA, DATA, P.RW);
          pt.map(0x60000000, pt.leafAddr(VA), P.RW);
          pt.m.writeMemory(DATA, le32(111));
          pt.m.writeMemory(DATA + 0x1000, le32(222));
        },
      });
      completed(x);
      expectRegs(x.m, { 12: 111, 13: 222 });
    });
  }

  it('a store to a PTE takes effect for the very next access, sfence.vma or not (the TLB is not hidden state)', async () => {
    const x = await run((a) => {
      a.li(10, VA).lw(12, 0, 10);
      a.li(14, 0x60000000).li(15, pte(DATA + 0x1000, P.RW)).sw(15, 0, 14);
      a.lw(13, 0, 10);
      a.sw(0, 0, 14); //                                            unmap VA
      a.label('probe').lw(16, 0, 10);
    }, {
      map: (pt) => {
        pt.map(VA, DATA, P.RW).map(0x60000000, pt.leafAddr(VA), P.RW);
        pt.m.writeMemory(DATA, le32(111));
        pt.m.writeMemory(DATA + 0x1000, le32(222));
      },
    });
    trapped(x.r, XCAUSE.loadPage, x.a.addr('probe'), VA);
    expectRegs(x.m, { 12: 111, 13: 222 });
  });

  it('an M-mode store (physical) to a PTE takes effect for the next access in S-mode, without sfence.vma', async () => {
    // S-mode loads through V (its translation is cached), then ecalls; the M-mode handler, whose stores
    // are physical, points V's leaf at another page and returns; the next load must see that page.
    // M-mode stores to the table page once before (its first store since reset goes the slow way for
    // dirty tracking), so that the handler's store may take the fast path unless the page's flags stop it.
    // (V's cache slot is not the code's, whose fetches would evict it.)
    const V = VA + 0x5000;
    const a = asm();
    a.la(5, 'trap').csrrw(0, 0x305, 5); //                     mtvec = trap
    a.lw(16, 0, 14).sw(16, 0, 14); //                          the leaf entry, stored back as it is
    enter(a, 'S', 'body', { satp: satpOf(PT_BASE) });
    a.label('trap').sw(15, 0, 14); //                         x14 = V's leaf entry, x15 = the new one
    a.csrrs(5, 0x341, 0).addi(5, 5, 4).csrrw(0, 0x341, 5).mret();
    a.label('body').li(10, V).lw(12, 0, 10).ecall().lw(13, 0, 10);
    a.label('spin').j('spin');
    const m = load(a);
    const pt = new PageTables(m);
    pt.mapSuper(RAM, RAM, P.RWX).map(V, DATA, P.RW);
    m.writeMemory(DATA, le32(111));
    m.writeMemory(DATA + 0x1000, le32(222));
    m.setRegister(14, pt.leafAddr(V));
    m.setRegister(15, pte(DATA + 0x1000, P.RW));
    const r = await m.run({ maxInstructions: 200 });
    expect(r.kind).toBe('budget');
    expectRegs(m, { 12: 111, 13: 222 });
  });

  it('a store to a PTE takes effect after more translations were cached than a flush tracks one by one', async () => {
    // 300 virtual pages (one TLB fill each, past the 256 a flush clears entry by entry), all aliases of
    // DATA; then VA page 5 is remapped to DATA + 0x1000 by a store to its PTE through a window.
    const PAGES = 300;
    const x = await run((a) => {
      a.li(10, VA).li(11, PAGES).li(13, 4096);
      a.label('touch').lw(12, 0, 10).add(10, 10, 13).addi(11, 11, -1).bne(11, 0, 'touch');
      a.li(14, 0x60000000 + 5 * 4).li(15, pte(DATA + 0x1000, P.RW)).sw(15, 0, 14);
      a.li(10, VA + 5 * 4096).lw(16, 0, 10);
      a.li(10, VA + 7 * 4096).lw(17, 0, 10);
    }, {
      map: (pt) => {
        for (let i = 0; i < PAGES; i++) pt.map(VA + i * 4096, DATA, P.RW);
        pt.map(0x60000000, pt.leafAddr(VA), P.RW);
        pt.m.writeMemory(DATA, le32(111));
        pt.m.writeMemory(DATA + 0x1000, le32(222));
      },
    });
    completed(x);
    expectRegs(x.m, { 12: 111, 16: 222, 17: 111 });
  });

  // The translation cache drops just what a page-table store invalidates: a 4 KiB leaf's translation
  // (in the one slot per bank its entry's index names), everything under a root entry, and the direct
  // stores of a page that has just become a page table. The code runs from slot 0 (0x80000000 of the
  // identity superpage over RAM, which the stores below also go through); the translations under test
  // sit in other slots, where nothing evicts them.
  it('a store to a 4 KiB leaf entry takes effect at once, with the entry stored through another cache slot', async () => {
    const V = VA + 0x7000; //                                                    slot 7
    const LT = DATA + 0x3000; //                                                 V's leaf table
    const x = await run((a) => {
      a.li(10, V).lw(12, 0, 10);
      a.li(14, LT + 7 * 4).li(15, pte(DATA + 0x1000, P.RW)).sw(15, 0, 14); //  through slot 0x83
      a.lw(13, 0, 10);
      a.sw(0, 0, 14); //                                                      unmap V
      a.label('probe').lw(16, 0, 10);
    }, {
      map: (pt) => {
        pt.setRoot(V, pte(LT, PTE.V));
        pt.m.writeMemory(LT + 7 * 4, le32(pte(DATA, P.RW)));
        pt.m.writeMemory(DATA, le32(111));
        pt.m.writeMemory(DATA + 0x1000, le32(222));
      },
    });
    trapped(x.r, XCAUSE.loadPage, x.a.addr('probe'), V);
    expectRegs(x.m, { 12: 111, 13: 222 });
  });

  it('a store to a root entry takes effect at once for every page under it', async () => {
    const x = await run((a) => {
      a.li(10, VA + 0x1000).lw(12, 0, 10).li(11, VA + 0x5000).lw(13, 0, 11); // slots 1 and 5
      a.li(14, PT_BASE + (VA >>> 22) * 4).sw(0, 0, 14); //                    the whole 4 MiB unmapped
      a.label('probe').lw(16, 0, 11);
    }, {
      map: (pt) => {
        pt.map(VA + 0x1000, DATA, P.RW).map(VA + 0x5000, DATA + 0x1000, P.RW);
        pt.m.writeMemory(DATA, le32(111));
        pt.m.writeMemory(DATA + 0x1000, le32(222));
      },
    });
    trapped(x.r, XCAUSE.loadPage, x.a.addr('probe'), VA + 0x5000);
    expectRegs(x.m, { 12: 111, 13: 222 });
  });

  it('a page stored to through a cached mapping that then becomes a page table: later stores there still take effect', async () => {
    const T = DATA + 0x2000; //                                                  a data page, then a leaf table
    const W = 0x70009000; //                                                     slot 9; its entry is T + 9 * 4
    const x = await run((a) => {
      a.li(14, T + 9 * 4).li(15, pte(DATA, P.RW)).sw(15, 0, 14).sw(15, 0, 14); // T cached writable (slot 0x82)
      a.li(16, PT_BASE + (W >>> 22) * 4).li(17, pte(T, PTE.V)).sw(17, 0, 16); // root entry → T
      a.li(10, W).lw(12, 0, 10); //                                           the walk reads T
      a.li(15, pte(DATA + 0x1000, P.RW)).sw(15, 0, 14); //                    through the same mapping of T
      a.lw(13, 0, 10);
    }, {
      map: (pt) => {
        pt.m.writeMemory(DATA, le32(111));
        pt.m.writeMemory(DATA + 0x1000, le32(222));
      },
    });
    completed(x);
    expectRegs(x.m, { 12: 111, 13: 222 });
  });

  // A page that holds code takes its stores through the slow path, which skips the walk when the load
  // translation is cached and its leaf entry allows the store: D must already be set, W granted.
  const RET = 0x00008067; // jalr x0, 0(ra)
  it('a store to a code page whose entry lacks D, after a fetch and a load through it: the walker sets D', async () => {
    const x = await run((a) => {
      a.li(10, VA).jalr(1, 10, 0).lw(12, 0, 10); //                         decoded, then cached for loads
      a.li(11, 0x1234).sw(11, 0x400, 10);
    }, {
      map: (pt) => {
        pt.map(VA, DATA, P.RWX);
        pt.m.writeMemory(DATA, le32(RET));
      },
    });
    completed(x);
    expectRegs(x.m, { 12: RET });
    expect(readU32(x.m, DATA + 0x400)).toBe(0x1234);
    expect(x.pt.leaf(VA) & (PTE.A | PTE.D)).toBe(PTE.A | PTE.D);
  });

  it('a store to a read-only code page after a fetch and a load through it: a store page fault, nothing written', async () => {
    const x = await run((a) => {
      a.li(10, VA).jalr(1, 10, 0).lw(12, 0, 10);
      a.li(11, 0x1234).label('probe').sw(11, 0x400, 10);
    }, {
      map: (pt) => {
        pt.map(VA, DATA, P.RX | PTE.A | PTE.D);
        pt.m.writeMemory(DATA, le32(RET));
      },
    });
    trapped(x.r, XCAUSE.storePage, x.a.addr('probe'), VA + 0x400);
    expect(readU32(x.m, DATA + 0x400)).toBe(0);
  });

  it('switching satp between two roots switches the address space', async () => {
    const ROOT2 = RAM + 0xe0000;
    const x = await run((a) => {
      a.li(10, VA).lw(12, 0, 10);
      a.li(5, satpOf(ROOT2, 7)).csrrw(0, SCSR.satp, 5).lw(13, 0, 10);
      a.li(5, satpOf(RAM + 0xf0000, 1)).csrrw(0, SCSR.satp, 5).lw(14, 0, 10);
    }, {
      map: (pt) => {
        pt.map(VA, DATA, P.RW);
        pt.m.writeMemory(DATA, le32(1));
        pt.m.writeMemory(DATA + 0x1000, le32(2));
        // A second address space: the same code superpage, VA -> DATA + 0x1000 through a 4 MiB leaf.
        pt.m.writeMemory(ROOT2 + (RAM >>> 22) * 4, le32(pte(RAM, P.RWX)));
        pt.m.writeMemory(ROOT2 + (VA >>> 22) * 4, le32(pte(ROOT2 + 0x1000, PTE.V)));
        pt.m.writeMemory(ROOT2 + 0x1000, le32(pte(DATA + 0x1000, P.RW)));
      },
    });
    completed(x);
    expectRegs(x.m, { 12: 1, 13: 2, 14: 1 });
  });

  it('satp bare in S-mode: addresses are physical (still checked by PMP)', async () => {
    const x = await run((a) => {
      a.li(10, DATA).li(11, 9).sw(11, 0, 10).lw(12, 0, 10);
    }, { satp: 0 });
    completed(x);
    expectRegs(x.m, { 12: 9 });
  });

  it('sfence.vma is illegal in U-mode, and in S-mode with TVM; satp is illegal in S-mode with TVM', async () => {
    const u = await run((a) => { a.label('probe').word(rv.sfence_vma()); }, { mode: 'U' });
    trapped(u.r, CAUSE.illegal, u.a.addr('probe'), rv.sfence_vma());
    const s = await run((a) => { a.label('probe').word(rv.sfence_vma(10, 11)); }, { mstatus: MST.TVM });
    trapped(s.r, CAUSE.illegal, s.a.addr('probe'), rv.sfence_vma(10, 11));
    const t = await run((a) => { a.label('probe').csrrs(12, SCSR.satp, 0); }, { mstatus: MST.TVM });
    trapped(t.r, CAUSE.illegal, t.a.addr('probe'), rv.csrrs(12, SCSR.satp, 0));
    const ok = await run((a) => { a.word(rv.sfence_vma()).csrrs(12, SCSR.satp, 0); });
    completed(ok);
    expectRegs(ok.m, { 12: satpOf(RAM + 0xf0000) });
  });
});

describe('the decoder cache under paging', () => {
  it('a store through one virtual alias changes the code run through another, at once', async () => {
    const CODE_PA = RAM + 0x40000;
    const WRITE_VA = 0x60000000;
    const x = await run((a) => {
      a.li(10, VA).jalr(1, 10, 0); //                  run f: a2 = 1
      a.li(11, WRITE_VA).li(15, rv.addi(12, 0, 2));
      a.sw(15, 0, 11); //                             patch f through the other alias
      a.word(rv.fence_i());
      a.jalr(1, 10, 0); //                            run f again: a2 = 2
      a.add(13, 12, 0);
    }, {
      map: (pt) => {
        pt.map(VA, CODE_PA, P.RX).map(WRITE_VA, CODE_PA, P.RW);
        pt.m.writeMemory(CODE_PA, le32(rv.addi(12, 0, 1), rv.jalr(0, 1, 0)));
      },
    });
    completed(x);
    expectRegs(x.m, { 13: 2 });
  });

  it('a store through an alias to the next instruction of the running block is seen by that block', async () => {
    const CODE_PA = RAM + 0x40000;
    const WRITE_VA = 0x60000000;
    const x = await run((a) => {
      a.li(10, VA).jalr(1, 10, 0);
    }, {
      map: (pt) => {
        pt.map(VA, CODE_PA, P.RWX).map(WRITE_VA, CODE_PA, P.RW);
        const c = asm();
        c.li(11, WRITE_VA).li(15, rv.addi(12, 0, 42)).sw(15, 16, 11); // patch the slot right after this sw
        c.addi(12, 0, 1); //                                          replaced before it runs: a2 = 42
        c.jalr(0, 1, 0);
        expect(c.bytes().length).toBe(24);
        pt.m.writeMemory(CODE_PA, c.bytes());
      },
    });
    completed(x);
    expectRegs(x.m, { 12: 42 });
  });

  it('instret and branches are the same for a loop run through paging and run physically', async () => {
    const loop = (a: Asm) => {
      a.li(10, 1000).label('loop');
      a.addi(11, 11, 1).c_addi(12, 2).lw(13, 0, 2).sw(13, 4, 2);
      a.addi(10, 10, -1).bne(10, 0, 'loop');
    };
    const paged = await run((a) => { a.li(2, VA); loop(a); }, { map: (pt) => pt.map(VA, DATA, P.RW) });
    completed(paged);
    const bare = asm();
    bare.li(2, DATA);
    loop(bare);
    bare.ebreak();
    const m = load(bare);
    const r = await m.run({ maxInstructions: 100_000 });
    expect(r.kind).toBe('trap');
    const prologue = BigInt(paged.a.addr('body') - RAM) / 4n; // every prologue instruction is 4 bytes
    expect(paged.r.instret - prologue).toBe(r.instret);
    expect(paged.r.branches).toBe(r.branches);
  });

  it('stops at exactly the requested instret inside translated code, and resumes to the same end', async () => {
    const build = (a: Asm) => {
      a.li(2, VA).li(10, 300).label('loop').lw(13, 0, 2).addi(13, 13, 1).sw(13, 0, 2).addi(10, 10, -1).bne(10, 0, 'loop');
    };
    const whole = await run(build, { map: (pt) => pt.map(VA, DATA, P.RW) });
    completed(whole);
    for (const stop of [37n, 38n, 500n, 1001n]) {
      const a = asm();
      enter(a, 'S', 'body', { satp: satpOf(RAM + 0xf0000) });
      a.label('body');
      build(a);
      a.label('end').ebreak();
      const m = load(a);
      const pt = new PageTables(m);
      pt.mapSuper(RAM, RAM, P.RWX).map(VA, DATA, P.RW);
      const r1 = await m.run({ untilInstret: stop });
      expect(r1).toMatchObject({ kind: 'budget', instret: stop });
      const r2 = await m.run({ maxInstructions: 10_000 });
      expect({ instret: r2.instret, branches: r2.branches, pc: r2.pc }).toEqual({
        instret: whole.r.instret, branches: whole.r.branches, pc: whole.r.pc,
      });
      expect(m.stateHash()).toBe(whole.m.stateHash());
    }
  });

  it('a store to the second half of a page-straddling instruction changes it at its next run (physical and paged)', async () => {
    const routine = (c: Asm) => c.word(rv.addi(12, 12, 1)).word(rv.jalr(0, 1, 0)); //  addi a2, a2, 1; ret
    const patch = rv.addi(12, 12, 16) >>> 16; //                                       its upper half: imm = 16
    // Physical, M-mode: the routine at RAM + 0xffe, straddling into RAM + 0x1000.
    const a = asm();
    a.li(10, RAM + 0xffe).jalr(1, 10, 0);
    a.li(11, RAM + 0x1000).li(13, patch).sh(13, 0, 11);
    a.jalr(1, 10, 0).ebreak();
    const bytes = a.bytes();
    expect(bytes.length).toBeLessThan(0xffe);
    const m = load(a);
    const r = asm();
    routine(r);
    m.writeMemory(RAM + 0xffe, r.bytes());
    expect(await m.run({ maxInstructions: 100 })).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expectRegs(m, { 12: 17 });
    // Paged: the halves on scattered physical pages, the patch through a third virtual alias.
    const [PA1, PA2] = [RAM + 0x43000, RAM + 0x41000];
    const x = await run((b) => {
      b.li(10, VA + 0xffe).jalr(1, 10, 0);
      b.li(11, 0x60000000).li(13, patch).sh(13, 0, 11);
      b.jalr(1, 10, 0);
    }, {
      map: (pt) => {
        pt.map(VA, PA1, P.RX).map(VA + 0x1000, PA2, P.RX).map(0x60000000, PA2, P.RW);
        const w = asm();
        routine(w);
        pt.m.writeMemory(PA1 + 0xffe, w.bytes().subarray(0, 2));
        pt.m.writeMemory(PA2, w.bytes().subarray(2));
      },
    });
    completed(x);
    expectRegs(x.m, { 12: 17 });
  });

  // Regression: a straddling jump landing within 4 KiB ahead, with more than 65535 instructions left in
  // the slice, was taken into the single-step page's unused slots (a jump to address 0 of the host).
  for (const [name, jump] of [['jal', rv.jal(0, 8)], ['beq', rv.beq(0, 0, 12)], ['jalr', rv.jalr(0, 1, 0)]] as const) {
    it(`a ${name} straddling two pages jumps to its target with a large budget left`, async () => {
      const a = asm();
      a.li(1, RAM + 0x1006).li(10, RAM + 0xffe).jalr(0, 10, 0);
      const m = load(a);
      const tail = asm();
      tail.word(jump).word(rv.addi(12, 0, 1)).word(rv.addi(12, 0, 2)).ebreak(); // targets: +8 / +12 / ra
      m.writeMemory(RAM + 0xffe, tail.bytes());
      const r = await m.run({ maxInstructions: 1_000_000 });
      expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: RAM + 0xffe + 12 });
      expectRegs(m, { 12: name === 'beq' ? 0 : 2 });
    });
  }

  it('a compressed instruction in the last halfword of a page does not reach into the next page', async () => {
    const CODE_PA = RAM + 0x40000;
    const x = await run((a) => {
      a.li(10, VA + 0xffc).jalr(1, 10, 0);
    }, {
      map: (pt) => {
        pt.map(VA, CODE_PA, P.RX).map(VA + 0x1000, CODE_PA + 0x2000, P.RX);
        const tail = new Uint8Array(4);
        new DataView(tail.buffer).setUint16(0, rvc.c_li(12, 9), true);
        new DataView(tail.buffer).setUint16(2, rvc.c_jr(1), true);
        pt.m.writeMemory(CODE_PA + 0xffc, tail);
      },
    });
    completed(x);
    expectRegs(x.m, { 12: 9 });
  });
});

describe('decoded pages that become data', () => {
  // A page that keeps taking stores while code elsewhere runs loses its decode after
  // kDataStoresBeforeDrop (1024) of them and is decoded afresh when it runs again: what runs must stay
  // exactly what memory holds across those transitions.
  const body = (a: Asm, fn: number, data: number) => {
    a.li(8, 1500).li(9, 0).li(18, fn).li(19, data);
    a.label('loop');
    a.sw(8, 0, 19); //                          sw s0, 0(s3)      a data store to f's page
    a.jalr(1, 18, 0); //                        call f
    a.add(9, 9, 10); //                         sum += a0
    a.li(5, 300).bne(8, 5, 'skip');
    a.li(6, rv.addi(10, 0, 2)).sw(6, 0, 18); //  at s0 = 300: patch f to return 2
    a.label('skip').addi(8, 8, -1).bne(8, 0, 'loop');
  };
  const f = le32(rv.addi(10, 0, 1), rv.jalr(0, 1, 0)); // f: li a0, 1; ret
  const want = 1201 * 1 + 299 * 2;

  it('physical (M-mode): 1500 calls of a function whose page also takes the stores, patched after 1201', async () => {
    const a = asm();
    body(a, RAM + 0x4000, RAM + 0x4800);
    a.ebreak();
    const m = load(a);
    m.writeMemory(RAM + 0x4000, f);
    expect(await m.run({ maxInstructions: 1_000_000 })).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expectRegs(m, { 9: want });
  });

  it('paged (S-mode): the same through a mapping, the data stores through a second alias', async () => {
    const x = await run((a) => body(a, VA, 0x60000800), {
      budget: 1_000_000,
      map: (pt) => {
        pt.map(VA, RAM + 0x44000, P.RWX).map(0x60000000, RAM + 0x44000, P.RW);
        pt.m.writeMemory(RAM + 0x44000, f);
      },
    });
    completed(x);
    expectRegs(x.m, { 9: want });
  });
});
