// The new architectural state is machine state: the S-mode CSRs, delegation, satp and PMP are in the
// state hash and in snapshots (a machine restored mid-run under Sv32 continues identically); the
// translation cache is not (restoring does not change behaviour); time CSR reads in S- and U-mode are
// clock events, logged when recording and replayed to the same state.
import { describe, expect, it } from 'vitest';
import { Machine, Recorder, Replayer, decodeRecords, parseBatch, EventKind, SnapshotError } from '../../src/index.js';
import { CSR, DATA, RAM, csrOf, csrr, load, machine, release } from './harness.js';
import { MST, P, PTE, PageTables, SCSR, asm, enter, satpOf } from './sv32.js';
import { resealSnapshot } from '../helpers/snapshot.js';

const VA = 0x40000000;

/**
 * A U-mode loop under Sv32 and PMP that keeps changing memory through two virtual pages, with every new
 * CSR given a distinctive value first.
 */
function busyProgram() {
  const a = asm();
  a.la(5, 'shandler').csrrw(0, SCSR.stvec, 5);
  for (const [c, v] of [[SCSR.sscratch, 0x55aa55aa], [SCSR.sepc, RAM + 0x124], [SCSR.scause, 13], [SCSR.stval, 0xbadf00d],
    [SCSR.scounteren, 5], [SCSR.medeleg, 0x100], [SCSR.mideleg, 0x20], [CSR.mip, 0x2], [CSR.mcounteren, 7]] as const) {
    a.li(5, v).csrrw(0, c, 5);
  }
  a.li(5, 0x12340).csrrw(0, SCSR.pmpaddr0 + 3, 5); // an extra entry, OFF: still state
  enter(a, 'U', 'body', { satp: satpOf(RAM + 0xf0000, 0x42) });
  a.align(4).label('body');
  a.li(10, VA).li(11, VA + 0x1000).li(12, 3000);
  a.label('loop').lw(13, 0, 10).addi(13, 13, 7).sw(13, 0, 11).sw(12, 4, 10).addi(12, 12, -1).bne(12, 0, 'loop');
  a.ecall();
  a.align(4096).label('shandler').j('shandler');
  return a;
}

function startBusy(m: Machine, a: ReturnType<typeof busyProgram>): void {
  m.writeMemory(RAM, a.bytes());
  m.pc = RAM;
  const pt = new PageTables(m);
  pt.mapRange(RAM, RAM, (a.addr('shandler') - RAM) / 4096, P.RWX | PTE.U).map(a.addr('shandler'), a.addr('shandler'), P.RX);
  pt.map(VA, DATA, P.RW | PTE.U).map(VA + 0x1000, DATA + 0x3000, P.RW | PTE.U);
}

const NEW_CSRS = [SCSR.stvec, SCSR.sscratch, SCSR.sepc, SCSR.scause, SCSR.stval, SCSR.satp, SCSR.scounteren, SCSR.medeleg,
  SCSR.mideleg, CSR.mip, SCSR.pmpcfg0, SCSR.pmpcfg0 + 3, ...Array.from({ length: 16 }, (_, i) => SCSR.pmpaddr0 + i)];

describe('state hash and snapshots', () => {
  it('a snapshot taken mid-run under Sv32 in U-mode restores every new CSR and continues to the same end', async () => {
    const a = busyProgram();
    const first = machine();
    startBusy(first, a);
    const r1 = await first.run({ maxInstructions: 7777 });
    expect(r1.kind).toBe('budget');
    expect(first.privilege).toBe('U');
    const second = machine();
    second.restore(first.snapshot());
    expect(second.privilege).toBe('U');
    for (const c of NEW_CSRS) expect([c, second.getCsr(c)]).toEqual([c, first.getCsr(c)]);
    expect(second.stateHash()).toBe(first.stateHash());
    const [e1, e2] = [await first.run({ maxInstructions: 100_000 }), await second.run({ maxInstructions: 100_000 })];
    expect(e1).toMatchObject({ kind: 'budget', pc: a.addr('shandler') }); // the final ecall, delegated to S
    expect({ instret: e2.instret, branches: e2.branches, pc: e2.pc }).toEqual({ instret: e1.instret, branches: e1.branches, pc: e1.pc });
    expect(second.stateHash()).toBe(first.stateHash());
    expect(csrOf(second, SCSR.scause)).toBe(8);
  });

  it('restoring into the same machine (an emptied translation cache) does not change what happens next', async () => {
    const a = busyProgram();
    const m = machine();
    startBusy(m, a);
    await m.run({ maxInstructions: 5000 });
    const snap = m.snapshot();
    const ref = machine();
    ref.restore(snap);
    m.restore(snap); // the same machine: its TLB is dropped, ref never had one
    await m.run({ maxInstructions: 4000 });
    await ref.run({ maxInstructions: 4000 });
    expect(m.stateHash()).toBe(ref.stateHash());
  });

  it('every new CSR is part of the state hash', async () => {
    const m = machine();
    m.writeMemory(RAM, new Uint8Array(4));
    const base = m.stateHash();
    for (const c of NEW_CSRS) {
      const before = m.getCsr(c)!;
      const value = c === CSR.mip ? 0x2 : c === SCSR.mideleg ? 0x20 : c === SCSR.medeleg ? 0x100 : c === SCSR.scounteren ? 1 : 0x8;
      expect(m.setCsr(c, value), `CSR 0x${c.toString(16)} is writable by the host`).toBe(true);
      expect(m.getCsr(c), `CSR 0x${c.toString(16)} took the value`).not.toBe(before);
      expect(m.stateHash(), `CSR 0x${c.toString(16)} changes the state hash`).not.toBe(base);
      m.setCsr(c, before);
      expect(m.stateHash()).toBe(base);
    }
  });

  it('a snapshot whose mstatus.MPP holds the reserved mode 2 is refused', async () => {
    const m = machine();
    const s = m.snapshot();
    const MSTATUS_AT = 24 + 31 * 4 + 4 + 4 + 8 + 8; // header, x1..x31, pc, priv/wfi/rv/pad, instret, branches
    const damaged = s.slice();
    damaged[MSTATUS_AT + 1] = (damaged[MSTATUS_AT + 1]! & ~0x18) | 0x10;
    resealSnapshot(damaged); // past the checksum: the field check itself is what is tested
    const other = machine();
    expect(() => other.restore(damaged)).toThrow(SnapshotError);
    expect(() => other.restore(damaged)).toThrow(/MPP/);
    release(other);
  });
});

describe('time CSR reads are clock events', () => {
  it('reads of time and timeh in S- and U-mode are logged when recording and replayed to the same state', async () => {
    const build = () => {
      const a = asm();
      a.li(5, 7).csrrw(0, CSR.mcounteren, 5).csrrw(0, SCSR.scounteren, 5);
      a.li(5, 1 << 8).csrrw(0, SCSR.medeleg, 5).la(5, 'sup').csrrw(0, SCSR.stvec, 5);
      enter(a, 'S', 'sbody');
      a.align(4).label('sbody');
      a.word(csrr(20, CSR.time)).word(csrr(21, CSR.timeh)); //     two reads in S
      a.la(5, 'user').csrrw(0, SCSR.sepc, 5).sret(); //             then U
      a.align(4).label('user').li(12, 40).label('loop');
      a.word(csrr(10, CSR.time)).word(csrr(11, CSR.timeh)).add(13, 13, 10).addi(12, 12, -1).bne(12, 0, 'loop');
      a.ecall();
      // The ecall, delegated to S: done. (One instruction first: a trap that retires nothing followed at once
      // by the run-ending one would leave the end of the log at a pc the replayer cannot stop at.)
      a.align(4).label('sup').nop().label('done').ebreak();
      return a;
    };
    const a = build();
    // Every read logged (clockStepUs 0): the count below is the number of reads.
    const rec = new Machine({ memory: 1 << 20, clock: 'real', clockStepUs: 0 });
    const batches: Uint8Array[] = [];
    let recorded;
    let recordedHash: bigint;
    let recordedSum: number;
    try {
      rec.writeMemory(RAM, a.bytes());
      rec.pc = RAM;
      const recorder = new Recorder(rec);
      recorder.on('batch', (b) => batches.push(b.slice()));
      recorded = await rec.run({ maxInstructions: 100_000 });
      recorder.finish(recorded);
      expect(recorded).toMatchObject({ kind: 'trap', cause: 3, pc: a.addr('done') });
      expect(rec.privilege).toBe('S');
      recordedHash = rec.stateHash();
      recordedSum = rec.getRegister(13); // the sum of the U-mode time reads
    } finally {
      rec.close();
    }
    const clockReads = batches.flatMap((b) => {
      const lsn = new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(8, true);
      return decodeRecords(parseBatch(b, 0, lsn).batch);
    }).filter((e) => e.kind === EventKind.ClockRead);
    expect(clockReads.length).toBe(2 + 2 * 40);

    const rep = new Machine({ memory: 1 << 20, clock: 'real' });
    try {
      rep.writeMemory(RAM, a.bytes());
      rep.pc = RAM;
      const replayer = new Replayer(rep);
      for (const b of batches) replayer.feed(b);
      replayer.end();
      const r = await rep.run();
      expect(r.kind).not.toBe('divergence');
      expect(r.instret).toBe(recorded.instret);
      expect(r.branches).toBe(recorded.branches);
      expect(rep.getRegister(13)).toBe(recordedSum);
      expect(rep.stateHash()).toBe(recordedHash);
    } finally {
      rep.close();
    }
  });
});
