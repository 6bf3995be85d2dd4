// S-mode: the supervisor CSRs as views of the machine ones, delegation of every exception and
// interrupt through medeleg/mideleg, interrupt enables and priority across M and S, sret/mret
// transitions (TSR, MPRV), WFI and TW, counter enables, the debug trigger registers, and the fix that
// makes a write to minstreth/mcycleh replace the writing instruction's increment.
import { describe, expect, it } from 'vitest';
import { rv, type Asm } from '../helpers/asm.js';
import { CAUSE, CLINT, CSR, DATA, RAM, UNMAPPED, csrOf, csrr, expectRegs, hex, load, runToEbreak, runToHandler, type Machine } from './harness.js';
import { IRQ, MST, P, PTE, PageTables, SCSR, XCAUSE, asm, enter, satpOf } from './sv32.js';

/** mcause/scause of interrupt `code`. */
const intr = (code: number) => 0x80000000 + code;

/**
 * A program with an S-mode handler that spins at `shandler` and no M-mode handler (mtvec = 0: a trap to
 * M ends the run). `setup` runs in M first (delegation, mie, mip...), then `mode` runs `body`.
 */
function program(mode: 'S' | 'U', setup: (a: Asm) => void, body: (a: Asm) => void, opts: { satp?: number; mstatus?: number } = {}): Asm {
  const a = asm();
  a.la(5, 'shandler').csrrw(0, SCSR.stvec, 5);
  setup(a);
  enter(a, mode, 'body', opts);
  a.align(4).label('body');
  body(a);
  a.label('end').ebreak();
  // On a page of its own: under Sv32 the program's pages are user pages for U-mode, this one is not.
  a.align(4096).label('shandler').j('shandler');
  return a;
}

/** Where the run stopped: the S handler (delegated), or a trap to M (with its cause). */
async function outcome(a: Asm, m: Machine): Promise<{ where: 'S' | 'M'; cause: number; epc: number; tval: number }> {
  const r = await m.run({ maxInstructions: 10_000 });
  if (r.kind === 'budget' && r.pc === a.addr('shandler')) {
    return { where: 'S', cause: csrOf(m, SCSR.scause), epc: csrOf(m, SCSR.sepc), tval: csrOf(m, SCSR.stval) };
  }
  if (r.kind !== 'trap') throw new Error(`unexpected stop: ${JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
  return { where: 'M', cause: r.cause, epc: r.pc, tval: r.tval };
}

describe('supervisor CSRs', () => {
  it('sstatus shows only the S fields of mstatus and writes only SIE, SPIE, SPP, SUM and MXR', async () => {
    const { m } = await runToEbreak([
      rv.csrrw(0, CSR.mstatus, 6), //        mstatus = everything writable
      rv.csrrs(10, SCSR.sstatus, 0), //      a0 = sstatus
      rv.csrrw(0, SCSR.sstatus, 0), //       sstatus = 0
      rv.csrrs(11, CSR.mstatus, 0), //       a1 = mstatus
    ], { regs: { 6: 0xffffffff } });
    const all = MST.SIE | MST.MIE | MST.SPIE | MST.MPIE | MST.SPP | MST.MPP | MST.MPRV | MST.SUM | MST.MXR | MST.TVM | MST.TW | MST.TSR;
    const sBits = MST.SIE | MST.SPIE | MST.SPP | MST.SUM | MST.MXR;
    expectRegs(m, { 10: sBits, 11: all & ~sBits });
  });

  it('medeleg holds causes 0-9, 12, 13 and 15 (never 11, ecall from M); mideleg SSIP, STIP and SEIP', async () => {
    const { m } = await runToEbreak([
      rv.csrrw(0, SCSR.medeleg, 6), rv.csrrs(10, SCSR.medeleg, 0),
      rv.csrrw(0, SCSR.mideleg, 6), rv.csrrs(11, SCSR.mideleg, 0),
    ], { regs: { 6: 0xffffffff } });
    expectRegs(m, { 10: 0xb3ff, 11: IRQ.SSI | IRQ.STI | IRQ.SEI });
  });

  it('sie and sip are mie and mip masked by mideleg; S-mode may set SSIP only', async () => {
    const { m } = await runToEbreak([
      rv.csrrw(0, CSR.mie, 6), //           mie = all
      rv.csrrw(0, SCSR.mideleg, 7), //      mideleg = SSI | STI
      rv.csrrs(10, SCSR.sie, 0), //         a0 = sie
      rv.csrrw(0, SCSR.sie, 0), //          sie = 0: clears SSIE and STIE only
      rv.csrrs(11, CSR.mie, 0), //          a1 = mie
      rv.csrrw(0, CSR.mip, 8), //           mip = STIP | SEIP (M-mode may)
      rv.csrrw(0, SCSR.sip, 6), //          sip = all: sets SSIP only
      rv.csrrs(12, CSR.mip, 0), //          a2 = mip
      rv.csrrs(13, SCSR.sip, 0), //         a3 = sip
      rv.csrrw(0, CSR.mip, 0), rv.csrrw(0, CSR.mie, 0),
    ], { regs: { 6: 0xffffffff, 7: IRQ.SSI | IRQ.STI, 8: IRQ.STI | IRQ.SEI } });
    expectRegs(m, {
      10: IRQ.SSI | IRQ.STI,
      11: IRQ.MSI | IRQ.MTI | IRQ.MEI | IRQ.SEI,
      12: IRQ.SSI | IRQ.STI | IRQ.SEI,
      13: IRQ.SSI | IRQ.STI,
    });
  });

  it('mip: M-mode cannot write MSIP, MTIP or MEIP (they are the CLINT\'s and the PLIC\'s)', async () => {
    const { m } = await runToEbreak([rv.csrrw(0, CSR.mip, 6), rv.csrrs(10, CSR.mip, 0), rv.csrrw(0, CSR.mip, 0)],
      { regs: { 6: IRQ.MSI | IRQ.MTI | IRQ.MEI } });
    expectRegs(m, { 10: 0 });
  });

  it('stvec, sscratch, sepc, scause and stval hold what is written (stvec mode 2-3 and sepc bit 0 are WARL)', async () => {
    const { m } = await runToEbreak([
      rv.csrrw(0, SCSR.stvec, 6), rv.csrrs(10, SCSR.stvec, 0),
      rv.csrrw(0, SCSR.stvec, 7), rv.csrrs(11, SCSR.stvec, 0),
      rv.csrrw(0, SCSR.sscratch, 8), rv.csrrs(12, SCSR.sscratch, 0),
      rv.csrrw(0, SCSR.sepc, 8), rv.csrrs(13, SCSR.sepc, 0),
      rv.csrrw(0, SCSR.scause, 8), rv.csrrs(14, SCSR.scause, 0),
      rv.csrrw(0, SCSR.stval, 8), rv.csrrs(15, SCSR.stval, 0),
    ], { regs: { 6: RAM + 0x101, 7: RAM + 0x102, 8: 0xdeadbeef } });
    expectRegs(m, { 10: RAM + 0x101, 11: RAM + 0x100, 12: 0xdeadbeef, 13: 0xdeadbeee, 14: 0xdeadbeef, 15: 0xdeadbeef });
  });

  it('menvcfg, menvcfgh and senvcfg exist and read zero (no field implemented)', async () => {
    const { m } = await runToEbreak([
      rv.csrrw(0, SCSR.menvcfg, 6), rv.csrrs(10, SCSR.menvcfg, 0), rv.csrrw(0, SCSR.menvcfgh, 6),
      rv.csrrs(11, SCSR.menvcfgh, 0), rv.csrrw(0, SCSR.senvcfg, 6), rv.csrrs(12, SCSR.senvcfg, 0),
    ], { regs: { 6: 0xffffffff, 10: 5, 11: 5, 12: 5 } });
    expectRegs(m, { 10: 0, 11: 0, 12: 0 });
  });

  it('S-mode cannot touch machine CSRs (illegal instruction to M)', async () => {
    const a = program('S', () => {}, (b) => b.label('probe').csrrs(10, CSR.mstatus, 0));
    const m = load(a);
    expect(await outcome(a, m)).toEqual({ where: 'M', cause: CAUSE.illegal, epc: a.addr('probe'), tval: rv.csrrs(10, CSR.mstatus, 0) });
  });
});

describe('debug trigger registers: present, with no triggers', () => {
  it('tselect reads 0 whatever is written, tdata1-3 read 0 (type 0: no trigger), tinfo reads 1', async () => {
    const { m } = await runToEbreak([
      rv.csrrw(0, SCSR.tselect, 6), rv.csrrs(10, SCSR.tselect, 0),
      rv.csrrw(0, SCSR.tselect, 0), rv.csrrs(11, SCSR.tselect, 0),
      rv.csrrw(0, SCSR.tdata1, 7), rv.csrrs(12, SCSR.tdata1, 0),
      rv.csrrs(13, SCSR.tdata2, 0), rv.csrrs(14, SCSR.tdata3, 0), rv.csrrs(15, SCSR.tinfo, 0),
    ], { regs: { 6: 1, 7: 0x2000105c, 10: 9, 11: 9, 12: 9, 13: 9, 14: 9, 15: 9 } });
    expectRegs(m, { 10: 0, 11: 0, 12: 0, 13: 0, 14: 0, 15: 1 });
  });
});

describe('exception delegation', () => {
  // The identity superpage over RAM lets the page-fault rows run U-mode code under Sv32.
  const root = RAM + 0xf0000;
  // [cause, what raises it, setup (a0), the faulting instruction, tval ('pc': its address, 'insn': the
  // instruction bits, 0 for an all-zero one), raised in S (else U)]
  const rows: Array<[number, string, (a: Asm) => void, (a: Asm) => void, number | 'pc', boolean?]> = [
    [XCAUSE.fetchAccess, 'jump to unmapped physical memory', (a) => a.li(10, UNMAPPED), (a) => a.jalr(0, 10, 0), UNMAPPED],
    [CAUSE.illegal, 'an all-zero instruction', () => {}, (a) => a.word(0), 0],
    [CAUSE.breakpoint, 'ebreak', () => {}, (a) => a.ebreak(), 'pc'],
    [CAUSE.loadMisaligned, 'lr.w at an odd address', (a) => a.li(10, DATA + 1), (a) => a.word(rv.lr_w(11, 10)), DATA + 1],
    [CAUSE.loadAccess, 'lw from unmapped physical memory', (a) => a.li(10, UNMAPPED), (a) => a.lw(11, 0, 10), UNMAPPED],
    [CAUSE.storeMisaligned, 'amoadd.w at an odd address', (a) => a.li(10, DATA + 2), (a) => a.word(rv.amoadd_w(11, 0, 10)), DATA + 2],
    [CAUSE.storeAccess, 'sw to unmapped physical memory', (a) => a.li(10, UNMAPPED), (a) => a.sw(0, 0, 10), UNMAPPED],
    [CAUSE.ecallU, 'ecall from U', () => {}, (a) => a.ecall(), 0],
    [XCAUSE.ecallS, 'ecall from S', () => {}, (a) => a.ecall(), 0, true],
    [XCAUSE.fetchPage, 'a fetch from an unmapped page', (a) => a.li(10, 0x50000000), (a) => a.jalr(0, 10, 0), 0x50000000],
    [XCAUSE.loadPage, 'a load from an unmapped page', (a) => a.li(10, 0x50000000), (a) => a.lw(11, 0, 10), 0x50000000],
    [XCAUSE.storePage, 'a store to an unmapped page', (a) => a.li(10, 0x50000000), (a) => a.sw(0, 0, 10), 0x50000000],
  ];
  for (const [cause, what, setup, fault, tval, fromS] of rows) {
    const paged = cause >= 12;
    const mode = fromS ? 'S' : 'U';
    const fetch = cause === XCAUSE.fetchAccess || cause === XCAUSE.fetchPage;
    for (const delegated of [true, false]) {
      it(`cause ${cause} (${what}) in ${mode}-mode goes to ${delegated ? 'S (medeleg set)' : 'M (medeleg clear)'}`, async () => {
        const a = program(mode, (b) => {
          if (delegated) b.li(5, 1 << cause).csrrw(0, SCSR.medeleg, 5);
          b.li(5, MST.SIE).csrrs(0, CSR.mstatus, 5); //   SIE = 1 before the trap: SPIE must take it
        }, (b) => {
          setup(b);
          b.label('probe');
          fault(b);
        }, { satp: paged ? satpOf(root) : undefined });
        const m = load(a);
        if (paged) {
          const handler = a.addr('shandler');
          new PageTables(m).mapRange(RAM, RAM, (handler - RAM) / 4096, P.RWX | (fromS ? 0 : PTE.U)).map(handler, handler, P.RX);
        }
        const epc = fetch ? (tval as number) : a.addr('probe');
        expect(await outcome(a, m)).toEqual({ where: delegated ? 'S' : 'M', cause, epc, tval: tval === 'pc' ? epc : tval });
        if (delegated) {
          expect(m.privilege).toBe('S');
          const st = csrOf(m, CSR.mstatus);
          expect({ SPP: st & MST.SPP, SPIE: st & MST.SPIE, SIE: st & MST.SIE }).toEqual({ SPP: fromS ? MST.SPP : 0, SPIE: MST.SPIE, SIE: 0 });
          expect(csrOf(m, CSR.mcause)).toBe(0); // M saw nothing
        } else {
          expect(csrOf(m, SCSR.scause)).toBe(0); // (a trap to M with mtvec = 0 ends the run before entry)
        }
      });
    }
  }

  it('a delegated exception raised in M-mode still goes to M', async () => {
    const a = asm();
    a.la(5, 'shandler').csrrw(0, SCSR.stvec, 5).li(5, 0xffff).csrrw(0, SCSR.medeleg, 5);
    a.label('probe').word(0);
    a.align(4).label('shandler').j('shandler');
    const m = load(a);
    expect(await outcome(a, m)).toEqual({ where: 'M', cause: CAUSE.illegal, epc: a.addr('probe'), tval: 0 });
  });

  it('a delegated trap uses stvec in vectored mode for interrupts only', async () => {
    const a = asm();
    a.la(5, 'vec').addi(5, 5, 1).csrrw(0, SCSR.stvec, 5);
    a.li(5, 1 << CAUSE.ecallU).csrrw(0, SCSR.medeleg, 5);
    a.li(5, IRQ.SSI).csrrw(0, SCSR.mideleg, 5).csrrw(0, CSR.mie, 5);
    enter(a, 'U', 'body');
    a.align(4).label('body').ecall();
    a.align(64).label('vec').j('vec'); //              base: exceptions
    a.j('vec1'); //                                     base + 4: SSI
    a.label('vec1').li(5, IRQ.SSI).csrrc(0, SCSR.sip, 5).sret();
    const m = load(a);
    const r = await m.run({ maxInstructions: 1000 });
    expect(r).toMatchObject({ kind: 'budget', pc: a.addr('vec') });
    expect(csrOf(m, SCSR.scause)).toBe(CAUSE.ecallU);
  });
});

describe('interrupt delegation, enables and priority', () => {
  // Software-writable pending bits stand in for the timer and the PLIC: M sets them in mip.
  const sources: Array<[string, number, number]> = [
    ['SSIP', IRQ.SSI, 1], ['STIP', IRQ.STI, 5], ['SEIP', IRQ.SEI, 9],
  ];
  for (const [name, bit, code] of sources) {
    for (const delegated of [true, false]) {
      it(`${name} pending in U-mode is taken by ${delegated ? 'S (mideleg set)' : 'M (mideleg clear), MIE = 0 notwithstanding'}`, async () => {
        const a = program('U', (b) => {
          if (delegated) b.li(5, bit).csrrw(0, SCSR.mideleg, 5);
          b.li(5, bit).csrrw(0, CSR.mie, 5).csrrw(0, CSR.mip, 5);
        }, (b) => b.label('spin').j('spin'));
        const m = load(a);
        const o = await outcome(a, m);
        expect(o).toEqual({ where: delegated ? 'S' : 'M', cause: intr(code), epc: a.addr('spin'), tval: 0 });
      });
    }
  }

  it('a delegated interrupt waits in S-mode while SIE = 0 and is taken once SIE is set', async () => {
    const a = program('S', (b) => {
      b.li(5, IRQ.SSI).csrrw(0, SCSR.mideleg, 5).csrrw(0, CSR.mie, 5).csrrw(0, CSR.mip, 5);
    }, (b) => {
      b.li(8, 50).label('loop').addi(8, 8, -1).bne(8, 0, 'loop'); //  runs to completion with SIE = 0
      b.csrrsi(0, SCSR.sstatus, 2); //                               SIE = 1
      b.label('after').j('after');
    });
    const m = load(a);
    const o = await outcome(a, m);
    expect(o).toMatchObject({ where: 'S', cause: intr(1), epc: a.addr('after') });
    expectRegs(m, { 8: 0 });
  });

  it('a delegated interrupt is never taken in M-mode, even with MIE and SIE set', async () => {
    const a = asm();
    a.la(5, 'shandler').csrrw(0, SCSR.stvec, 5);
    a.li(5, IRQ.SSI).csrrw(0, SCSR.mideleg, 5).csrrw(0, CSR.mie, 5).csrrw(0, CSR.mip, 5);
    a.li(5, MST.MIE | MST.SIE).csrrs(0, CSR.mstatus, 5);
    a.li(8, 20).label('loop').addi(8, 8, -1).bne(8, 0, 'loop');
    a.ebreak();
    a.align(4).label('shandler').j('shandler');
    const m = load(a);
    const r = await m.run({ maxInstructions: 1000 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
  });

  it('an M-level interrupt is taken in S-mode even with MIE = 0', async () => {
    const a = program('S', (b) => {
      b.li(5, IRQ.MSI).csrrw(0, CSR.mie, 5);
      b.li(6, CLINT.msip).li(7, 1).sw(7, 0, 6); //     CLINT msip = 1
    }, (b) => b.label('spin').j('spin'));
    const m = load(a);
    expect(await outcome(a, m)).toEqual({ where: 'M', cause: intr(3), epc: a.addr('spin'), tval: 0 });
  });

  it('priority: M interrupts (MEI > MSI > MTI) before S interrupts (SEI > SSI > STI)', async () => {
    // All of SSIP, STIP, SEIP pending and delegated, plus MSIP for M: M's comes first.
    const withMsi = program('U', (b) => {
      b.li(5, IRQ.SSI | IRQ.STI | IRQ.SEI).csrrw(0, SCSR.mideleg, 5).csrrw(0, CSR.mip, 5);
      b.li(5, IRQ.SSI | IRQ.STI | IRQ.SEI | IRQ.MSI).csrrw(0, CSR.mie, 5);
      b.li(6, CLINT.msip).li(7, 1).sw(7, 0, 6);
    }, (b) => b.label('spin').j('spin'));
    expect((await outcome(withMsi, load(withMsi))).cause).toBe(intr(3));
    for (const [pending, code] of [[IRQ.SSI | IRQ.STI | IRQ.SEI, 9], [IRQ.SSI | IRQ.STI, 1], [IRQ.STI, 5]] as const) {
      const a = program('U', (b) => {
        b.li(5, IRQ.SSI | IRQ.STI | IRQ.SEI).csrrw(0, SCSR.mideleg, 5).csrrw(0, CSR.mie, 5);
        b.li(5, pending).csrrw(0, CSR.mip, 5);
      }, (b) => b.label('spin').j('spin'));
      expect((await outcome(a, load(a))).cause).toBe(intr(code));
    }
  });

  it('SEIP from the PLIC\'s S-mode context (context 1): claim at 0x0c201004, and a CSR read-modify-write of mip does not latch it', async () => {
    const PLIC = 0x0c000000;
    const a = asm();
    a.li(6, PLIC + 10 * 4).li(7, 1).sw(7, 0, 6); //                 priority[10] (UART) = 1
    a.li(6, PLIC + 0x2080).li(7, 1 << 10).sw(7, 0, 6); //           context 1 enables source 10
    a.li(6, PLIC + 0x201000).sw(0, 0, 6); //                        context 1 threshold = 0
    a.li(6, 0x10000001).li(7, 1).sb(7, 0, 6); //                    UART IER = RX data available
    a.label('wait').word(csrr(10, CSR.mip)).li(7, IRQ.SEI).and(11, 10, 7).beq(11, 0, 'wait');
    a.li(5, IRQ.SSI).csrrs(0, CSR.mip, 5); //                       csrs mip, SSIP (a read-modify-write)
    a.li(6, 0x10000000).lbu(12, 0, 6); //                           read the byte: the UART line drops
    a.li(6, PLIC + 0x201004).lw(13, 0, 6); //                       claim from context 1: source 10
    a.sw(13, 0, 6); //                                              complete
    a.word(csrr(14, CSR.mip));
    a.csrrw(0, CSR.mip, 0).ebreak();
    const m = load(a);
    const first = await m.run({ maxInstructions: 200 });
    expect(first.kind).toBe('budget'); //                           waiting for the byte
    m.input('x');
    const r = await m.run({ maxInstructions: 10_000 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expectRegs(m, { 12: 0x78, 13: 10, 14: IRQ.SSI });
    expect(m.getRegister(10) & IRQ.SEI).toBe(IRQ.SEI);
  });
});

describe('sret and mret', () => {
  it('sret from S to U: SIE = SPIE, SPIE = 1, SPP = U, pc = sepc', async () => {
    const a = program('S', () => {}, (b) => {
      b.li(5, MST.SPIE).csrrs(0, SCSR.sstatus, 5); //        SPIE = 1, SPP = 0
      b.la(5, 'user').csrrw(0, SCSR.sepc, 5).sret();
      b.align(4).label('user').ecall();
    });
    const m = load(a);
    expect(await outcome(a, m)).toEqual({ where: 'M', cause: CAUSE.ecallU, epc: a.addr('user'), tval: 0 });
    // The trap to M recorded MPP = U; sstatus after the sret: SIE = 1 (from SPIE), SPIE = 1, SPP = 0.
    expect(csrOf(m, CSR.mstatus) & (MST.SIE | MST.SPIE | MST.SPP | MST.MPP)).toBe(MST.SIE | MST.SPIE);
  });

  it('sret with SPP = S stays in S-mode; sret in M-mode goes to SPP and clears MPRV', async () => {
    const a = program('S', () => {}, (b) => {
      b.li(5, MST.SPP).csrrs(0, SCSR.sstatus, 5);
      b.la(5, 'still').csrrw(0, SCSR.sepc, 5).sret();
      b.align(4).label('still').ecall();
    });
    const m = load(a);
    expect(await outcome(a, m)).toMatchObject({ where: 'M', cause: XCAUSE.ecallS, epc: a.addr('still') });

    const b = asm();
    b.li(5, 0xffffffff).csrrw(0, SCSR.pmpaddr0, 5).li(5, 0x1f).csrrw(0, SCSR.pmpcfg0, 5);
    b.li(5, MST.SPP | MST.MPRV).csrrs(0, CSR.mstatus, 5);
    b.la(5, 'sup').csrrw(0, SCSR.sepc, 5).sret();
    b.align(4).label('sup').ecall();
    const m2 = load(b);
    const r = await m2.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: XCAUSE.ecallS, pc: b.addr('sup') });
    expect(csrOf(m2, CSR.mstatus) & MST.MPRV).toBe(0);
  });

  it('sret is illegal in U-mode, and in S-mode when mstatus.TSR = 1', async () => {
    const u = program('U', () => {}, (b) => b.label('probe').sret());
    expect(await outcome(u, load(u))).toEqual({ where: 'M', cause: CAUSE.illegal, epc: u.addr('probe'), tval: rv.sret() });
    const s = program('S', () => {}, (b) => b.label('probe').sret(), { mstatus: MST.TSR });
    expect(await outcome(s, load(s))).toEqual({ where: 'M', cause: CAUSE.illegal, epc: s.addr('probe'), tval: rv.sret() });
  });

  it('mret with MPP = S enters S-mode; MPP becomes U and MPRV is cleared', async () => {
    const a = asm();
    a.li(5, 0xffffffff).csrrw(0, SCSR.pmpaddr0, 5).li(5, 0x1f).csrrw(0, SCSR.pmpcfg0, 5);
    a.li(5, MST.MPP_S | MST.MPRV | MST.MPIE).csrrs(0, CSR.mstatus, 5);
    a.la(5, 'sup').csrrw(0, CSR.mepc, 5).mret();
    a.align(4).label('sup').word(csrr(10, SCSR.sstatus)).ecall();
    const m = load(a);
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: XCAUSE.ecallS, pc: a.addr('sup') + 4 });
    // After the mret: MIE = 1 (from MPIE), MPIE = 1, MPP = U, MPRV = 0 (the ecall's trap to M, with
    // mtvec = 0, ends the run without entering M).
    expect(m.privilege).toBe('S');
    expect(csrOf(m, CSR.mstatus) & (MST.MPRV | MST.MPP | MST.MPIE | MST.MIE)).toBe(MST.MPIE | MST.MIE);
  });
});

describe('wfi', () => {
  it('is illegal in U-mode (S-mode exists) and in S-mode with TW', async () => {
    const u = program('U', () => {}, (b) => b.label('probe').wfi());
    expect(await outcome(u, load(u))).toEqual({ where: 'M', cause: CAUSE.illegal, epc: u.addr('probe'), tval: rv.wfi() });
    const s = program('S', () => {}, (b) => b.label('probe').wfi(), { mstatus: MST.TW });
    expect(await outcome(s, load(s))).toEqual({ where: 'M', cause: CAUSE.illegal, epc: s.addr('probe'), tval: rv.wfi() });
  });

  it('in S-mode without TW waits for the timer, which M-mode then sees', async () => {
    const a = program('S', (b) => {
      b.li(5, CLINT.mtimecmp).li(6, 50).sw(6, 0, 5).sw(0, 4, 5);
      b.li(5, IRQ.MTI).csrrw(0, CSR.mie, 5);
    }, (b) => b.wfi().label('after').j('after'));
    const m = load(a);
    expect(await outcome(a, m)).toEqual({ where: 'M', cause: intr(7), epc: a.addr('after'), tval: 0 });
  });
});

describe('counter enables', () => {
  // [mode, mcounteren, scounteren, legal?]
  const rows: Array<['S' | 'U', number, number, boolean]> = [
    ['S', 0, 7, false], ['S', 7, 0, true], ['U', 7, 0, false], ['U', 0, 7, false], ['U', 7, 7, true],
  ];
  for (const [mode, mc, sc, legal] of rows) {
    it(`cycle, time and instret in ${mode}-mode with mcounteren = ${mc}, scounteren = ${sc} are ${legal ? 'readable' : 'illegal'}`, async () => {
      for (const c of [CSR.cycle, CSR.time, CSR.instret, CSR.cycleh, CSR.timeh, CSR.instreth]) {
        const a = program(mode, (b) => b.li(5, mc).csrrw(0, CSR.mcounteren, 5).li(5, sc).csrrw(0, SCSR.scounteren, 5),
          (b) => b.label('probe').word(csrr(10, c)));
        const m = load(a);
        const r = await m.run({ maxInstructions: 1000 });
        if (legal) expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
        else expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.illegal, pc: a.addr('probe'), tval: csrr(10, c) });
      }
    });
  }

  it('time in S-mode reads mtime (floor(instret / 100) under the virtual clock)', async () => {
    const a = program('S', (b) => b.li(5, 2).csrrw(0, CSR.mcounteren, 5), (b) => {
      b.li(8, 500).label('loop').addi(8, 8, -1).bne(8, 0, 'loop');
      b.word(csrr(10, CSR.time)).word(csrr(11, CSR.timeh));
    });
    const m = load(a);
    const r = await m.run({ maxInstructions: 10_000 });
    expect(r.kind).toBe('trap');
    const at = Number(r.instret) - 2; // the time read retired two instructions before the ebreak
    expectRegs(m, { 10: Math.floor(at / 100), 11: 0 });
  });
});

describe('writes to the high halves of minstret and mcycle', () => {
  // Regression: the write to the high half left the writing instruction's own increment in the low
  // half, so the probe read 0xffffffff_00000001 instead of 0.
  for (const [name, lo, hi] of [['minstret', CSR.minstret, CSR.minstreth], ['mcycle', CSR.mcycle, CSR.mcycleh]] as const) {
    it(`after writing all-ones to ${name} and ${name}h and one more instruction, ${name} reads 0`, async () => {
      const { m } = await runToEbreak([
        rv.addi(5, 0, -1), //          li t0, -1
        rv.csrrw(0, lo, 5), //         csrw <lo>, t0      counter = x_ffffffff for the next instruction
        rv.csrrw(0, hi, 5), //         csrw <hi>, t0      counter = ffffffff_ffffffff (replaces the increment)
        rv.addi(0, 0, 0), //           nop                wraps to 0
        rv.csrrs(10, lo, 0), //        csrr a0, <lo>      0
        rv.csrrs(11, hi, 0), //        csrr a1, <hi>      0 (the counter is 1 now)
      ]);
      expectRegs(m, { 10: 0, 11: 0 });
    });

    it(`a write to ${name}h keeps the low half as it was before the writing instruction`, async () => {
      const { m } = await runToEbreak([
        rv.addi(5, 0, 0x123), //       li t0, 0x123
        rv.csrrw(0, lo, 5), //         csrw <lo>, t0      0x123 for the next instruction
        rv.addi(6, 0, 7), //           li t1, 7           reads 0x123, counter 0x124 after
        rv.csrrw(0, hi, 6), //         csrw <hi>, t1      counter = 7_00000124: no increment
        rv.csrrs(10, lo, 0), //        csrr a0, <lo>
        rv.csrrs(11, hi, 0), //        csrr a1, <hi>
      ]);
      expectRegs(m, { 10: 0x124, 11: 7 });
    });
  }
});
