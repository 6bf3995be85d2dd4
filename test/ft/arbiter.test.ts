// The split-brain arbiter: both back-ends (file on a directory, etcd on a real etcd) keep one winner
// per (VM, epoch) under races, reject stale claims, persist, and fail closed when storage is gone.
import { spawnSync } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { closeSync, constants, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import { ArbiterError, claimInitialEpoch, type Arbiter, type ClaimDiagnostic } from '../../src/ft/arbiter.js';
import { FILE_ARBITER_MARKER, FileArbiter } from '../../src/ft/arbiter-file.js';
import { EtcdArbiter } from '../../src/ft/arbiter-etcd.js';
import { OptionError } from '../../src/errors.js';
import { etcdAvailability, freePort, startEtcd, type EtcdServer } from '../helpers/etcd.js';
import { REPO, TsChild } from '../cluster/store/ts-child.js';

const HOSTILE_VM_IDS = ['', '.', '..', '../escape', 'a/b', '/abs', 'a\\b', 'nul\0byte', 'new\nline', '-leading-dash', 'x'.repeat(129), ' space'];

async function expectCode(p: Promise<unknown>, code: string): Promise<ArbiterError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ArbiterError);
  expect((err as ArbiterError).code).toBe(code);
  return err as ArbiterError;
}

/** The behaviour both back-ends share, given a factory of independent arbiter instances. */
function sharedContract(make: () => Arbiter, vm: () => string): void {
  it('the initial epoch goes to the first starter; a second starter loses and learns the holder', async () => {
    const a = make();
    const b = make();
    const v = vm();
    expect(await a.current(v)).toBeNull();
    const first = await claimInitialEpoch(a, v, 'host-a:1');
    expect(first).toMatchObject({ won: true, reason: 'claimed', epoch: 1, holder: { epoch: 1, owner: 'host-a:1' } });
    const second = await claimInitialEpoch(b, v, 'host-b:2');
    expect(second).toMatchObject({ won: false, reason: 'taken', epoch: 1, holder: { epoch: 1, owner: 'host-a:1' } });
    expect(await b.current(v)).toMatchObject({ vmId: v, epoch: 1, owner: 'host-a:1' });
    await Promise.all([a.close(), b.close()]);
  });

  it('claims at or below the highest claimed epoch lose; a repeated claim by the same owner is won again', async () => {
    const a = make();
    const v = vm();
    for (const [epoch, owner] of [[1, 'p'], [2, 's'], [3, 'p']] as const) {
      expect((await a.claim(v, epoch, owner)).won).toBe(true);
    }
    expect(await a.claim(v, 2, 'p')).toMatchObject({ won: false, reason: 'stale', holder: { epoch: 3, owner: 'p' } });
    expect(await a.claim(v, 1, 'new')).toMatchObject({ won: false, reason: 'stale', holder: { epoch: 3 } });
    expect(await a.claim(v, 3, 's')).toMatchObject({ won: false, reason: 'taken', holder: { epoch: 3, owner: 'p' } });
    expect(await a.claim(v, 3, 'p')).toMatchObject({ won: true, reason: 'reclaimed', holder: { epoch: 3, owner: 'p' } });
    // Epochs may skip (a claim of e + 1 where e was never seen by this arbiter), and then supersede.
    expect(await a.claim(v, 7, 's')).toMatchObject({ won: true, reason: 'claimed' });
    expect(await a.claim(v, 4, 'p')).toMatchObject({ won: false, reason: 'stale', holder: { epoch: 7, owner: 's' } });
    expect(await a.current(v)).toMatchObject({ epoch: 7, owner: 's' });
    await a.close();
  });

  it('a new arbiter instance sees the claims of earlier ones', async () => {
    const v = vm();
    const a = make();
    await a.claim(v, 1, 'p');
    await a.claim(v, 2, 's');
    await a.close();
    const b = make();
    expect(await b.current(v)).toMatchObject({ epoch: 2, owner: 's' });
    expect((await b.claim(v, 2, 'p')).won).toBe(false);
    await b.close();
  });

  it('rejects hostile VM ids, bad epochs and owners before touching storage', async () => {
    const a = make();
    for (const id of HOSTILE_VM_IDS) {
      await expect(a.claim(id, 1, 'p'), JSON.stringify(id)).rejects.toBeInstanceOf(OptionError);
      await expect(a.current(id), JSON.stringify(id)).rejects.toBeInstanceOf(OptionError);
    }
    for (const epoch of [0, -1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1]) {
      await expect(a.claim(vm(), epoch, 'p')).rejects.toMatchObject({ code: 'ERR_LOCKSTEP_OPTION_INVALID', field: 'epoch' });
    }
    for (const owner of ['', 'a\nb', 'x'.repeat(257)]) {
      await expect(a.claim(vm(), 1, owner)).rejects.toMatchObject({ code: 'ERR_LOCKSTEP_OPTION_INVALID', field: 'ownerId' });
    }
    await a.close();
  });

  it('a closed arbiter refuses calls with ERR_LOCKSTEP_ARBITER_CLOSED', async () => {
    const a = make();
    await a.close();
    await expectCode(a.claim(vm(), 1, 'p'), 'ERR_LOCKSTEP_ARBITER_CLOSED');
  });

  it('of concurrent claimants of the same epoch exactly one wins, 200 rounds in a row', async () => {
    const arbiters = [make(), make(), make()];
    const v = vm();
    for (let round = 1; round <= 200; round++) {
      const results = await Promise.all(arbiters.map((a, i) => a.claim(v, round, `c${i}`)));
      const winners = results.filter((r) => r.won);
      expect(winners, `round ${round}`).toHaveLength(1);
      for (const r of results) expect(r.holder).toMatchObject({ epoch: round, owner: winners[0]!.holder.owner });
    }
    await Promise.all(arbiters.map((a) => a.close()));
  });
}

describe('FileArbiter', () => {
  let root: string;
  let n = 0;
  /** Writer ends of FIFOs, closed at the end: the EOF that frees a thread-pool thread reading one. */
  const fifoWriters: number[] = [];
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'lockstep-arbiter-'));
  });
  afterAll(async () => {
    for (const fd of fifoWriters.splice(0)) closeSync(fd);
    await rm(root, { recursive: true, force: true });
  });

  describe('contract', () => {
    let dir: string;
    beforeEach(async () => {
      dir = join(root, `c${n++}`);
      await mkdir(dir);
    });
    sharedContract(() => new FileArbiter({ dir }), () => `vm-${n}-${Math.random().toString(36).slice(2, 8)}`);
  });

  it('keeps one claim file per epoch, holding the owner as JSON', async () => {
    const dir = join(root, `f${n++}`);
    await mkdir(dir);
    const a = new FileArbiter({ dir });
    await a.claim('kv1', 1, 'primary@1');
    await a.claim('kv1', 2, 'secondary@2');
    expect((await readdir(join(dir, 'kv1'))).sort()).toEqual(['epoch-1', 'epoch-2']);
  });

  it('publishes every claim outcome on the lockstep:arbiter:claim channel', async () => {
    const dir = join(root, `d${n++}`);
    await mkdir(dir);
    const seen: ClaimDiagnostic[] = [];
    const listener = (m: unknown) => seen.push(m as ClaimDiagnostic);
    subscribe('lockstep:arbiter:claim', listener);
    try {
      const a = new FileArbiter({ dir });
      await a.claim('kv1', 1, 'p');
      await a.claim('kv1', 1, 's');
      await new FileArbiter({ dir: join(dir, 'missing') }).claim('kv1', 2, 's').catch(() => undefined);
    } finally {
      unsubscribe('lockstep:arbiter:claim', listener);
    }
    expect(seen.map((d) => [d.kind, d.vmId, d.epoch, d.ownerId, d.result?.won, d.error?.code])).toEqual([
      ['file', 'kv1', 1, 'p', true, undefined],
      ['file', 'kv1', 1, 's', false, undefined],
      ['file', 'kv1', 2, 's', undefined, 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE'],
    ]);
  });

  it('a claim file left empty by a claimer that died before writing still holds its epoch', async () => {
    const dir = join(root, `f${n++}`);
    await mkdir(join(dir, 'kv1'), { recursive: true });
    await writeFile(join(dir, 'kv1', 'epoch-4'), '');
    const a = new FileArbiter({ dir });
    expect(await a.claim('kv1', 4, 'x')).toMatchObject({ won: false, reason: 'taken', holder: { epoch: 4, owner: null } });
    expect(await a.claim('kv1', 5, 'x')).toMatchObject({ won: true });
  });

  it('a missing directory, a file in its place, or a missing marker when one is required: ERR_LOCKSTEP_ARBITER_UNAVAILABLE', async () => {
    await expectCode(new FileArbiter({ dir: join(root, 'does-not-exist') }).claim('kv1', 1, 'p'), 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE');
    await expectCode(new FileArbiter({ dir: join(root, 'does-not-exist') }).current('kv1'), 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE');
    const file = join(root, `plain-file-${n++}`);
    await writeFile(file, 'x');
    await expectCode(new FileArbiter({ dir: file }).claim('kv1', 1, 'p'), 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE');

    const unmounted = join(root, `mountpoint-${n++}`);
    await mkdir(unmounted);
    const strict = new FileArbiter({ dir: unmounted, requireMarker: true });
    const err = await expectCode(strict.claim('kv1', 1, 'p'), 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE');
    expect(err.message).toContain(FILE_ARBITER_MARKER);
    expect(await readdir(unmounted)).toEqual([]); // nothing was written to the "local disk"
    await FileArbiter.prepare(unmounted);
    expect((await strict.claim('kv1', 1, 'p')).won).toBe(true);
  });

  it.skipIf(process.getuid?.() === 0)('a read-only directory: ERR_LOCKSTEP_ARBITER_DENIED', async () => {
    const dir = join(root, `ro${n++}`);
    await mkdir(dir);
    await chmod(dir, 0o555);
    await expectCode(new FileArbiter({ dir }).claim('kv1', 1, 'p'), 'ERR_LOCKSTEP_ARBITER_DENIED');
  });

  it('a storage call that hangs rejects with ERR_LOCKSTEP_ARBITER_UNAVAILABLE at the time limit', async () => {
    // A FIFO in place of a claim file: reading it blocks until a writer opens it, like a hung NFS server.
    const dir = join(root, `hang${n++}`);
    await mkdir(join(dir, 'kv1'), { recursive: true });
    const fifo = join(dir, 'kv1', 'epoch-1');
    const made = spawnSync('mkfifo', [fifo]);
    if (made.status !== 0) {
      console.warn('skipped the hung-storage case: mkfifo is not available');
      return;
    }
    const a = new FileArbiter({ dir, timeoutMs: 5_000 });
    try {
      const err = await expectCode(a.current('kv1', { timeoutMs: 200 }), 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE');
      expect(err.message).toContain('within 200 ms');
    } finally {
      // Unblock the thread-pool thread reading the FIFO, whether it has opened it yet or not (on a loaded
      // machine it may not have): a write-only open would block this thread until it did — for ever if
      // it never does. O_RDWR never blocks on Linux; while it is open, the reader's open succeeds and its
      // read waits; closing it (afterAll) gives the read its EOF.
      fifoWriters.push(openSync(fifo, constants.O_RDWR));
    }
  });

  it('two processes racing for each epoch: exactly one wins, 200 rounds', async () => {
    const dir = join(root, `race${n++}`);
    await mkdir(dir);
    const script = join(root, `contender-${n++}.mjs`);
    await writeFile(
      script,
      `const { FileArbiter } = await import(${JSON.stringify(pathToFileURL(join(REPO, 'src/ft/arbiter-file.ts')).href)});
const [dir, owner] = process.argv.slice(2);
const arbiter = new FileArbiter({ dir });
process.on('message', async (m) => {
  if (m.cmd === 'exit') process.exit(0);
  try {
    const r = await arbiter.claim(m.vmId, m.epoch, owner);
    process.send({ event: 'result', round: m.round, won: r.won, reason: r.reason, holder: r.holder.owner });
  } catch (e) {
    process.send({ event: 'error', message: String(e && e.stack || e) });
  }
});
process.send({ event: 'ready' });
`,
    );
    const children = [new TsChild(script, [dir, 'contender-a']), new TsChild(script, [dir, 'contender-b'])];
    try {
      await Promise.all(children.map((c) => c.next((m) => m.event === 'ready', 20_000)));
      const tally = { 'contender-a': 0, 'contender-b': 0 } as Record<string, number>;
      for (let round = 1; round <= 200; round++) {
        // Alternate the VM between a single long-lived one (epochs 1..100 in sequence) and fresh ones.
        const vmId = round % 2 === 0 ? 'shared-vm' : `vm-${round}`;
        const epoch = round % 2 === 0 ? round / 2 : 1;
        for (const c of children) c.send({ cmd: 'claim', round, vmId, epoch });
        const results = await Promise.all(children.map((c) => c.next((m) => m.event === 'result' && m.round === round, 10_000)));
        const winners = results.filter((r) => r.won === true);
        expect(winners, `round ${round}: ${JSON.stringify(results)}`).toHaveLength(1);
        const winner = winners[0]!.holder as string;
        tally[winner]!++;
        for (const r of results) expect(r.holder).toBe(winner);
      }
      // Not an assertion on fairness, only a sanity check that both processes really competed.
      expect(tally['contender-a']! + tally['contender-b']!).toBe(200);
      const files = await readdir(join(dir, 'shared-vm'));
      expect(files).toHaveLength(100);
    } finally {
      for (const c of children) c.send({ cmd: 'exit' });
      await Promise.all(children.map((c) => Promise.race([c.exited, new Promise((r) => setTimeout(r, 5_000))]).then(() => c.kill())));
    }
  });
});

const etcd = etcdAvailability();
if (!etcd.ok) console.warn(`skipping the etcd arbiter tests: ${etcd.why}`);

describe.skipIf(!etcd.ok)('EtcdArbiter (real etcd)', () => {
  let server: EtcdServer;
  let n = 0;
  beforeAll(async () => {
    server = await startEtcd();
  });
  afterAll(async () => {
    await server?.dispose();
  });

  describe('contract', () => {
    sharedContract(
      () => new EtcdArbiter({ endpoints: [server.endpoint], timeoutMs: 5_000 }),
      () => `vm-${n++}`,
    );
  });

  it('keeps the epoch record under <prefix>arbiter/<vmId>/epoch', async () => {
    const a = new EtcdArbiter({ endpoints: [server.endpoint], prefix: 'test-prefix/' });
    await a.claim('kv1', 1, 'primary@1');
    const client = new Etcd3({ hosts: server.endpoint });
    try {
      expect(a.keyOf('kv1')).toBe('test-prefix/arbiter/kv1/epoch');
      expect(JSON.parse((await client.get('test-prefix/arbiter/kv1/epoch').string())!)).toMatchObject({ vmId: 'kv1', epoch: 1, owner: 'primary@1' });
      // Something else writing under the prefix is reported, never overwritten.
      await client.put('test-prefix/arbiter/kv2/epoch').value('not json');
      await expectCode(a.claim('kv2', 1, 'p'), 'ERR_LOCKSTEP_ARBITER_CORRUPT');
    } finally {
      client.close();
      await a.close();
    }
  });

  it('survives an etcd restart: claims are still there for a new client', async () => {
    const a = new EtcdArbiter({ endpoints: [server.endpoint] });
    await a.claim('persist', 1, 'p');
    await a.claim('persist', 2, 's');
    await a.close();
    await server.restart();
    const b = new EtcdArbiter({ endpoints: [server.endpoint] });
    expect(await b.current('persist')).toMatchObject({ epoch: 2, owner: 's' });
    expect(await b.claim('persist', 2, 'p')).toMatchObject({ won: false, reason: 'taken' });
    await b.close();
  });

  it('while etcd is down a claim rejects with ERR_LOCKSTEP_ARBITER_UNAVAILABLE within its time limit', async () => {
    const a = new EtcdArbiter({ endpoints: [server.endpoint], timeoutMs: 1_000 });
    await a.claim('down', 1, 'p');
    await server.stop();
    try {
      const err = await expectCode(a.claim('down', 2, 'p'), 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE');
      expect(err.vmId).toBe('down');
    } finally {
      await server.restart();
    }
    // Back up: the claim goes through (and no hidden write happened while it was down).
    expect(await a.claim('down', 2, 's')).toMatchObject({ won: true, reason: 'claimed' });
    await a.close();
  });

  it('an endpoint where nothing listens: ERR_LOCKSTEP_ARBITER_UNAVAILABLE', async () => {
    const a = new EtcdArbiter({ endpoints: [`http://127.0.0.1:${await freePort()}`], timeoutMs: 500 });
    await expectCode(a.claim('kv1', 1, 'p'), 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE');
    await expectCode(a.current('kv1'), 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE');
    await a.close();
  });

  it('rejects bad connection options with the field named', () => {
    expect(() => new EtcdArbiter({ endpoints: [] })).toThrow(OptionError);
    expect(() => new EtcdArbiter({ endpoints: ['127.0.0.1:2379'] })).toThrow(/endpoints\[0\]/);
    expect(() => new EtcdArbiter({ endpoints: [server.endpoint], timeoutMs: 0 })).toThrow(/timeoutMs/);
  });
});
