// Physical memory protection, 16 entries: OFF/TOR/NA4/NAPOT matching, priority, partial matches,
// S/U without a match, locked entries (binding M-mode too, ignoring writes), the reserved R=0 W=1
// encoding, page-table walks checked as S-mode reads, MPRV, and a PMP write taking effect at once.
import { describe, expect, it } from 'vitest';
import { type Asm } from '../helpers/asm.js';
import { CAUSE, CSR, DATA, RAM, expectRegs, hex, load, readU32, type Machine, type RunResult } from './harness.js';
import { MST, P, PageTables, SCSR, XCAUSE, asm, satpOf } from './sv32.js';

const R = 1, W = 2, X = 4, L = 0x80;
const TOR = 0x08, NA4 = 0x10, NAPOT = 0x18;

/** pmpaddr of a naturally aligned power-of-two region of `size` (>= 8) bytes at `base`. */
const napot = (base: number, size: number) => ((base >>> 2) | (size / 8 - 1)) >>> 0;
/** The code region every U/S test keeps executable: the first 64 KiB of RAM. */
const CODE = napot(RAM, 0x10000);

/**
 * Programs PMP entries from M-mode (entry i: [pmpaddr, cfg byte]), then runs `body` in `mode`
 * (satp bare) and ends at the first trap (mtvec = 0).
 */
async function run(entries: Array<[number, number]>, mode: 'M' | 'S' | 'U', body: (a: Asm) => void, mstatus = 0):
Promise<{ m: Machine; r: RunResult; a: Asm }> {
  const a = asm();
  const cfg = [0, 0, 0, 0];
  entries.forEach(([addr, c], i) => {
    a.li(5, addr).csrrw(0, SCSR.pmpaddr0 + i, 5);
    cfg[i >> 2] = (cfg[i >> 2]! | (c << (8 * (i & 3)))) >>> 0;
  });
  // Configuration last, so a locked entry cannot lock the setup out of its own addresses.
  cfg.forEach((v, i) => { if (v !== 0) a.li(5, v).csrrw(0, SCSR.pmpcfg0 + i, 5); });
  if (mstatus !== 0) a.li(5, mstatus).csrrs(0, CSR.mstatus, 5);
  if (mode !== 'M') {
    a.li(5, MST.MPP).csrrc(0, CSR.mstatus, 5);
    if (mode === 'S') a.li(5, MST.MPP_S).csrrs(0, CSR.mstatus, 5);
    a.la(5, 'body').csrrw(0, CSR.mepc, 5).mret();
  }
  a.align(4).label('body');
  body(a);
  a.label('end').ebreak();
  const m = load(a);
  const r = await m.run({ maxInstructions: 10_000 });
  return { m, r, a };
}

function endsAt(x: { r: RunResult; a: Asm }, label: string, cause: number, tval?: number): void {
  expect(x.r.kind).toBe('trap');
  if (x.r.kind !== 'trap') return;
  const got: Record<string, string | number> = { cause: x.r.cause, pc: hex(x.r.pc) };
  const want: Record<string, string | number> = { cause, pc: hex(x.a.addr(label)) };
  if (tval !== undefined) {
    got.tval = hex(x.r.tval);
    want.tval = hex(tval);
  }
  expect(got).toEqual(want);
}

describe('matching', () => {
  it('S and U fail where no entry matches; M does not', async () => {
    for (const mode of ['S', 'U'] as const) {
      const load_ = await run([[CODE, NAPOT | R | X]], mode, (a) => { a.li(10, DATA).label('p').lw(11, 0, 10); });
      endsAt(load_, 'p', CAUSE.loadAccess, DATA);
      const store = await run([[CODE, NAPOT | R | X]], mode, (a) => { a.li(10, DATA).label('p').sw(0, 0, 10); });
      endsAt(store, 'p', CAUSE.storeAccess, DATA);
      const fetch = await run([[CODE, NAPOT | R | X]], mode, (a) => { a.li(10, DATA).label('p').jalr(0, 10, 0); });
      expect(fetch.r).toMatchObject({ kind: 'trap', cause: CAUSE.fetchAccess, pc: DATA, tval: DATA });
    }
    const m = await run([[CODE, NAPOT | R | X]], 'M', (a) => { a.li(10, DATA).li(11, 5).sw(11, 0, 10).lw(12, 0, 10); });
    endsAt(m, 'end', CAUSE.breakpoint);
    expectRegs(m.m, { 12: 5 });
  });

  it('TOR: entry i covers [pmpaddr[i-1], pmpaddr[i]) (from 0 for entry 0) with its own permissions', async () => {
    const entries: Array<[number, number]> = [[DATA >>> 2, TOR | R | W | X], [(DATA + 0x1000) >>> 2, TOR | R]];
    endsAt(await run(entries, 'U', (a) => { a.li(10, DATA + 0xffc).lw(11, 0, 10); }), 'end', CAUSE.breakpoint);
    endsAt(await run(entries, 'U', (a) => { a.li(10, DATA).label('p').sw(0, 0, 10); }), 'p', CAUSE.storeAccess, DATA);
    endsAt(await run(entries, 'U', (a) => { a.li(10, DATA - 4).sw(0, 0, 10); }), 'end', CAUSE.breakpoint);
    endsAt(await run(entries, 'U', (a) => { a.li(10, DATA + 0x1000).label('p').lw(11, 0, 10); }), 'p', CAUSE.loadAccess, DATA + 0x1000);
    const fetch = await run(entries, 'U', (a) => { a.li(10, DATA).jalr(0, 10, 0); });
    expect(fetch.r).toMatchObject({ kind: 'trap', cause: CAUSE.fetchAccess, pc: DATA });
  });

  it('TOR with pmpaddr[i-1] >= pmpaddr[i] matches nothing', async () => {
    const entries: Array<[number, number]> = [[CODE, NAPOT | R | X], [(DATA + 0x100) >>> 2, 0], [DATA >>> 2, TOR | R | W]];
    endsAt(await run(entries, 'U', (a) => { a.li(10, DATA).label('p').lw(11, 0, 10); }), 'p', CAUSE.loadAccess, DATA);
  });

  it('NA4 covers exactly 4 bytes; the lowest-numbered matching entry decides', async () => {
    const entries: Array<[number, number]> = [[(DATA + 8) >>> 2, NA4 | R], [0xffffffff, NAPOT | R | W | X]];
    endsAt(await run(entries, 'U', (a) => { a.li(10, DATA + 8).label('p').sw(0, 0, 10); }), 'p', CAUSE.storeAccess, DATA + 8);
    const ok = await run(entries, 'U', (a) => { a.li(10, DATA).li(11, 1).sw(11, 4, 10).sw(11, 12, 10).lw(12, 8, 10); });
    endsAt(ok, 'end', CAUSE.breakpoint);
    expect([readU32(ok.m, DATA + 4), readU32(ok.m, DATA + 12)]).toEqual([1, 1]);
  });

  it('an access only partly inside the deciding entry fails, even if a later entry would allow it all', async () => {
    const entries: Array<[number, number]> = [[(DATA + 8) >>> 2, NA4 | R | W], [0xffffffff, NAPOT | R | W | X]];
    endsAt(await run(entries, 'U', (a) => { a.li(10, DATA + 6).label('p').lw(11, 0, 10); }), 'p', CAUSE.loadAccess, DATA + 6);
    endsAt(await run(entries, 'U', (a) => { a.li(10, DATA + 10).label('p').sw(0, 0, 10); }), 'p', CAUSE.storeAccess, DATA + 10);
  });

  it('NAPOT regions of 8 bytes, 4 KiB and all of memory', async () => {
    const eight: Array<[number, number]> = [[CODE, NAPOT | R | X], [napot(DATA, 8), NAPOT | R | W]];
    endsAt(await run(eight, 'U', (a) => { a.li(10, DATA).sw(0, 4, 10); }), 'end', CAUSE.breakpoint);
    endsAt(await run(eight, 'U', (a) => { a.li(10, DATA + 8).label('p').sw(0, 0, 10); }), 'p', CAUSE.storeAccess, DATA + 8);
    const page: Array<[number, number]> = [[CODE, NAPOT | R | X], [napot(DATA, 4096), NAPOT | R]];
    endsAt(await run(page, 'S', (a) => { a.li(10, DATA + 4092).lw(11, 0, 10); }), 'end', CAUSE.breakpoint);
    endsAt(await run(page, 'S', (a) => { a.li(10, DATA + 4096).label('p').lw(11, 0, 10); }), 'p', CAUSE.loadAccess, DATA + 4096);
    endsAt(await run([[0xffffffff, NAPOT | R | W | X]], 'U', (a) => { a.li(10, DATA).sw(0, 0, 10); }), 'end', CAUSE.breakpoint);
  });
});

describe('locked entries', () => {
  it('bind M-mode too; the same entry unlocked does not', async () => {
    const locked = await run([[DATA >>> 2, NA4 | R | L]], 'M', (a) => { a.li(10, DATA).lw(11, 0, 10).label('p').sw(0, 0, 10); });
    endsAt(locked, 'p', CAUSE.storeAccess, DATA);
    const unlocked = await run([[DATA >>> 2, NA4 | R]], 'M', (a) => { a.li(10, DATA).sw(0, 0, 10); });
    endsAt(unlocked, 'end', CAUSE.breakpoint);
  });

  it('a locked entry without X stops M-mode fetching there', async () => {
    const x = await run([[napot(DATA, 4096), NAPOT | R | W | L]], 'M', (a) => { a.li(10, DATA).jalr(0, 10, 0); });
    expect(x.r).toMatchObject({ kind: 'trap', cause: CAUSE.fetchAccess, pc: DATA, tval: DATA });
  });

  it('ignore writes to their configuration and address, and a locked TOR entry locks the address below it', async () => {
    const x = await run([[DATA >>> 2, NA4 | R | L], [0x1000, 0], [0x2000, TOR | R | L]], 'M', (a) => {
      a.li(5, 0).csrrw(0, SCSR.pmpcfg0, 5); //             try to clear entries 0-3
      a.li(5, 0x1234).csrrw(0, SCSR.pmpaddr0, 5).csrrw(0, SCSR.pmpaddr0 + 1, 5).csrrw(0, SCSR.pmpaddr0 + 2, 5);
      a.csrrs(10, SCSR.pmpcfg0, 0);
      a.csrrs(11, SCSR.pmpaddr0, 0).csrrs(12, SCSR.pmpaddr0 + 1, 0).csrrs(13, SCSR.pmpaddr0 + 2, 0);
    });
    endsAt(x, 'end', CAUSE.breakpoint);
    expectRegs(x.m, { 10: ((TOR | R | L) << 16) | (NA4 | R | L), 11: DATA >>> 2, 12: 0x1000, 13: 0x2000 });
  });
});

describe('registers', () => {
  it('pack four entries per pmpcfg; R = 0 W = 1 is ignored; bits 5-6 read zero; entries past 15 read zero', async () => {
    const x = await run([], 'M', (a) => {
      a.li(5, 0x7f1f0f01).csrrw(0, SCSR.pmpcfg0 + 3, 5).csrrs(10, SCSR.pmpcfg0 + 3, 0); // entries 12-15
      a.li(5, 0x1a).csrrw(0, SCSR.pmpcfg0, 5).csrrs(11, SCSR.pmpcfg0, 0); //              NAPOT | W: ignored
      a.li(5, -1).csrrw(0, 0x3a4, 5).csrrs(12, 0x3a4, 0); //                               pmpcfg4
      a.csrrw(0, 0x3c0, 5).csrrs(13, 0x3c0, 0); //                                          pmpaddr16
      a.csrrw(0, SCSR.pmpaddr0 + 15, 5).csrrs(14, SCSR.pmpaddr0 + 15, 0);
      a.li(5, 0).csrrw(0, SCSR.pmpcfg0 + 3, 5);
    });
    endsAt(x, 'end', CAUSE.breakpoint);
    expectRegs(x.m, { 10: 0x1f1f0f01, 11: 0, 12: 0, 13: 0, 14: 0xffffffff });
  });
});

describe('with translation', () => {
  it('the page walk reads page tables as S-mode: a table PMP denies gives an access fault', async () => {
    const a = asm();
    a.li(5, napot(RAM + 0xf0000, 0x10000)).csrrw(0, SCSR.pmpaddr0, 5); //   the tables: no access
    a.li(5, 0xffffffff).csrrw(0, SCSR.pmpaddr0 + 1, 5); //                   the rest: RWX
    a.li(5, ((NAPOT | R | W | X) << 8) | NAPOT).csrrw(0, SCSR.pmpcfg0, 5);
    a.li(5, satpOf(RAM + 0xf0000)).csrrw(0, SCSR.satp, 5);
    a.li(5, MST.MPP).csrrc(0, CSR.mstatus, 5).li(5, MST.MPP_S).csrrs(0, CSR.mstatus, 5);
    a.la(5, 'body').csrrw(0, CSR.mepc, 5).mret();
    a.align(4).label('body').ebreak();
    const m = load(a);
    new PageTables(m).mapSuper(RAM, RAM, P.RWX);
    const r = await m.run({ maxInstructions: 1000 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.fetchAccess, pc: a.addr('body'), tval: a.addr('body') });
  });

  it('M-mode accesses with MPRV = 1 and MPP = U are checked as U-mode accesses', async () => {
    const x = await run([[CODE, NAPOT | R | X]], 'M', (a) => { a.li(10, DATA).label('p').lw(11, 0, 10); }, MST.MPRV);
    endsAt(x, 'p', CAUSE.loadAccess, DATA);
  });

  it('a PMP write takes effect for the next access, through translations cached before it', async () => {
    const x = await run([[0xffffffff, NAPOT | R | W | X]], 'M', (a) => {
      a.li(5, MST.MPRV | MST.MPP_S).csrrs(0, CSR.mstatus, 5); //   data accesses as S-mode, satp bare
      a.li(10, DATA).lw(11, 0, 10); //                               allowed (and cached)
      a.li(5, NAPOT | X).csrrw(0, SCSR.pmpcfg0, 5); //                no more R for S
      a.label('p').lw(12, 0, 10);
    });
    endsAt(x, 'p', CAUSE.loadAccess, DATA);
  });

  it('a fetch page fault comes before any PMP check of the page it did not reach', async () => {
    const a = asm();
    a.li(5, 0xffffffff).csrrw(0, SCSR.pmpaddr0, 5).li(5, NAPOT | R | W | X).csrrw(0, SCSR.pmpcfg0, 5);
    a.li(5, satpOf(RAM + 0xf0000)).csrrw(0, SCSR.satp, 5);
    a.li(5, MST.MPP).csrrc(0, CSR.mstatus, 5);
    a.li(5, 0x40000000).csrrw(0, CSR.mepc, 5).mret();
    const m = load(a);
    new PageTables(m).mapSuper(RAM, RAM, P.RWX);
    const r = await m.run({ maxInstructions: 1000 });
    expect(r).toMatchObject({ kind: 'trap', cause: XCAUSE.fetchPage, pc: 0x40000000, tval: 0x40000000 });
  });
});
