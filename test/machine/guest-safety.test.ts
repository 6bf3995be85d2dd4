// A guest can never crash, hang or wedge its host: a disk request completing on a queue the driver
// disabled and shrank to size 0 (once a SIGFPE), a trap handler that traps forever (once an endless loop
// inside the interpreter that neither the budget nor stop() could end), each in run, record and replay.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { EventKind, LogReader, Machine, Recorder, Replayer, decodeRecords, encodeBatch, type MachineOptions } from '../../src/index.js';
import { encodeLogHeader } from '../../src/log/format.js';
import { Asm } from '../helpers/asm.js';

const BLK = 0x10002000; // virtio-mmio slot 1
const DESC = 0x80010000, AVAIL = 0x80011000, USED = 0x80012000;
const HEADER = 0x80020000, DATA = 0x80021000, STATUS = 0x80022000;

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-guest-safety-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const live: Machine[] = [];
afterEach(() => {
  while (live.length) live.pop()!.close();
});
function make(options: MachineOptions): Machine {
  const m = new Machine(options);
  live.push(m);
  return m;
}
function diskImage(name: string): string {
  const path = join(tmp, name);
  writeFileSync(path, Buffer.alloc(64 * 1024, 0xa5));
  return path;
}

/**
 * Sets up virtio-blk queue 0 (size 8), submits one 512-byte read of sector 0, then disables the queue
 * (QueueReady = 0) and sets QueueNum = 0 while the read is in flight, and spins until the device reports
 * DEVICE_NEEDS_RESET (status bit 0x40); then ebreak with Status in a0, the used index in a1 and the
 * attempts in s1. The disk runs on its own thread: when the read completed before the queue was disabled
 * (used index 1), the guest resets the device and tries again (at most 1000 times).
 */
function disableMidRequest(): Uint8Array {
  const a = new Asm();
  const w = (off: number, value: number) => a.li(6, value).sw(6, off, 5);
  const mem32 = (addr: number, value: number) => a.li(7, addr).li(6, value).sw(6, 0, 7);
  const mem16 = (addr: number, value: number) => a.li(7, addr).li(6, value).sh(6, 0, 7);
  a.li(5, BLK);
  a.li(9, 0);
  a.label('attempt');
  a.addi(9, 9, 1);
  w(0x70, 0);
  w(0x70, 1 | 2);
  w(0x24, 1);
  w(0x20, 1); // VERSION_1
  w(0x70, 1 | 2 | 8);
  w(0x30, 0);
  w(0x38, 8);
  w(0x80, DESC);
  w(0x90, AVAIL);
  w(0xa0, USED);
  w(0x44, 1);
  w(0x70, 1 | 2 | 8 | 4);
  // Request: header (type 0 = read, sector 0), 512 data bytes, 1 status byte: descriptors 0 -> 1 -> 2.
  mem32(HEADER, 0);
  mem32(HEADER + 8, 0);
  const desc = (i: number, addr: number, len: number, flags: number, next: number) => {
    mem32(DESC + 16 * i, addr);
    mem32(DESC + 16 * i + 4, 0);
    mem32(DESC + 16 * i + 8, len);
    mem16(DESC + 16 * i + 12, flags);
    mem16(DESC + 16 * i + 14, next);
  };
  desc(0, HEADER, 16, 1, 1);
  desc(1, DATA, 512, 1 | 2, 2);
  desc(2, STATUS, 1, 2, 0);
  mem16(USED + 2, 0);
  mem16(AVAIL + 4, 0); // ring[0] = head 0
  mem16(AVAIL + 2, 1); // avail idx = 1
  w(0x50, 0); // notify: the read goes to the disk
  w(0x44, 0); // QueueReady = 0 ...
  w(0x38, 0); // ... and QueueNum = 0, with the read in flight
  a.li(7, USED);
  a.lhu(11, 2, 7);
  a.beq(11, 0, 'wait');
  a.li(6, 1000);
  a.blt(9, 6, 'attempt');
  a.ebreak(); // lost the race 1000 times: a1 = 1 tells the test
  a.label('wait');
  a.lw(10, 0x70, 5);
  a.andi(10, 10, 0x40);
  a.beq(10, 0, 'wait');
  a.lw(10, 0x70, 5);
  a.li(7, USED);
  a.lhu(11, 2, 7);
  a.ebreak();
  return a.bytes();
}

describe('a virtio queue disabled while a request is in flight', () => {
  // The read completes at some later slice boundary; the guest spins until then. Bounded in count.
  const budget = 4_000_000_000;

  it('run: the completion puts the device into DEVICE_NEEDS_RESET instead of crashing the host', async () => {
    const m = make({ memory: 1 << 20, devices: { disk: { path: diskImage('run.img') } } });
    m.writeMemory(0x80000000, disableMidRequest());
    const r = await m.run({ maxInstructions: budget });
    expect(r).toMatchObject({ kind: 'trap', cause: 3 });
    expect(m.getRegister(10) & 0x40).toBe(0x40);
    expect(m.getRegister(11)).toBe(0); // nothing was written to a used ring of size 0
  });

  it('record and replay: the same, and the replay reaches the recorded state', async () => {
    const m = make({ memory: 1 << 20, clock: 'real', devices: { disk: { path: diskImage('rec.img') } } });
    m.writeMemory(0x80000000, disableMidRequest());
    const start = m.snapshot();
    const rec = new Recorder(m, { hashInterval: 0 });
    const batches: Uint8Array[] = [];
    rec.on('batch', (b) => batches.push(b.slice()));
    const r = await m.run({ maxInstructions: budget });
    rec.finish(r);
    expect(r).toMatchObject({ kind: 'trap', cause: 3 });
    expect(m.getRegister(10) & 0x40).toBe(0x40);

    const s = make({ memory: 1 << 20, clock: 'real', devices: { disk: { path: diskImage('rep.img') } } });
    s.restore(start);
    const rep = new Replayer(s);
    for (const b of batches) rep.feed(b);
    rep.end();
    const rr = await s.run();
    expect(rr).toMatchObject({ kind: 'end-of-log', recorded: 'trap', instret: r.instret, replay: { ended: true, finalHash: true } });
    expect(s.stateHash()).toBe(m.stateHash());
  });

  it('a snapshot taken with the read in flight, restored and fed the rest of the log, replays the completion safely', async () => {
    // Record, then replay up to the last disk completion and snapshot there: the queue is disabled, the
    // read pending. A fresh machine restores that snapshot (restore() accepts it: nothing in it is
    // inconsistent) and replays the log from that point: the completion meets the disabled queue.
    const m = make({ memory: 1 << 20, clock: 'real', devices: { disk: { path: diskImage('snap-rec.img') } } });
    m.writeMemory(0x80000000, disableMidRequest());
    const start = m.snapshot();
    const rec = new Recorder(m, { hashInterval: 0 });
    const batches: Uint8Array[] = [];
    rec.on('batch', (b) => batches.push(b.slice()));
    const r = await m.run({ maxInstructions: budget });
    rec.finish(r);
    const views = [...LogReader.fromBytes(logFile(batches)).batches()];
    const events = views.flatMap((v) => decodeRecords(v));
    const done = events.filter((e) => e.kind === EventKind.BlockDone).at(-1)!;
    expect(done).toBeDefined();

    const s = make({ memory: 1 << 20, clock: 'real', devices: { disk: { path: diskImage('snap-rep.img') } } });
    s.restore(start);
    const rep = new Replayer(s);
    for (const b of batches) rep.feed(b);
    rep.end();
    // A replay run stopped at instret Y has applied the events at Y: stop one before the completion.
    const y = done.instret - 1n;
    expect(await s.run({ untilInstret: y })).toMatchObject({ kind: 'budget', instret: y });
    const at = { instret: y, branches: s.counters.branches, pc: s.pc };
    const mid = s.snapshot();

    const t = make({ memory: 1 << 20, clock: 'real', devices: { disk: { path: diskImage('snap-rep2.img') } } });
    t.restore(mid);
    const rest = events.filter((e) => e.instret > y);
    const clock = events.filter((e) => e.instret <= y && (e.kind === EventKind.ClockRead || e.kind === EventKind.ClockSample)).at(-1)?.value ?? views[0]!.baseClock;
    const tail = encodeBatch(0n, { ...at, clock }, rest);
    const rep2 = new Replayer(t);
    rep2.feed(tail);
    rep2.end();
    expect(await t.run()).toMatchObject({ kind: 'end-of-log', recorded: 'trap', instret: r.instret, replay: { ended: true, finalHash: true } });
    expect(t.stateHash()).toBe(m.stateHash());
  });
});

/** A log file's bytes for recorded batches (the header's fields do not matter to these tests). */
function logFile(batches: Uint8Array[]): Uint8Array {
  const header = encodeLogHeader({ lockstep: 'test', memory: 1 << 20, clock: 'real', elfSha256: '0'.repeat(64), hashInterval: 0 });
  return Buffer.concat([header, ...batches]);
}

/** mtvec points at an illegal instruction (the all-zeros word) and the guest then executes one: every trap re-enters the handler, which traps again. */
function trapLoop(): Uint8Array {
  const a = new Asm();
  a.la(5, 'handler').csrrw(0, 0x305, 5); // csrw mtvec, handler
  a.li(6, 3).addi(6, 6, 4); // a few instructions that retire
  a.word(0); // illegal: enters the handler ...
  a.align(4).label('handler').word(0); // ... which is illegal itself
  return a.bytes();
}

/** The same loop one level down: illegal instructions are delegated to S-mode, whose stvec points at one. */
function supervisorTrapLoop(): Uint8Array {
  const a = new Asm();
  a.li(5, -1).csrrw(0, 0x3b0, 5); // pmpaddr0 = everything
  a.li(5, 0x1f).csrrw(0, 0x3a0, 5); // pmpcfg0: NAPOT, RWX (S-mode may touch nothing without an entry)
  a.li(5, 1 << 2).csrrw(0, 0x302, 5); // medeleg: illegal instruction
  a.la(5, 'handler').csrrw(0, 0x105, 5); // stvec
  a.la(5, 'smode').csrrw(0, 0x341, 5); // mepc
  a.li(5, 1 << 11).csrrw(0, 0x300, 5); // mstatus.MPP = S
  a.word(0x30200073); // mret
  a.align(4).label('smode');
  a.li(6, 3).addi(6, 6, 4);
  a.word(0); // illegal in S: delegated to the S handler ...
  a.align(4).label('handler').word(0); // ... which is illegal itself
  return a.bytes();
}

describe('a trap handler that traps itself', () => {
  it('halts the run with a reason naming the handler and the cause, instead of spinning forever', async () => {
    const m = make({ memory: 1 << 20 });
    const code = trapLoop();
    m.writeMemory(0x80000000, code);
    const r = await m.run();
    const handler = 0x80000000 + code.length - 4;
    expect(r).toMatchObject({ kind: 'halted', instret: 5n, pc: handler });
    if (r.kind !== 'halted') throw new Error('unreachable');
    expect(r.reason).toBe(`trap loop: the handler at 0x${handler.toString(16).padStart(8, "0")} raises cause 2 (illegal instruction) itself; the hart can never retire another instruction`);
    // Running again does not spin either: the same fixed point is reported at once.
    expect(await m.run()).toMatchObject({ kind: 'halted', instret: 5n });
  });

  it('halts a loop of traps delegated to S-mode the same way', async () => {
    const m = make({ memory: 1 << 20 });
    const code = supervisorTrapLoop();
    m.writeMemory(0x80000000, code);
    const r = await m.run({ maxInstructions: 1_000_000 });
    const handler = 0x80000000 + code.length - 4;
    expect(r).toMatchObject({ kind: 'halted', pc: handler });
    if (r.kind !== 'halted') throw new Error('unreachable');
    expect(r.reason).toMatch(/^trap loop: the handler at 0x[0-9a-f]{8} raises cause 2 \(illegal instruction\) itself/);
    expect(m.privilege).toBe('S');
  });

  it('is recorded as halted and replays to the same state', async () => {
    const m = make({ memory: 1 << 20, clock: 'real' });
    m.writeMemory(0x80000000, trapLoop());
    const start = m.snapshot();
    const rec = new Recorder(m, { hashInterval: 0 });
    const batches: Uint8Array[] = [];
    rec.on('batch', (b) => batches.push(b.slice()));
    const r = await m.run({ maxInstructions: 1_000_000 });
    rec.finish(r);
    expect(r).toMatchObject({ kind: 'halted' });
    const s = make({ memory: 1 << 20, clock: 'real' });
    s.restore(start);
    const rep = new Replayer(s);
    for (const b of batches) rep.feed(b);
    rep.end();
    // The replay takes the same traps at the same instret, halts the same way, then consumes the final
    // state hash and the end record logged there.
    expect(await s.run()).toMatchObject({ kind: 'halted', instret: r.instret, replay: { ended: true, finalHash: true } });
    expect(s.stateHash()).toBe(m.stateHash());
  });
});
