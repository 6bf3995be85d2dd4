// Device target: a generated guest program hammers every device register (virtio-net/blk/rng in slots
// 0-2 and the empty slots, UART, CLINT, PLIC; the finisher aside) with random writes and reads, random
// descriptor chains, resets mid-request and queues reconfigured with requests in flight, while the host
// sends frames and UART bytes. The host must survive (and the sanitizer build stay silent); the end state
// must snapshot and restore to the same hash; a recorded run must replay to the same state.
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Machine, Recorder, Replayer, type MachineOptions, type RunResult } from '../../../src/index.js';
import { Asm } from '../../helpers/asm.js';
import { check, runWithPatience, type FuzzTarget } from '../harness.js';
import { int, interesting32, pick, type Rnd } from '../mutate.js';

const RAM = 0x80000000;
export const DEVICE_MEMORY = 1 << 20;
/** The generated program's data area: rings, buffers and request headers live here (code stays below). */
const DATA = RAM + 0x40000;
const DATA_BYTES = 0x40000;
const VIRTIO = 0x10001000;
const UART = 0x10000000;
const CLINT = 0x02000000;
const PLIC = 0x0c000000;
const FINISHER = 0x00100000;
export const DEVICE_DISK_BYTES = 64 * 1024;
const BUDGET = 3_000_000;
const PATIENCE_MS = 5_000;

const VIRTIO_REGS = [0x000, 0x004, 0x008, 0x00c, 0x010, 0x014, 0x020, 0x024, 0x030, 0x034, 0x038, 0x044, 0x050, 0x060, 0x064, 0x070, 0x080, 0x084, 0x090, 0x094, 0x0a0, 0x0a4, 0x0fc, 0x100, 0x104, 0x108, 0x10c];
const CLINT_REGS = [0x0000, 0x0004, 0x4000, 0x4004, 0x4008, 0xbff8, 0xbffc, 0xfffc];
const PLIC_REGS = [0x0000, 0x0004, 0x0008, 0x000c, 0x0028, 0x017c, 0x1000, 0x1004, 0x2000, 0x2004, 0x2080, 0x200000, 0x200004, 0x201000, 0x201004, 0x3ffffc];

/** A register value a driver might write, or a hostile one. */
function regValue(rnd: Rnd): number {
  return pick(rnd, [
    () => interesting32(rnd),
    () => pick(rnd, [0, 1, 3, 7, 8, 11, 15, 0x40, 0x47, 0x4f]), // status bits
    () => pick(rnd, [1, 2, 4, 8, 16, 32, 64, 128, 256, 0, 3, 255, 257, 65536]), // queue sizes
    () => dataAddr(rnd),
  ])();
}

/** An address for a descriptor or ring: mostly inside the data area, sometimes anywhere. */
function dataAddr(rnd: Rnd): number {
  const r = rnd();
  if (r < 0.8) return (DATA + 16 * int(rnd, DATA_BYTES / 16)) >>> 0;
  if (r < 0.9) return pick(rnd, [RAM + DEVICE_MEMORY - 8, RAM + DEVICE_MEMORY, RAM - 16, 0, 0x10001000, RAM]) >>> 0;
  return interesting32(rnd);
}

interface Gen {
  a: Asm;
  rnd: Rnd;
  /** Per virtio slot: the queue layout the program last set up (for plausible descriptors and notifies). */
  queues: Map<number, { num: number; desc: number; avail: number; used: number; idx: number }>;
}

function store(g: Gen, addr: number, value: number, width: 1 | 2 | 4 = 4): void {
  g.a.li(6, addr >>> 0).li(7, value >>> 0);
  if (width === 4) g.a.sw(7, 0, 6);
  else if (width === 2) g.a.sh(7, 0, 6);
  else g.a.sb(7, 0, 6);
}

function load(g: Gen, addr: number, width: 1 | 2 | 4 = 4): void {
  g.a.li(6, addr >>> 0);
  if (width === 4) g.a.lw(7, 0, 6);
  else if (width === 2) g.a.lh(7, 0, 6);
  else g.a.lb(7, 0, 6);
}

/** A full, correct virtio setup of `slot`'s queue `q` (sometimes with a bad size): the common path. */
function setup(g: Gen, slot: number, q: number): void {
  const base = VIRTIO + slot * 0x1000;
  const num = g.rnd() < 0.85 ? pick(g.rnd, [4, 8, 16, 256]) : pick(g.rnd, [0, 3, 512]);
  const desc = DATA + 0x1000 * int(g.rnd, 24);
  const avail = desc + 0x1000 * (1 + int(g.rnd, 2));
  const used = avail + 0x1000 * (1 + int(g.rnd, 2));
  store(g, base + 0x070, 0);
  store(g, base + 0x070, 3);
  store(g, base + 0x024, 1);
  store(g, base + 0x020, 1); // VERSION_1
  store(g, base + 0x024, 0);
  store(g, base + 0x020, g.rnd() < 0.5 ? 0x20 : 0x206); // MAC / blk SIZE_MAX, SEG_MAX, FLUSH
  store(g, base + 0x070, 11);
  store(g, base + 0x030, q);
  store(g, base + 0x038, num);
  store(g, base + 0x080, desc);
  store(g, base + 0x090, avail);
  store(g, base + 0x0a0, used);
  store(g, base + 0x044, 1);
  store(g, base + 0x070, 15);
  g.queues.set(slot * 2 + q, { num, desc, avail, used, idx: 0 });
}

/** Writes descriptor `i` of queue `q`. */
function descriptor(g: Gen, q: { desc: number; num: number }, i: number, addr: number, len: number, flags: number, next: number): void {
  const d = q.desc + 16 * (i % Math.max(1, q.num));
  store(g, d, addr);
  store(g, d + 4, 0);
  store(g, d + 8, len);
  store(g, d + 12, (flags & 0xffff) | ((next & 0xffff) << 16));
}

/** Makes chain `head` available on queue `key` (ring[idx % num] = head, idx + 1) and usually notifies. */
function publish(g: Gen, key: number, head: number): void {
  const q = g.queues.get(key)!;
  const n = Math.max(1, q.num);
  store(g, q.avail + 4 + 2 * (q.idx % n), head, 2);
  q.idx = g.rnd() < 0.95 ? (q.idx + 1) & 0xffff : int(g.rnd, 0x10000);
  store(g, q.avail + 2, q.idx, 2);
  if (g.rnd() < 0.9) store(g, VIRTIO + Math.floor(key / 2) * 0x1000 + 0x050, key % 2);
}

/**
 * A well-formed request for the device in the slot (so the device does real work: disk reads, writes
 * and flushes in flight, entropy, receive buffers for the host's frames), on a queue set up before.
 */
function wellFormed(g: Gen): void {
  const slot = pick(g.rnd, [1, 1, 1, 0, 2]);
  const key = slot * 2 + (slot === 0 && g.rnd() < 0.3 ? 1 : 0);
  if (!g.queues.has(key) || !Virtqueue(g.queues.get(key)!.num)) return setup(g, slot, key % 2);
  const q = g.queues.get(key)!;
  const head = int(g.rnd, q.num);
  const buf = DATA + 0x20000 + 0x1000 * int(g.rnd, 24);
  if (slot === 1) {
    const type = pick(g.rnd, [0, 0, 1, 4, 8]);
    const sectors = 1 + int(g.rnd, 8);
    store(g, buf, type);
    store(g, buf + 8, int(g.rnd, (DEVICE_DISK_BYTES >> 9) - sectors + 2)); // now and then past the end
    store(g, buf + 12, 0);
    descriptor(g, q, head, buf, 16, 1, (head + 1) % q.num);
    if (type === 4) {
      descriptor(g, q, head + 1, buf + 0x800, 1, 2, 0);
    } else {
      descriptor(g, q, head + 1, buf + 0x200, 512 * sectors, 1 | (type === 1 ? 0 : 2), (head + 2) % q.num);
      descriptor(g, q, head + 2, buf + 0x800 + 512 * sectors, 1, 2, 0);
    }
  } else if (key === 0) {
    descriptor(g, q, head, buf, 1526, 2, 0); // a receive buffer
  } else if (key === 1) {
    descriptor(g, q, head, buf, 12 + 60 + int(g.rnd, 1400), 0, 0); // a frame to send
  } else {
    descriptor(g, q, head, buf, 1 + int(g.rnd, 256), 2, 0); // entropy
  }
  publish(g, key, head);
  // Often, at once, pull the rug: reset the device or disable and resize the queue while the request is
  // in flight (a disk request completes on the disk's own thread, a few instructions later at the earliest).
  if (g.rnd() < 0.3) disrupt(g, slot, key % 2);
}

/** Resets `slot`, or disables its queue `q` and gives it another size (0 among them), maybe re-enabling it. */
function disrupt(g: Gen, slot: number, q: number): void {
  const base = VIRTIO + slot * 0x1000;
  if (g.rnd() < 0.3) return store(g, base + 0x070, 0);
  store(g, base + 0x030, q);
  store(g, base + 0x044, 0);
  store(g, base + 0x038, pick(g.rnd, [0, 0, 1, 8, 3, 256, 1024]));
  if (g.rnd() < 0.4) store(g, base + 0x080, dataAddr(g.rnd));
  if (g.rnd() < 0.4) store(g, base + 0x044, 1);
}

/** True for a queue size the device accepts (a power of two up to 256). */
function Virtqueue(num: number): boolean {
  return num > 0 && num <= 256 && (num & (num - 1)) === 0;
}

/** A descriptor chain of 1..4 entries (valid-looking or hostile) made available on a set-up queue. */
function request(g: Gen): void {
  if (g.rnd() < 0.5) return wellFormed(g);
  const keys = [...g.queues.keys()];
  if (keys.length === 0) return setup(g, int(g.rnd, 3), 0);
  const key = pick(g.rnd, keys);
  const q = g.queues.get(key)!;
  const n = Math.max(1, q.num);
  const len = 1 + int(g.rnd, 4);
  const head = int(g.rnd, n);
  for (let k = 0; k < len; k++) {
    const i = (head + k) % n;
    const d = q.desc + 16 * i;
    const buf = dataAddr(g.rnd);
    const size = pick(g.rnd, [16, 1, 512, 513, 1024, 4096, 65536, 0, 0x100000, interesting32(g.rnd)]);
    const last = k === len - 1;
    // flags: NEXT on all but the last; WRITE for device-written parts; now and then INDIRECT or junk.
    let flags = (last ? 0 : 1) | (k > 0 && g.rnd() < 0.6 ? 2 : 0);
    if (g.rnd() < 0.05) flags = int(g.rnd, 8);
    store(g, d, buf);
    store(g, d + 4, g.rnd() < 0.95 ? 0 : 1);
    store(g, d + 8, size);
    store(g, d + 12, (flags & 0xffff) | (((g.rnd() < 0.9 ? (i + 1) % n : int(g.rnd, 0x10000)) & 0xffff) << 16));
    if (k === 0 && g.rnd() < 0.7) {
      // Make it look like a blk request header: type in/out/flush/get-id/junk, a small sector.
      store(g, buf, pick(g.rnd, [0, 1, 4, 8, 3, interesting32(g.rnd)]));
      store(g, buf + 8, int(g.rnd, 200));
      store(g, buf + 12, g.rnd() < 0.95 ? 0 : 1);
    }
  }
  publish(g, key, head);
}

/** One random operation of the program. */
function op(g: Gen): void {
  const { rnd } = g;
  const r = rnd();
  if (r < 0.12) return setup(g, pick(rnd, [0, 0, 1, 1, 1, 2, 2, int(rnd, 8)]), pick(rnd, [0, 0, 1]));
  if (r < 0.4) return request(g);
  if (r < 0.55) {
    // Any virtio register of any slot, any width.
    const slot = pick(rnd, [0, 1, 2, 0, 1, 2, int(rnd, 8)]);
    const addr = VIRTIO + slot * 0x1000 + (rnd() < 0.9 ? pick(rnd, VIRTIO_REGS) : int(rnd, 0x1000));
    const width = rnd() < 0.85 ? 4 : pick(rnd, [1, 2] as const);
    return rnd() < 0.7 ? store(g, addr, regValue(rnd), width) : load(g, addr, width);
  }
  if (r < 0.62) {
    // Reset mid-request, or disable/resize a queue that may have requests in flight.
    return disrupt(g, pick(rnd, [0, 1, 2]), int(rnd, 2));
  }
  if (r < 0.7) {
    const addr = UART + (rnd() < 0.9 ? int(rnd, 8) : int(rnd, 0x100));
    const width = rnd() < 0.8 ? 1 : pick(rnd, [2, 4] as const);
    return rnd() < 0.6 ? store(g, addr, int(rnd, 256), width) : load(g, addr, width);
  }
  if (r < 0.76) {
    const addr = CLINT + pick(rnd, CLINT_REGS);
    // A timer deadline near now (mtime is small early on) or far away.
    const value = rnd() < 0.5 ? int(rnd, 5000) : interesting32(rnd);
    return rnd() < 0.7 ? store(g, addr, value, rnd() < 0.9 ? 4 : 1) : load(g, addr);
  }
  if (r < 0.86) {
    const addr = PLIC + (rnd() < 0.85 ? pick(rnd, PLIC_REGS) : 4 * int(rnd, 0x600000 / 4));
    return rnd() < 0.6 ? store(g, addr, regValue(rnd)) : load(g, addr);
  }
  if (r < 0.9) {
    // Interrupts: enable some (the handler only skips instructions, so a storm still makes progress).
    g.a.li(6, pick(rnd, [0, 1 << 11, (1 << 11) | (1 << 7), 1 << 3])).csrrw(0, 0x304, 6);
    g.a.li(6, rnd() < 0.5 ? 8 : 0).csrrw(0, 0x300, 6);
    return;
  }
  if (r < 0.96) {
    // Spin a while so disk completions and host input arrive mid-program.
    const label = `spin${g.a.offset}`;
    g.a.li(28, 1 + int(rnd, 20_000)).label(label).addi(28, 28, -1).bne(28, 0, label);
    return;
  }
  // Scribble over guest memory the devices use (rings and buffers change under them).
  store(g, dataAddr(rnd), interesting32(rnd), pick(rnd, [1, 2, 4] as const));
}

/** A program of `ops` random device operations between a trap-skipping prologue and a finisher exit. */
export function deviceProgram(rnd: Rnd, ops: number): Uint8Array {
  const g: Gen = { a: new Asm(), rnd, queues: new Map() };
  const { a } = g;
  // Any trap (a faulting access, an interrupt) resumes at the next instruction: the program goes on.
  a.la(5, 'handler').csrrw(0, 0x305, 5).j('main');
  a.align(4).label('handler');
  a.csrrs(5, 0x341, 0).addi(5, 5, 4).csrrw(0, 0x341, 5).mret();
  a.label('main');
  for (let i = 0; i < ops; i++) op(g);
  // A last wait, so that requests still in flight complete (or meet whatever the program left behind).
  a.li(28, 200_000).label('drain').addi(28, 28, -1).bne(28, 0, 'drain');
  store(g, FINISHER, 0x5555);
  a.label('end').j('end');
  return a.bytes();
}

let scratch = '';
let pristine = '';
let n = 0;

/** A fresh zeroed disk image for one machine. */
function disk(): string {
  const path = join(scratch, `d${n++}.img`);
  copyFileSync(pristine, path);
  return path;
}

function options(clock: 'virtual' | 'real', path: string): MachineOptions {
  return { memory: DEVICE_MEMORY, clock, devices: { net: true, rng: true, disk: { path } } };
}

const ENDINGS = new Set(['exit', 'trap', 'halted', 'budget', 'stopped']);

/** Runs one generated program; returns the machine (open) and its result. */
async function runProgram(program: Uint8Array, rnd: Rnd, clock: 'virtual' | 'real', record: Uint8Array[] | undefined): Promise<{ m: Machine; r: RunResult; start: Uint8Array }> {
  const m = new Machine(options(clock, disk()));
  m.writeMemory(RAM, program);
  const start = m.snapshot();
  const rec = record ? new Recorder(m, { hashInterval: 100_000 }) : undefined;
  rec?.on('batch', (b) => record!.push(b.slice()));
  // Host input queued before the run: delivered at boundaries the vCPU picks.
  for (let k = int(rnd, 4); k > 0; k--) m.sendFrame(Uint8Array.from({ length: 14 + int(rnd, 1500) }, () => int(rnd, 256)));
  if (rnd() < 0.5) m.input(Uint8Array.from({ length: 1 + int(rnd, 40) }, () => int(rnd, 256)));
  // A scribbled WFI may wait for input or a real-clock timer set minutes ahead: the guest's right, but
  // not worth waiting for here; the run is stopped (and a recording ends there, as any stop does).
  const r = await runWithPatience(m, { maxInstructions: BUDGET }, PATIENCE_MS);
  rec?.finish(r);
  return { m, r, start };
}

export const deviceTarget: FuzzTarget = {
  name: 'device',
  about: 'generated guest programs driving every device register, random descriptor chains, resets and queue changes mid-request',
  setup() {
    scratch = mkdtempSync(join(tmpdir(), 'lockstep-fuzz-device-'));
    pristine = join(scratch, 'pristine.img');
    writeFileSync(pristine, Buffer.alloc(DEVICE_DISK_BYTES));
  },
  teardown() {
    rmSync(scratch, { recursive: true, force: true });
  },
  async iterate(rnd) {
    const program = deviceProgram(rnd, 20 + int(rnd, 120));
    const recorded = rnd() < 0.3 ? ([] as Uint8Array[]) : undefined;
    const { m, r, start } = await runProgram(program, rnd, recorded ? 'real' : 'virtual', recorded);
    const open = [m];
    try {
      // Stopped by the patience timer: a scribbled WFI waiting for input or a far real-clock timer.
      check(ENDINGS.has(r.kind), `the program's run ends in a known way (got ${r.kind})`);
      // Whatever state the devices were left in, it snapshots and restores to the same machine.
      const hash = m.stateHash();
      const again = new Machine(options(recorded ? 'real' : 'virtual', disk()));
      open.push(again);
      again.restore(m.snapshot());
      check(again.stateHash() === hash, 'the end state restores to the same state hash');
      if (recorded) {
        // And the recording replays to that state, verified.
        const rep = new Machine(options('real', disk()));
        open.push(rep);
        rep.restore(start);
        const replayer = new Replayer(rep);
        for (const b of recorded) replayer.feed(b);
        replayer.end();
        const rr = await runWithPatience(rep, { maxInstructions: BUDGET + 1 }, PATIENCE_MS);
        check(rr.kind !== 'divergence', `the recorded run replays (${rr.kind === 'divergence' ? rr.message : ''})`);
        check(rr.replay?.ended === true && rr.replay.finalHash, `the replay consumes the whole log and verifies the final state (${rr.kind})`);
        check(rep.stateHash() === hash, 'the replay reaches the recorded state hash');
      }
    } finally {
      for (const x of open) x.close();
    }
  },
};
