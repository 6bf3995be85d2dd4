// An FT-off live migration with a shared arbiter claims the next epoch in the target's name while the
// catch-up runs, before the guest is held, so that the target's go-live makes no fsynced claim on the
// switch-over's critical path (docs/fault-tolerance.md, "Live migration"). In process, with a file
// arbiter: the claim's order and owner, the source's epoch check meanwhile, and a migration called off
// after the claim (the source keeps the VM at the epoch after the target's).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import { FileArbiter, FtPrimary, FtSecondary, Machine } from '../../src/index.js';
import type { ArbiterCallOptions, ClaimResult, EpochHolder } from '../../src/ft/arbiter.js';
import { countingGuest } from '../helpers/counting-guest.js';
import { GatedArbiter } from '../helpers/gated-arbiter.js';
import { until } from '../helpers/wait.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The source's arbiter: counts epoch reads (its epoch checks) and tells when a claim is made. */
class WatchedArbiter extends GatedArbiter {
  reads = 0;
  onClaim: (epoch: number, owner: string) => void = () => {};
  override claim(vmId: string, epoch: number, owner: string, options?: ArbiterCallOptions): Promise<ClaimResult> {
    this.onClaim(epoch, owner);
    return super.claim(vmId, epoch, owner, options);
  }
  override current(vmId: string, options?: ArbiterCallOptions): Promise<EpochHolder | null> {
    this.reads++;
    return super.current(vmId, options);
  }
}

/** A TCP proxy from the target to the source whose target-to-source direction can be held (buffered, not dropped). */
async function holdingProxy(to: { host: string; port: number }) {
  let held: Buffer[] | undefined;
  const upstream: Socket[] = [];
  const sockets: Socket[] = [];
  const server = createServer((fromTarget) => {
    const toSource = connect(to.port, to.host);
    sockets.push(fromTarget, toSource);
    upstream.push(toSource);
    toSource.on('data', (d) => fromTarget.write(d));
    fromTarget.on('data', (d: Buffer) => (held ? held.push(d) : toSource.write(d)));
    fromTarget.on('close', () => toSource.end());
    toSource.on('close', () => fromTarget.end());
    for (const s of [fromTarget, toSource]) s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    hold: () => (held ??= []),
    release: () => {
      const b = held ?? [];
      held = undefined;
      for (const d of b) upstream[0]?.write(d);
    },
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** The outcome of every claim published on lockstep:arbiter:claim while `body` runs. */
async function watchClaims<T>(body: (claims: Array<{ epoch: number; ownerId: string; reason?: string; won?: boolean }>) => Promise<T>): Promise<T> {
  const claims: Array<{ epoch: number; ownerId: string; reason?: string; won?: boolean }> = [];
  const on = (m: unknown) => {
    const d = m as { epoch: number; ownerId: string; result?: ClaimResult };
    claims.push({ epoch: d.epoch, ownerId: d.ownerId, reason: d.result?.reason, won: d.result?.won });
  };
  subscribe('lockstep:arbiter:claim', on);
  try {
    return await body(claims);
  } finally {
    unsubscribe('lockstep:arbiter:claim', on);
  }
}

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-migrate-claim-'));
  dirs.push(dir);
  const key = randomBytes(32);
  const make = () => new Machine({ memory: 16 << 20, clock: 'real' });
  const machine = make();
  machine.load(countingGuest());
  const arbiter = new WatchedArbiter(new FileArbiter({ dir }));
  // A long failure timeout: the test holds the target's messages for a while; a short epoch check.
  const timing = { heartbeatMs: 50, timeoutMs: 30_000 };
  const primary = new FtPrimary({ machine, vmId: 'vm', key, arbiter, disabled: true, epochCheckMs: 5, ...timing });
  return { dir, key, make, machine, arbiter, primary, timing };
}

describe('an FT-off live migration claims the target\'s epoch before the pause (in process, file arbiter)', () => {
  it("the source claims epoch 2 in the target's name before the guest is held, its epoch checks meanwhile leave it running, and the target's own claim at its go-live is a reclaim", async () => {
    const { dir, key, make, machine, arbiter, primary, timing } = setup();
    const addr = await primary.start();
    const proxy = await holdingProxy(addr);
    const target = new FtSecondary({ vmId: 'vm', key, arbiter: new FileArbiter({ dir }), join: { host: '127.0.0.1', port: proxy.port }, listen: { host: '127.0.0.1', port: 0 }, createMachine: make, ...timing });
    let claimedAt: bigint | undefined;
    let halted: string | undefined;
    primary.on('halted', (why) => (halted = why));
    // The claim in the target's name is made before the catch-up's first round trip: hold the target's
    // answers from there, so the source waits in the catch-up, unpaused, holding nothing, while the
    // claim lands and its epoch checks see epoch 2 held by the target.
    arbiter.onClaim = (epoch, owner) => {
      if (epoch === 2 && owner === target.owner) {
        claimedAt = machine.progress;
        proxy.hold();
      }
    };
    try {
      await watchClaims(async (claims) => {
        primary.migrate();
        await target.start();
        await until('the claim in the target\'s name to land', () => claims.some((c) => c.epoch === 2 && c.ownerId === target.owner), { timeoutMs: 60_000 });
        expect(claims.find((c) => c.epoch === 2)).toMatchObject({ ownerId: target.owner, reason: 'claimed', won: true });
        const reads = arbiter.reads;
        await until('three epoch checks after the claim', () => arbiter.reads >= reads + 3, { timeoutMs: 60_000 });
        const at = machine.progress;
        await until('the guest to run on at the source', () => machine.progress > at, { timeoutMs: 60_000 });
        expect(halted).toBeUndefined();
        expect(primary.epoch).toBe(1);
        expect(claimedAt).toBeDefined();
        proxy.release();
        const live = new Promise<number>((r) => target.once('go-live', (g) => r(g.epoch)));
        expect(await live).toBe(2);
        await until('the source to hand over', () => halted !== undefined, { timeoutMs: 60_000 });
        expect(halted).toMatch(/handed over/);
        // The target's own claim of epoch 2 came after the source's and found it its own.
        const mine = claims.filter((c) => c.epoch === 2);
        expect(mine.map((c) => c.reason)).toEqual(['claimed', 'reclaimed']);
        expect(mine.every((c) => c.ownerId === target.owner && c.won === true)).toBe(true);
      });
    } finally {
      proxy.close();
      await target.primary?.stop();
      await target.stop();
      await primary.stop();
      machine.close();
      target.machine?.close();
    }
  }, 120_000);

  it('a target lost after the claim in its name: the migration is off, the source keeps the VM at epoch 3 (above the target\'s) and runs on, FT still off', async () => {
    const { dir, key, make, machine, arbiter, primary, timing } = setup();
    await primary.start();
    const addr = primary.address!;
    const target = new FtSecondary({ vmId: 'vm', key, arbiter: new FileArbiter({ dir }), join: addr, listen: { host: '127.0.0.1', port: 0 }, createMachine: make, ...timing });
    // The claim in the target's name waits at the gate; everything after it goes through.
    arbiter.onClaim = (epoch, owner) => {
      if (epoch === 2 && owner === target.owner) queueMicrotask(() => (arbiter.mode = 'pass'));
    };
    arbiter.mode = 'hold';
    const warnings: string[] = [];
    primary.on('warning', (w) => warnings.push(w));
    let halted: string | undefined;
    primary.on('halted', (why) => (halted = why));
    try {
      primary.migrate();
      await target.start();
      await until('the claim in the target\'s name to be made', () => arbiter.holding === 1, { timeoutMs: 60_000 });
      await target.stop(); // lost before GO_LIVE: it never goes live
      await until('the source to lose the target', () => warnings.some((w) => /secondary lost/.test(w)), { timeoutMs: 60_000 });
      await until('the source to win the epoch above the target\'s', () => primary.epoch === 3, { timeoutMs: 60_000 });
      arbiter.release(); // the claim in the target's name lands now, below the source's epoch: it lost
      await Promise.all(arbiter.landed);
      const reads = arbiter.reads;
      await until('three epoch checks after it', () => arbiter.reads >= reads + 3, { timeoutMs: 60_000 });
      const at = machine.progress;
      await until('the guest to run on at the source', () => machine.progress > at, { timeoutMs: 60_000 });
      expect(halted).toBeUndefined();
      expect(primary.status).toMatchObject({ protected: false, reason: 'disabled' });
      expect(primary.epoch).toBe(3);
      expect(target.primary).toBeUndefined();
      expect((await new FileArbiter({ dir }).current('vm'))?.owner).toBe(primary.owner);
    } finally {
      await target.stop();
      await primary.stop();
      machine.close();
      target.machine?.close();
    }
  }, 120_000);
  it("the target makes its host side ready (beforeLive) while its go-live claim is out: the guest does not run there and nothing leaves until the claim is won", async () => {
    const { dir, key, make, machine, primary, timing } = setup();
    const addr = await primary.start();
    const targetArbiter = new GatedArbiter(new FileArbiter({ dir }));
    targetArbiter.mode = 'hold'; // the target claims only at its go-live
    let prepared: { holding: number; progress: bigint } | undefined;
    let consoleBytes = 0;
    let sourceHalted = false;
    primary.on('halted', () => (sourceHalted = true));
    const target = new FtSecondary({
      vmId: 'vm',
      key,
      arbiter: targetArbiter,
      join: addr,
      listen: { host: '127.0.0.1', port: 0 },
      createMachine: (meta) => {
        const m = make();
        m.on('console', (b) => (consoleBytes += b.length));
        void meta;
        return m;
      },
      beforeLive: (m) => {
        prepared = { holding: targetArbiter.holding, progress: m.progress };
      },
      ...timing,
    });
    try {
      primary.migrate();
      await target.start();
      await until('the target to prepare while its claim is held', () => prepared !== undefined && targetArbiter.holding === 1, { timeoutMs: 60_000 });
      expect(prepared!.holding).toBe(1);
      const m = target.machine!;
      const at = m.progress;
      expect(at).toBe(prepared!.progress);
      // The source is gone by now (it handed over); the target stands still until its claim lands.
      await until('the source to hand over', () => sourceHalted, { timeoutMs: 60_000 });
      expect(m.progress).toBe(at);
      expect(consoleBytes).toBe(0);
      expect(target.primary).toBeUndefined();
      const live = new Promise<number>((r) => target.once('go-live', (g) => r(g.epoch)));
      targetArbiter.release();
      expect(await live).toBe(2);
      await until('the guest to run at the target', () => m.progress > at, { timeoutMs: 60_000 });
    } finally {
      await target.primary?.stop();
      await target.stop();
      await primary.stop();
      machine.close();
      target.machine?.close();
    }
  }, 120_000);
});
