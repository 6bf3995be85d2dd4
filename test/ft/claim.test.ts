// claimEpoch, the one claim path of both halves of a pair, against both arbiter back-ends (a directory,
// a real etcd): retries with one token until the arbiter answers, "reclaimed" only for that token, and
// an abort that stops it at once and never lets a late win through. Also the owner tokens themselves.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArbiterError, type Arbiter } from '../../src/ft/arbiter.js';
import { FileArbiter } from '../../src/ft/arbiter-file.js';
import { EtcdArbiter } from '../../src/ft/arbiter-etcd.js';
import { claimEpoch, newOwnerId } from '../../src/ft/claim.js';
import { FtPrimary, FtSecondary, Machine } from '../../src/index.js';
import { OptionError } from '../../src/errors.js';
import { etcdAvailability, startEtcd, type EtcdServer } from '../helpers/etcd.js';
import { GatedArbiter } from '../helpers/gated-arbiter.js';
import { until } from '../helpers/cluster.js';
import { root } from '../helpers/ft-pair.js';

const TOKEN = /^(primary|secondary)@[A-Za-z0-9._-]+\/\d+#([0-9a-f]{32}|noboot)\.[0-9a-f]{32}$/;

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    (v) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(v)}`);
    },
    (e: unknown) => e,
  );
}

function expectCode(err: unknown, code: string): void {
  expect(err).toBeInstanceOf(ArbiterError);
  expect((err as ArbiterError).code).toBe(code);
}

/** claimEpoch's behaviour, the same on every back-end; `make` gives independent arbiters on one storage. */
function claimContract(make: () => Arbiter, vm: () => string): void {
  it('retries an unreachable arbiter with the same token and wins once it answers', async () => {
    const gate = new GatedArbiter(make());
    const v = vm();
    const owner = newOwnerId('secondary');
    gate.mode = 'fail';
    const retries: number[] = [];
    const claim = claimEpoch(gate, v, 1, owner, { initialDelayMs: 1, maxDelayMs: 4, onRetry: (err, attempt) => {
      expect(err.code).toBe('ERR_LOCKSTEP_ARBITER_UNAVAILABLE');
      retries.push(attempt);
      if (attempt === 3) gate.mode = 'pass';
    } });
    expect(await claim).toMatchObject({ won: true, reason: 'claimed', holder: { epoch: 1, owner } });
    expect(retries).toEqual([1, 2, 3]);
    expect(gate.calls.map((c) => c.owner)).toEqual([owner, owner, owner, owner]);
    expect(gate.calls.every((c) => c.hadSignal === false)).toBe(true);
    await gate.close();
  });

  it('an attempt that reached the storage but lost its answer is retried and recognised as the same token (reclaimed)', async () => {
    const gate = new GatedArbiter(make());
    const v = vm();
    const owner = newOwnerId('primary');
    gate.mode = 'lose-answer';
    const r = await claimEpoch(gate, v, 1, owner, { initialDelayMs: 1, onRetry: () => (gate.mode = 'pass') });
    expect(r).toMatchObject({ won: true, reason: 'reclaimed', holder: { epoch: 1, owner } });
    expect(gate.calls).toHaveLength(2);
    expect(await gate.current(v)).toMatchObject({ epoch: 1, owner });
    await gate.close();
  });

  it('reclaims only with the exact token: another incarnation on the same host and pid loses with the holder named', async () => {
    const a = make();
    const v = vm();
    const first = newOwnerId('secondary');
    const second = newOwnerId('secondary');
    expect(first).not.toBe(second);
    expect(await claimEpoch(a, v, 3, first)).toMatchObject({ won: true, reason: 'claimed' });
    // Same host, same pid, same boot: before tokens carried random bits these were both `secondary@<pid>`.
    expect(await claimEpoch(a, v, 3, second)).toMatchObject({ won: false, reason: 'taken', holder: { epoch: 3, owner: first } });
    // A prefix or an extension of the holder's token is another token.
    for (const near of [first.slice(0, first.indexOf('#')), `${first}x`, first.toUpperCase()]) {
      expect(await a.claim(v, 3, near), near).toMatchObject({ won: false, reason: 'taken' });
    }
    expect(await claimEpoch(a, v, 3, first)).toMatchObject({ won: true, reason: 'reclaimed' });
    // A loss is an answer, not a failure: it is not retried.
    const gate = new GatedArbiter(a);
    expect((await claimEpoch(gate, v, 2, second)).reason).toBe('stale');
    expect(gate.calls).toHaveLength(1);
    await a.close();
  });

  it('abort stops the retries at once: no attempt after the signal, not won, nothing claimed', async () => {
    const gate = new GatedArbiter(make());
    const v = vm();
    gate.mode = 'fail';
    const halt = new AbortController();
    // A long pause between attempts: the abort must cut it short, not wait it out.
    const claim = claimEpoch(gate, v, 1, newOwnerId('secondary'), {
      signal: halt.signal,
      initialDelayMs: 60_000,
      maxDelayMs: 60_000,
      onRetry: (_err, attempt) => {
        if (attempt === 1) halt.abort(new Error('halted: diverged'));
      },
    });
    const err = await rejection(claim);
    expectCode(err, 'ERR_LOCKSTEP_ARBITER_ABORTED');
    expect((err as Error).message).toMatch(/halted: diverged.*not won/);
    expect(gate.calls).toHaveLength(1);
    expect(gate.calls[0]!.hadSignal).toBe(true);
    gate.mode = 'pass';
    expect(await gate.current(v)).toBeNull();
    // An already aborted signal makes no attempt at all.
    expectCode(await rejection(claimEpoch(gate, v, 1, newOwnerId('primary'), { signal: halt.signal })), 'ERR_LOCKSTEP_ARBITER_ABORTED');
    expect(gate.calls).toHaveLength(1);
    await gate.close();
  });

  it('no win after abort: an attempt already sent that lands after the signal is reported as not won; its token can still settle it', async () => {
    const gate = new GatedArbiter(make());
    const v = vm();
    const owner = newOwnerId('secondary');
    gate.mode = 'hold';
    const halt = new AbortController();
    const claim = claimEpoch(gate, v, 1, owner, { signal: halt.signal });
    await until('the attempt to be on the wire', 10_000, async () => (gate.holding === 1 ? true : undefined), 5);
    halt.abort(new Error('stopped'));
    // Rejected while the attempt is still in flight: the caller is not kept waiting on storage.
    expectCode(await rejection(claim), 'ERR_LOCKSTEP_ARBITER_ABORTED');
    expect(gate.holding).toBe(1);
    gate.release();
    expect(await gate.landed[0]).toMatchObject({ won: true, reason: 'claimed' }); // the storage took it anyway
    // The outcome was unknown to the caller; the same token settles it, any other loses.
    gate.mode = 'pass';
    expect(await claimEpoch(gate, v, 1, owner)).toMatchObject({ won: true, reason: 'reclaimed' });
    expect(await claimEpoch(gate, v, 1, newOwnerId('primary'))).toMatchObject({ won: false, reason: 'taken', holder: { owner } });
    await gate.close();
  });

  it('the signal reaches the back-end: a claim given up before it starts takes nothing', async () => {
    const a = make();
    const v = vm();
    expectCode(await rejection(a.claim(v, 1, 'p', { signal: AbortSignal.abort() })), 'ERR_LOCKSTEP_ARBITER_ABORTED');
    expect(await a.current(v)).toBeNull();
    expect(await a.claim(v, 1, 'q')).toMatchObject({ won: true, reason: 'claimed' });
    await a.close();
  });

  it('gives up after maxAttempts with the last error; a closed arbiter is not retried', async () => {
    const gate = new GatedArbiter(make());
    gate.mode = 'fail';
    expectCode(await rejection(claimEpoch(gate, vm(), 1, newOwnerId('primary'), { maxAttempts: 3, initialDelayMs: 1 })), 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE');
    expect(gate.calls).toHaveLength(3);
    gate.mode = 'pass';
    await gate.close();
    expectCode(await rejection(claimEpoch(gate, vm(), 1, newOwnerId('primary'))), 'ERR_LOCKSTEP_ARBITER_CLOSED');
    expect(gate.calls).toHaveLength(4);
  });

  it('bad arguments are refused before any attempt', async () => {
    const gate = new GatedArbiter(make());
    await expect(claimEpoch(gate, vm(), 1, '')).rejects.toBeInstanceOf(OptionError);
    await expect(claimEpoch(gate, vm(), 1, 'p', { maxAttempts: 0 })).rejects.toMatchObject({ field: 'maxAttempts' });
    await expect(claimEpoch(gate, vm(), 1, 'p', { initialDelayMs: 10, maxDelayMs: 5 })).rejects.toMatchObject({ field: 'maxDelayMs' });
    expect(gate.calls).toHaveLength(0);
    await gate.close();
  });
}

describe('owner tokens', () => {
  it('name the role, host and pid for people and carry the boot id and 128 random bits', () => {
    const t = newOwnerId('secondary');
    expect(t).toMatch(TOKEN);
    expect(t.startsWith('secondary@')).toBe(true);
    expect(t).toContain(`/${process.pid}#`);
    let boot: string | undefined;
    try {
      boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().replace(/-/g, '');
    } catch {
      boot = undefined; // not Linux: the token says noboot
    }
    if (boot !== undefined) expect(t).toContain(`#${boot}.`);
    const many = new Set(Array.from({ length: 1000 }, () => newOwnerId('secondary')));
    expect(many.size).toBe(1000);
    expect(() => newOwnerId('bad role')).toThrow(OptionError);
  });

  it('every FtPrimary and FtSecondary instance has its own token by default, and a given one is kept (and checked)', () => {
    const key = randomBytes(32);
    const arbiter = new FileArbiter({ dir: tmpdir() });
    const secondary = (owner?: string) =>
      new FtSecondary({ vmId: 'kv', key, arbiter, join: { host: '127.0.0.1', port: 1 }, createMachine: () => new Machine(), ...(owner ? { owner } : {}) });
    const machines = [new Machine(), new Machine()];
    try {
      const owners = [secondary().owner, secondary().owner, ...machines.map((machine) => new FtPrimary({ machine, vmId: 'kv', key, arbiter }).owner)];
      for (const o of owners) expect(o).toMatch(TOKEN);
      expect(new Set(owners).size).toBe(4);
      expect(secondary('ops-chosen').owner).toBe('ops-chosen');
      expect(() => secondary('two\nlines')).toThrow(OptionError);
    } finally {
      for (const m of machines) m.close();
    }
  });

  const unshare = spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true'], { timeout: 10_000 });
  const noNs = unshare.status === 0 ? undefined : `unshare --pid cannot run here (${unshare.error?.message ?? unshare.stderr.toString().trim()}); needs root and util-linux`;
  if (noNs) console.log(`test/ft/claim.test.ts: the PID-namespace case is skipped: ${noNs}`);
  it.skipIf(noNs !== undefined)('two processes that are both pid 1 (separate PID namespaces) get different tokens, and only one of them wins an epoch', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lockstep-pidns-'));
    try {
      const script = `const { FileArbiter, FtSecondary } = await import(${JSON.stringify(join(root, 'dist', 'index.js'))});
const arbiter = new FileArbiter({ dir: process.argv[1] });
const s = new FtSecondary({ vmId: 'kv', key: Buffer.alloc(32, 1), arbiter, join: { host: '127.0.0.1', port: 1 }, createMachine: () => { throw new Error('unused'); } });
const r = await arbiter.claim('kv', 3, s.owner);
console.log(JSON.stringify({ pid: process.pid, owner: s.owner, won: r.won, reason: r.reason }));`;
      const run = () => {
        const r = spawnSync('unshare', ['--pid', '--fork', '--kill-child', process.execPath, '--input-type=module', '-e', script, dir], { encoding: 'utf8', timeout: 30_000 });
        expect(r.status, r.stderr).toBe(0);
        return JSON.parse(r.stdout.trim()) as { pid: number; owner: string; won: boolean; reason: string };
      };
      const a = run();
      const b = run();
      expect([a.pid, b.pid]).toEqual([1, 1]);
      expect(a.owner).toContain('/1#');
      expect(a.owner).not.toBe(b.owner);
      expect([a.won, a.reason]).toEqual([true, 'claimed']);
      expect([b.won, b.reason]).toEqual([false, 'taken']); // was 'reclaimed' when both were `secondary@1`
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('claimEpoch on the file arbiter', () => {
  let root0: string;
  let n = 0;
  beforeAll(async () => {
    root0 = await mkdtemp(join(tmpdir(), 'lockstep-claim-'));
    await mkdir(join(root0, 'arbiter'));
  });
  afterAll(async () => {
    await rm(root0, { recursive: true, force: true });
  });
  claimContract(() => new FileArbiter({ dir: join(root0, 'arbiter') }), () => `vm-${n++}`);
});

const etcd = etcdAvailability();
if (!etcd.ok) console.warn(`skipping claimEpoch on etcd: ${etcd.why}`);

describe.skipIf(!etcd.ok)('claimEpoch on the etcd arbiter (real etcd)', () => {
  let server: EtcdServer;
  let n = 0;
  beforeAll(async () => {
    server = await startEtcd();
  });
  afterAll(async () => {
    await server?.dispose();
  });
  claimContract(() => new EtcdArbiter({ endpoints: [server.endpoint], timeoutMs: 5_000 }), () => `vm-${n++}`);
});
