// Separate disks (DESIGN §3): each half of a pair has its own identical image. The log then carries no
// read data; the replaying side reads and writes its own image at the logged completion points, ends in
// the same state, and leaves its image identical to the primary's.
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileArbiter, FtPrimary, FtSecondary, LoadGenerator, Machine, Recorder, Replayer, attachVmNetwork, type GoLiveReport } from '../../src/index.js';
import { replicationPort } from '../../src/machine/replication-port.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-sepdisk-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const guest = readFileSync(new URL('../../guest/bin/disk.elf', import.meta.url));

async function record(image: string, mode: 'shared' | 'separate') {
  const m = new Machine({ clock: 'real', devices: { disk: { path: image, mode } } });
  m.load(guest);
  const start = m.snapshot();
  const batches: Uint8Array[] = [];
  const rec = new Recorder(m);
  rec.on('batch', (b) => batches.push(b.slice()));
  const out: string[] = [];
  m.on('console', (c) => out.push(Buffer.from(c).toString()));
  const r = await m.run();
  rec.finish(r);
  const hash = m.stateHash();
  m.close();
  return { start, batches, hash, out: out.join(''), bytes: batches.reduce((n, b) => n + b.length, 0) };
}

describe('separate disks', () => {
  it('a replay on its own copy of the image reaches the same state and leaves the copy equal to the primary image', async () => {
    const original = join(tmp, 'orig.img');
    const seed = Buffer.alloc(1 << 20);
    for (let i = 0; i < seed.length; i += 4096) seed[i] = i >> 12; // not all zeros: reads must find these bytes
    writeFileSync(original, seed);
    const a = join(tmp, 'a.img');
    const b = join(tmp, 'b.img');
    copyFileSync(original, a);
    copyFileSync(original, b);
    const p = await record(a, 'separate');
    expect(p.out).toContain('4 sectors written and verified');
    // The same run on a shared disk logs the read data; separate disks do not.
    const s = new Machine({ clock: 'real', devices: { disk: { path: b, mode: 'separate' } } });
    s.restore(p.start);
    const rep = new Replayer(s);
    for (const x of p.batches) rep.feed(x);
    rep.end();
    const r = await s.run();
    expect(r.kind).toBe('exit'); // the guest exits where the recording said it did
    expect(s.stateHash()).toBe(p.hash);
    s.close();
    expect(readFileSync(b).equals(readFileSync(a))).toBe(true);
    expect(readFileSync(b).equals(seed)).toBe(false); // the replay really wrote its own image
  });

  it('the log of a separate-disk run carries no read data (smaller than the shared-disk log of the same run)', async () => {
    const x = join(tmp, 'x.img');
    const y = join(tmp, 'y.img');
    writeFileSync(x, Buffer.alloc(1 << 20));
    writeFileSync(y, Buffer.alloc(1 << 20));
    const sep = await record(x, 'separate');
    const sh = await record(y, 'shared');
    expect(sep.bytes).toBeLessThan(sh.bytes - 1024); // the guest reads back 4 sectors (2 KiB)
  });

  it('replaying a shared-disk log on a separate disk is reported as a divergence, not applied', async () => {
    const y = join(tmp, 'z.img');
    writeFileSync(y, Buffer.alloc(1 << 20));
    const sh = await record(y, 'shared');
    const w = join(tmp, 'w.img');
    writeFileSync(w, Buffer.alloc(1 << 20));
    const s = new Machine({ clock: 'real', devices: { disk: { path: w, mode: 'separate' } } });
    s.restore(sh.start);
    const rep = new Replayer(s);
    for (const x of sh.batches) rep.feed(x);
    rep.end();
    const r = await s.run();
    expect(r.kind).toBe('divergence');
    expect(r.kind === 'divergence' && r.message).toMatch(/carries read data/);
    s.close();
  });

  it('writes to a separate image are not outputs: with the output gate closed and nothing acknowledged, they reach the image and the guest finishes', async () => {
    // VMware FT's non-shared disks: each half's image is part of its own state, and the other half
    // performs the same writes at the logged completions. (Held, as a shared image's writes are, the
    // guest would wait for its writes forever here.)
    const image = join(tmp, 'gated.img');
    const seed = Buffer.alloc(1 << 20, 0x5a);
    writeFileSync(image, seed);
    const m = new Machine({ clock: 'real', devices: { disk: { path: image, mode: 'separate' } } });
    try {
      m.load(guest);
      const rec = new Recorder(m);
      const port = replicationPort(m);
      port.closeGate();
      const shown: Uint8Array[] = [];
      m.on('console', (c) => shown.push(c));
      const r = await m.run();
      expect(r.kind).toBe('exit');
      expect(readFileSync(image).equals(seed)).toBe(false); // the guest's sectors are on the image
      expect(shown).toEqual([]); // its console output is an output: still held
      expect(port.held()).toBeGreaterThan(0);
      rec.finish(r);
    } finally {
      m.close();
    }
  });
  it("a replaying secondary owes its flushes and syncs its own image once, at go-live (not once per flush of the guest)", async () => {
    // kvserver's write-ahead log: every set is a write and a flush. The primary syncs per flush; the
    // secondary's image serves only its replay until it goes live (a lost secondary is cloned anew).
    const key = randomBytes(32);
    const dir = mkdtempSync(join(tmp, 'owed-'));
    const a = join(dir, 'a.img');
    const b = join(dir, 'b.img');
    writeFileSync(a, Buffer.alloc(4 << 20));
    writeFileSync(b, Buffer.alloc(4 << 20)); // blank: the clone fills it
    const kvserver = readFileSync(new URL('../../guest/bin/kvserver.elf', import.meta.url));
    const machine = new Machine({ clock: 'real', devices: { net: true, disk: { path: a, mode: 'separate' } } });
    machine.load(kvserver);
    const primary = new FtPrimary({ machine, vmId: 'owed', key, arbiter: new FileArbiter({ dir }), timeoutMs: 20_000, separateDisk: a });
    const addr = await primary.start();
    const secondary = new FtSecondary({
      vmId: 'owed',
      key,
      arbiter: new FileArbiter({ dir }),
      join: addr,
      timeoutMs: 20_000,
      separateDisk: b,
      createMachine: () => new Machine({ clock: 'real', devices: { net: true, disk: { path: b, mode: 'separate' } } }),
    });
    const net = await attachVmNetwork(machine, { id: 'owed', guest: '', memory: machine.memory, clock: 'real', net: { backend: 'udp', hostPort: 0, guestPort: 11211 } });
    try {
      const cloned = new Promise((r) => primary.once('cloned', r));
      await secondary.start();
      await cloned;
      const before = replicationPort(machine).diskSyncs();
      const result = await new LoadGenerator({ endpoints: [{ host: '127.0.0.1', port: net.port! }], clients: 4, setRatio: 1, keys: 20, requests: 200, timeoutMs: 2000, retries: 20 }).run();
      expect(result.acknowledged).toBe(200);
      expect(result.violationCount).toBe(0);
      const primarySyncs = replicationPort(machine).diskSyncs() - before;
      expect(primarySyncs).toBeGreaterThanOrEqual(200); // a flush per set, each a sync
      // Every set's reply left behind an acknowledgement, so the secondary holds their log; the replay
      // has performed their writes (the go-live below replays what is left) and synced nothing.
      const replica = secondary.machine!;
      expect(replicationPort(replica).diskSyncs()).toBe(0);
      const live = new Promise<GoLiveReport>((r) => secondary.once('go-live', r));
      await primary.testFailover();
      const report = await live;
      expect(report.stateHash).toBe(machine.stateHash());
      // One sync at go-live stands for every flush the replay took.
      expect(replicationPort(replica).diskSyncs()).toBe(1);
      expect(readFileSync(b).equals(readFileSync(a))).toBe(true);
    } finally {
      net.close();
      await secondary.primary?.stop();
      await secondary.stop();
      await primary.stop();
      machine.close();
      secondary.machine?.close();
    }
  });
});
