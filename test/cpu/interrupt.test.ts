// Interrupts from the CLINT under the virtual clock (mtime = floor(instret / 100) + time skipped in WFI):
// timer and software interrupts, global and per-source enables, vectored mtvec, and WFI wake-up and halt.
import { describe, expect, it } from 'vitest';
import { Asm } from '../helpers/asm.js';
import { CAUSE, CLINT, CSR, MIE, MSTATUS, RAM, csrOf, csrr, expectRegs, load, runToHandler } from './harness.js';

const PMPCFG0 = 0x3a0;
const PMPADDR0 = 0x3b0;

/** Sets mtimecmp to `ticks` (uses x5, x6), hi word first so no spurious match happens in between. */
function armTimer(a: Asm, ticks: number): Asm {
  a.li(5, CLINT.mtimecmp);
  a.li(6, -1).sw(6, 4, 5); //                      mtimecmp.hi = ~0
  a.li(6, ticks).sw(6, 0, 5); //                   mtimecmp.lo = ticks
  return a.sw(0, 4, 5); //                         mtimecmp.hi = 0
}

function installHandler(a: Asm, handler = 'handler'): Asm {
  return a.la(5, handler).csrrw(0, CSR.mtvec, 5);
}

/** A handler that records minstret (a0), mtime (a1), mip (a2), mepc (a3), then spins at `hspin`. */
function recordingHandler(a: Asm): Asm {
  a.align(4).label('handler');
  a.word(csrr(10, CSR.minstret)); //              csrr a0, minstret
  a.li(7, CLINT.mtime).lw(11, 0, 7); //           lw a1, mtime
  a.word(csrr(12, CSR.mip)); //                   csrr a2, mip
  a.word(csrr(13, CSR.mepc)); //                  csrr a3, mepc
  return a.label('hspin').j('hspin');
}

describe('timer interrupt', () => {
  it('fires with mcause 0x80000007 once mtime reaches mtimecmp, with MTIE and mstatus.MIE set', async () => {
    const a = installHandler(new Asm());
    armTimer(a, 5); //                             at instret 500
    a.li(5, MIE.MTIE).csrrw(0, CSR.mie, 5); //     csrw mie, MTIE
    a.csrrsi(0, CSR.mstatus, 8); //                csrsi mstatus, MIE
    a.label('spin').j('spin');
    recordingHandler(a);
    const m = load(a);
    await runToHandler(m, a.addr('hspin'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.timerInterrupt);
    expect(csrOf(m, CSR.mepc)).toBe(a.addr('spin'));
    expect(m.getRegister(10)).toBeGreaterThanOrEqual(500); // not before mtime = 5
    expect(m.getRegister(11)).toBeGreaterThanOrEqual(5);
    expect(m.getRegister(12) & MIE.MTIE).toBe(MIE.MTIE); //  mip.MTIP
    expect(csrOf(m, CSR.mstatus) & (MSTATUS.MIE | MSTATUS.MPIE)).toBe(MSTATUS.MPIE);
  });

  it('is taken at the same instret on every run under the virtual clock', async () => {
    const build = () => {
      const a = installHandler(new Asm());
      armTimer(a, 7);
      a.li(5, MIE.MTIE).csrrw(0, CSR.mie, 5).csrrsi(0, CSR.mstatus, 8);
      a.label('work').addi(8, 8, 1).xor(9, 9, 8).slli(10, 9, 1).j('work');
      return recordingHandler(a);
    };
    const seen: number[] = [];
    for (let i = 0; i < 3; i++) {
      const a = build();
      const m = load(a);
      // Split the run differently each time: the interrupt position must not depend on it.
      for (let k = 0; k < i * 3; k++) await m.run({ maxInstructions: 97 + k });
      await runToHandler(m, a.addr('hspin'));
      seen.push(m.getRegister(10));
      expect(m.getRegister(10)).toBeGreaterThanOrEqual(700);
    }
    expect(new Set(seen).size).toBe(1);
  });

  it('is not taken in M-mode while mstatus.MIE = 0 but shows in mip, and is taken once MIE is set', async () => {
    const a = installHandler(new Asm());
    armTimer(a, 1); //                             at instret 100
    a.li(5, MIE.MTIE).csrrw(0, CSR.mie, 5);
    a.li(8, 200).label('loop').addi(8, 8, -1).bne(8, 0, 'loop'); // 400 instructions, interrupts off
    a.word(csrr(9, CSR.mip)); //                   csrr s1, mip
    a.csrrsi(0, CSR.mstatus, 8); //                csrsi mstatus, MIE
    a.label('after').j('after');
    recordingHandler(a);
    const m = load(a);
    await runToHandler(m, a.addr('hspin'));
    expectRegs(m, { 8: 0 }); //                    the loop ran to completion
    expect(m.getRegister(9) & MIE.MTIE).toBe(MIE.MTIE);
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.timerInterrupt);
    expect(csrOf(m, CSR.mepc)).toBe(a.addr('after'));
  });

  it('is not taken while mie.MTIE = 0', async () => {
    const a = installHandler(new Asm());
    armTimer(a, 1);
    a.csrrsi(0, CSR.mstatus, 8); //                MIE on, MTIE off
    a.label('spin').j('spin');
    recordingHandler(a);
    const m = load(a);
    const r = await m.run({ maxInstructions: 2000 });
    expect(r).toMatchObject({ kind: 'budget', pc: a.addr('spin') });
    expect(csrOf(m, CSR.mip) & MIE.MTIE).toBe(MIE.MTIE);
  });

  it('interrupts U-mode even with mstatus.MIE = 0 (higher-privilege interrupts are always enabled)', async () => {
    const a = installHandler(new Asm());
    armTimer(a, 5);
    a.li(5, MIE.MTIE).csrrw(0, CSR.mie, 5);
    a.li(5, 0xffffffff).csrrw(0, PMPADDR0, 5).li(5, 0x1f).csrrw(0, PMPCFG0, 5); // open PMP for U
    a.li(5, MSTATUS.MPP | MSTATUS.MPIE | MSTATUS.MIE).csrrc(0, CSR.mstatus, 5); // MPP = U, MPIE = MIE = 0
    a.la(5, 'user').csrrw(0, CSR.mepc, 5).mret();
    a.align(4).label('user').label('uspin').j('uspin');
    recordingHandler(a);
    const m = load(a);
    await runToHandler(m, a.addr('hspin'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.timerInterrupt);
    expect(csrOf(m, CSR.mepc)).toBe(a.addr('uspin'));
    expect(csrOf(m, CSR.mstatus) & MSTATUS.MPP).toBe(0);
    expect(m.privilege).toBe('M');
  });

  it('mip.MTIP clears when mtimecmp is moved past mtime', async () => {
    const a = new Asm();
    armTimer(a, 0); //                             mtime >= 0: pending at once
    a.word(csrr(8, CSR.mip));
    armTimer(a, 0x7fffffff);
    a.word(csrr(9, CSR.mip));
    a.ebreak();
    const m = load(a);
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expect(m.getRegister(8) & MIE.MTIE).toBe(MIE.MTIE);
    expect(m.getRegister(9) & MIE.MTIE).toBe(0);
  });
});

describe('software interrupt', () => {
  it('writing 1 to msip raises mcause 0x80000003 with MSIE and MIE set; clearing msip clears mip.MSIP', async () => {
    const a = installHandler(new Asm());
    a.li(5, MIE.MSIE).csrrw(0, CSR.mie, 5); //     csrw mie, MSIE
    a.csrrsi(0, CSR.mstatus, 8); //                csrsi mstatus, MIE
    a.li(8, 7);
    a.li(6, CLINT.msip).li(7, 1).sw(7, 0, 6); //   msip = 1
    a.label('after').addi(8, 8, 1);
    a.label('spin').j('spin');
    a.align(4).label('handler');
    a.word(csrr(12, CSR.mip)); //                  csrr a2, mip
    a.li(6, CLINT.msip).sw(0, 0, 6); //            msip = 0
    a.word(csrr(13, CSR.mip)); //                  csrr a3, mip
    a.label('hspin').j('hspin');
    const m = load(a);
    await runToHandler(m, a.addr('hspin'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.softwareInterrupt);
    expect(m.getRegister(12) & MIE.MSIE).toBe(MIE.MSIE);
    expect(m.getRegister(13) & MIE.MSIE).toBe(0);
    // The interrupt is taken at an instruction boundary after the store: mepc is one of the following instructions.
    expect([a.addr('after'), a.addr('spin')]).toContain(csrOf(m, CSR.mepc));
  });

  it('msip reads back what was written (bit 0 only)', async () => {
    const a = new Asm();
    a.li(6, CLINT.msip).li(7, -1).sw(7, 0, 6).lw(8, 0, 6).sw(0, 0, 6).lw(9, 0, 6).ebreak();
    const m = load(a);
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expectRegs(m, { 8: 1, 9: 0 });
  });
});

describe('interrupt priority and mip', () => {
  it('with software and timer interrupts both pending, the software interrupt is taken first', async () => {
    // Privileged spec: M-mode interrupts are taken in the order MEI, MSI, MTI.
    const a = installHandler(new Asm());
    armTimer(a, 0); //                             timer pending at once
    a.li(6, CLINT.msip).li(7, 1).sw(7, 0, 6); //   software pending
    a.li(5, MIE.MTIE | MIE.MSIE).csrrw(0, CSR.mie, 5);
    a.csrrsi(0, CSR.mstatus, 8);
    a.label('spin').j('spin');
    recordingHandler(a);
    const m = load(a);
    await runToHandler(m, a.addr('hspin'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.softwareInterrupt);
    expect(m.getRegister(12) & (MIE.MTIE | MIE.MSIE)).toBe(MIE.MTIE | MIE.MSIE);
  });

  it('an interrupt writes mtval = 0', async () => {
    const a = installHandler(new Asm());
    a.li(6, 0x1234).csrrw(0, CSR.mtval, 6);
    armTimer(a, 1);
    a.li(5, MIE.MTIE).csrrw(0, CSR.mie, 5).csrrsi(0, CSR.mstatus, 8);
    a.label('spin').j('spin');
    recordingHandler(a);
    const m = load(a);
    await runToHandler(m, a.addr('hspin'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.timerInterrupt);
    expect(csrOf(m, CSR.mtval)).toBe(0);
  });

  it('software cannot set mip.MTIP or mip.MSIP: they follow the CLINT', async () => {
    const a = new Asm();
    armTimer(a, 0x7fffffff); //                    timer far away
    a.li(6, MIE.MTIE | MIE.MSIE).csrrs(0, CSR.mip, 6); // csrs mip, MTIP | MSIP
    a.word(csrr(8, CSR.mip)).ebreak();
    const m = load(a);
    const r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expect(m.getRegister(8) & (MIE.MTIE | MIE.MSIE)).toBe(0);
  });
});

describe('vectored mtvec', () => {
  /** A vector table at `vec`: exceptions at +0, software at +12, timer at +28, each spinning at its own label. */
  function vectorTable(a: Asm): void {
    a.align(256).label('vec');
    for (let i = 0; i < 16; i++) a.j(`v${i}`);
    for (let i = 0; i < 16; i++) a.label(`v${i}`).j(`v${i}`);
  }

  it('sends a timer interrupt to base + 4 * 7', async () => {
    const a = new Asm();
    a.la(5, 'vec').addi(5, 5, 1).csrrw(0, CSR.mtvec, 5); // mtvec = vec | 1 (vectored)
    armTimer(a, 3);
    a.li(5, MIE.MTIE).csrrw(0, CSR.mie, 5).csrrsi(0, CSR.mstatus, 8);
    a.label('spin').j('spin');
    vectorTable(a);
    const m = load(a);
    await runToHandler(m, a.addr('v7'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.timerInterrupt);
    expect(csrOf(m, CSR.mtvec)).toBe(a.addr('vec') + 1);
  });

  it('sends a software interrupt to base + 4 * 3', async () => {
    const a = new Asm();
    a.la(5, 'vec').addi(5, 5, 1).csrrw(0, CSR.mtvec, 5);
    a.li(5, MIE.MSIE).csrrw(0, CSR.mie, 5).csrrsi(0, CSR.mstatus, 8);
    a.li(6, CLINT.msip).li(7, 1).sw(7, 0, 6);
    a.label('spin').j('spin');
    vectorTable(a);
    const m = load(a);
    await runToHandler(m, a.addr('v3'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.softwareInterrupt);
  });

  it('sends synchronous exceptions to the base', async () => {
    const a = new Asm();
    a.la(5, 'vec').addi(5, 5, 1).csrrw(0, CSR.mtvec, 5);
    a.label('call').ecall();
    vectorTable(a);
    const m = load(a);
    await runToHandler(m, a.addr('v0'));
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.ecallM);
    expect(csrOf(m, CSR.mepc)).toBe(a.addr('call'));
  });
});

describe('WFI', () => {
  it('with the timer armed and enabled, skips virtual time to mtimecmp and takes the interrupt after the wfi', async () => {
    const a = installHandler(new Asm());
    armTimer(a, 1000); //                          100 000 instructions away at 100 per tick
    a.li(5, MIE.MTIE).csrrw(0, CSR.mie, 5).csrrsi(0, CSR.mstatus, 8);
    a.label('wfi').wfi();
    a.label('after').j('after');
    recordingHandler(a);
    const m = load(a);
    await runToHandler(m, a.addr('hspin'), 1000);
    expect(csrOf(m, CSR.mcause)).toBe(CAUSE.timerInterrupt);
    expect(csrOf(m, CSR.mepc)).toBe(a.addr('after')); // mepc = wfi + 4
    expect(m.getRegister(10)).toBeLessThan(100); //      few instructions ran...
    expect(m.getRegister(11)).toBeGreaterThanOrEqual(1000); // ...yet mtime reached mtimecmp
  });

  it('with mstatus.MIE = 0 wakes on the pending timer and continues after the wfi without trapping', async () => {
    const a = new Asm();
    armTimer(a, 500);
    a.li(5, MIE.MTIE).csrrw(0, CSR.mie, 5); //    MTIE on, mstatus.MIE off
    a.wfi();
    a.li(7, CLINT.mtime).lw(11, 0, 7); //           lw a1, mtime
    a.word(csrr(12, CSR.mip));
    a.word(csrr(13, CSR.time)); //                  csrr a3, time
    a.ebreak();
    const m = load(a);
    const r = await m.run({ maxInstructions: 1000 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expect(m.getRegister(11)).toBeGreaterThanOrEqual(500);
    expect(m.getRegister(13)).toBeGreaterThanOrEqual(m.getRegister(11));
    expect(m.getRegister(12) & MIE.MTIE).toBe(MIE.MTIE);
    expect(r.instret).toBeLessThan(100n);
  });

  it('with no interrupt able to wake the hart, the run ends halted', async () => {
    const a = new Asm();
    a.csrrw(0, CSR.mie, 0).wfi().ebreak(); //       mie = 0, wfi
    const m = load(a);
    const r = await m.run({ maxInstructions: 1000 });
    expect(r.kind).toBe('halted');
    expect(r.pc === RAM + 4 || r.pc === RAM + 8).toBe(true);
  });

  it('with an interrupt already pending, does not stall', async () => {
    const a = new Asm();
    armTimer(a, 0);
    a.li(5, MIE.MTIE).csrrw(0, CSR.mie, 5); //    pending now, globally disabled
    a.word(csrr(8, CSR.minstret)).wfi().word(csrr(9, CSR.minstret)).ebreak();
    const m = load(a);
    const r = await m.run({ maxInstructions: 1000 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expect(m.getRegister(9) - m.getRegister(8)).toBe(2); // csrr and wfi retired
  });
});
