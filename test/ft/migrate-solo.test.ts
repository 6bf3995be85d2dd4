// Live migration of a VM without FT and without an arbiter (ft.enabled: false, no ft.arbiter, the key
// from --key-file): processes of the built CLI, kvserver under a verifying load, and a guest that counts
// on its console. The target goes live only on the source's GO_LIVE; a SIGKILL at any point leaves at
// most one live copy, and a VM that is down is reported by the side that is left.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cliEntry } from '../../src/cluster/agent/cli-process.js';
import { callControl } from '../../src/ft/control-client.js';
import { FileArbiter, FtPrimary, FtSecondary, LocalArbiter, Machine } from '../../src/index.js';
import { cuttingProxy } from '../helpers/cutting-proxy.js';
import { MessageType } from '../../src/protocol/messages.js';
import { exited, killAll, kvConfig, launch, processScope, type Proc } from '../helpers/ft-pair.js';
import { countingGuest } from '../helpers/counting-guest.js';
import { until } from '../helpers/wait.js';
import { verifyingLoads } from '../helpers/verifying-load.js';

const { tmp, start } = processScope('migrate-solo');
const withStdout: Proc[] = [];
afterEach(() => killAll(withStdout.splice(0)));

/**
 * A config of `dir` with FT off and neither arbiter nor key (kvserver unless `guest`), and a key file.
 * `timeoutMs` is the failure detector's (kvConfig's default: 5 s); the hand-over's retry window, which a
 * target that lost its source before GO_LIVE and a source whose GO_LIVE was not confirmed wait out, is
 * five of them.
 */
async function soloConfig(dir: string, guest?: string, timeoutMs?: number): Promise<{ path: string; udpPort: number; keyFile: string; key: Uint8Array }> {
  mkdirSync(dir, { recursive: true });
  const cfg = await kvConfig(dir, { ramMiB: 64, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
  const json = JSON.parse(readFileSync(cfg.path, 'utf8')) as { vm: Record<string, unknown>; ft: Record<string, unknown> };
  json.ft.enabled = false;
  delete json.ft.arbiter;
  delete json.ft.keyHex;
  if (guest) {
    json.vm.guest = guest;
    delete json.vm.devices;
  }
  writeFileSync(cfg.path, JSON.stringify(json));
  const key = randomBytes(32);
  const keyFile = join(dir, 'migration.key');
  writeFileSync(keyFile, Buffer.concat([key, Buffer.from('\n')])); // the newline is dropped, nothing else: a key ending in 0x0a or 0x0d stays whole
  return { path: cfg.path, udpPort: cfg.udpPort, keyFile, key };
}

function stdoutOf(p: Proc): { bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  p.child.stdout!.on('data', (c: Buffer) => chunks.push(c));
  return { bytes: () => Buffer.concat(chunks) };
}

const alive = (p: Proc) => p.child.exitCode === null && p.child.signalCode === null;

describe('live migration without FT and without an arbiter (processes)', () => {
  it('a VM with FT off and neither an arbiter nor a key is refused by lockstep primary with exit 64, naming the key it needs; a --key-file too short is refused the same way', async () => {
    const cfg = await soloConfig(join(tmp, 'nokey'));
    const noKey = spawnSync(process.execPath, [cliEntry(), 'primary', cfg.path], { encoding: 'utf8', timeout: 60_000 });
    expect(noKey.status).toBe(64);
    expect(noKey.stderr).toMatch(/a VM with FT off needs a key \(ft\.keyFile, or --key-file\)/);
    const short = join(tmp, 'nokey', 'short.key');
    writeFileSync(short, randomBytes(8));
    const tooShort = spawnSync(process.execPath, [cliEntry(), 'primary', cfg.path, '--key-file', short], { encoding: 'utf8', timeout: 60_000 });
    expect(tooShort.status).toBe(64);
    expect(tooShort.stderr).toMatch(/--key-file: .*at least 16 are needed/);
  }, 120_000);

  it('kvserver with FT off and no ft.arbiter moves to a target under a verifying load: nothing acknowledged lost, nothing applied twice, FT stays off and cannot be turned on', async () => {
    const cfg = await soloConfig(join(tmp, 'kv'));
    const source = start('source', ['primary', cfg.path, '--key-file', cfg.keyFile, '--control', '127.0.0.1:0']);
    const port = Number((await source.wait('listening')).port);
    const control = String((await source.wait('control')).url);
    expect(String((await callControl(control, cfg.key, 'GET', '/ft/status')).body.status)).toBe('Not Protected (disabled)');
    const refused = await callControl(control, cfg.key, 'POST', '/ft/enable');
    expect(refused.status).toBe(409); // no arbiter: nothing could fence a secondary that went live on a silence
    expect(String(refused.body.error)).toMatch(/without an arbiter/);
    const l = verifyingLoads(cfg.udpPort, 80);
    await until('the load to run', () => l.progress() >= 20);
    expect((await callControl(control, cfg.key, 'POST', '/ft/migrate')).status).toBe(200);
    const target = start('target', ['secondary', cfg.path, '--key-file', cfg.keyFile, '--join', `127.0.0.1:${port}`, '--control', '127.0.0.1:0']);
    await source.wait('migrated');
    expect(await exited(source)).toBe(0);
    const live = await target.wait('go-live');
    expect(String(live.reason)).toMatch(/live migration/);
    expect(Number(live.reemittedFrames)).toBe(0); // everything was released before GO_LIVE: nothing to repeat
    const targetControl = String((await target.wait('control')).url);
    expect(String((await callControl(targetControl, cfg.key, 'GET', '/ft/status')).body.status)).toBe('Not Protected (disabled)');
    expect((await callControl(targetControl, cfg.key, 'POST', '/ft/enable')).status).toBe(409);
    const at = l.progress();
    await until('the target to serve the load', () => l.progress() > at + 20);
    await l.verify();
  }, 300_000);

  it('the console of a counting guest is neither lost nor repeated across the hand-over: what the source printed and then the target printed is one unbroken count', async () => {
    const dir = join(tmp, 'console');
    mkdirSync(dir, { recursive: true });
    const elf = join(dir, 'count.elf');
    writeFileSync(elf, countingGuest());
    const cfg = await soloConfig(dir, elf);
    const source = launch('source', ['primary', cfg.path, '--key-file', cfg.keyFile, '--control', '127.0.0.1:0', '--console', '--events'], () => {}, { stdout: true });
    withStdout.push(source);
    const before = stdoutOf(source);
    const port = Number((await source.wait('listening')).port);
    const control = String((await source.wait('control')).url);
    await until('the guest to print', () => before.bytes().length > 1000);
    expect((await callControl(control, cfg.key, 'POST', '/ft/migrate')).status).toBe(200);
    const target = launch('target', ['secondary', cfg.path, '--key-file', cfg.keyFile, '--join', `127.0.0.1:${port}`, '--console', '--events'], () => {}, { stdout: true });
    withStdout.push(target);
    const after = stdoutOf(target);
    await source.wait('migrated');
    expect(await exited(source)).toBe(0);
    await target.wait('go-live');
    await until('the target to print', () => after.bytes().length > 1000);
    const all = Buffer.concat([before.bytes(), after.bytes()]);
    const broken = all.findIndex((b, i) => b !== i % 251);
    expect(broken, `the count breaks at byte ${broken} (the source printed ${before.bytes().length})`).toBe(-1);
  }, 300_000);

  // Each point: who is killed, and when. A kill of the source before its GO_LIVE leaves the target
  // halted (the VM is down, and the target says so); a kill of the target before GO_LIVE leaves the
  // source running on; after GO_LIVE the target is the VM, and a target killed then leaves it down (the
  // source, which never resumes after GO_LIVE, says it handed over).
  const points = [
    { name: 'the source during the pre-copy', kill: 'source', at: 'target-joined' },
    { name: 'the source once the target restored the final state', kill: 'source', at: 'target-cloned' },
    { name: 'the target during the pre-copy', kill: 'target', at: 'target-joined' },
    { name: 'the target once it restored the final state', kill: 'target', at: 'target-cloned' },
    { name: 'the source after GO_LIVE', kill: 'source', at: 'source-migrated' },
  ] as const;
  it(`SIGKILL at points of the hand-over under a verifying load (${points.map((p) => p.name).join('; ')}): never two live copies, and a VM left without one is reported`, async () => {
    const outcomes: string[] = [];
    for (const [i, point] of points.entries()) {
      // A 2 s failure detector: the survivors that wait out the retry window (a target that lost its
      // source before GO_LIVE, a source whose GO_LIVE the target never confirmed) wait 10 s, not 25 s.
      const cfg = await soloConfig(join(tmp, `kill-${i}`), undefined, 2_000);
      const source = start('source', ['primary', cfg.path, '--key-file', cfg.keyFile, '--control', '127.0.0.1:0']);
      const port = Number((await source.wait('listening')).port);
      const control = String((await source.wait('control')).url);
      const l = verifyingLoads(cfg.udpPort, 80);
      await until('the load to run', () => l.progress() >= 10);
      const armed = await callControl(control, cfg.key, 'POST', '/ft/migrate');
      expect(armed.status, `${point.name}: ${JSON.stringify(armed.body)}`).toBe(200);
      const target = start('target', ['secondary', cfg.path, '--key-file', cfg.keyFile, '--join', `127.0.0.1:${port}`]);
      if (point.at === 'target-joined') await target.wait('joined');
      else if (point.at === 'target-cloned') await target.wait('cloned');
      else await source.wait('migrated');
      const victim = point.kill === 'source' ? source : target;
      const survivor = point.kill === 'source' ? target : source;
      victim.child.kill('SIGKILL');
      await exited(victim);
      // The survivor either serves the VM (the source ran on, or the target had GO_LIVE) or ends saying why not.
      await until(`${survivor.name} to serve or to end`, () => !alive(survivor) || survivor.events.some((e) => e.event === 'go-live' || e.event === 'secondary-lost'), { timeoutMs: 60_000 });
      const story = JSON.stringify(survivor.events.filter((e) => ['go-live', 'halted', 'secondary-lost', 'migrated', 'handed-over'].includes(e.event)));
      const liveHere = alive(survivor) && (survivor === source || survivor.events.some((e) => e.event === 'go-live'));
      if (liveHere) {
        const at = l.progress();
        await until(`${survivor.name} to serve the load`, () => l.progress() > at + 10, { timeoutMs: 60_000 });
        await l.verify().catch((err: unknown) => {
          throw new Error(`killed ${point.name}, ${survivor.name} live (${story}): ${(err as Error).message}`);
        });
        outcomes.push(`${point.name}: ${survivor.name} live`);
      } else {
        await l.stop();
        if (survivor === target) {
          // The source died before its GO_LIVE reached the target: the target says the VM is not live here.
          expect(await exited(target), story).toBe(76);
          expect(target.events.some((e) => e.event === 'go-live'), story).toBe(false);
          expect(String(target.events.find((e) => e.event === 'halted')?.reason), story).toMatch(/goes live only on the source's GO_LIVE|before the clone finished/);
        } else {
          // The target died after GO_LIVE left the source: the source handed over and exited, and says so.
          expect(source.events.some((e) => e.event === 'handed-over'), story).toBe(true);
          expect(await exited(source), story).toBe(0);
        }
        outcomes.push(`${point.name}: down, reported by ${survivor.name}`);
      }
      // The victim is dead; at most the survivor is live: never two.
      expect(alive(victim)).toBe(false);
      if (point.at === 'target-joined') expect(outcomes.at(-1)).toBe(point.kill === 'source' ? `${point.name}: down, reported by target` : `${point.name}: source live`);
      // GO_LIVE follows the final state at once, so it has usually left when the target says it restored;
      // a target that did not get it never went live.
      if (point.kill === 'source' && point.at === 'target-cloned' && !target.events.some((e) => e.event === 'go-live')) {
        expect(String(target.events.find((e) => e.event === 'halted')?.reason)).toMatch(/goes live only on the source's GO_LIVE/);
      }
      if (point.at === 'source-migrated') expect(outcomes.at(-1)).toBe(`${point.name}: target live`);
      killAll([source, target]);
      await Promise.all([exited(source), exited(target)]);
    }
    console.log(`migrate-solo kill points: ${outcomes.join('; ')}`);
    expect(outcomes.length).toBe(points.length);
  }, 900_000);
});

describe('live migration without an arbiter: GO_LIVE lost in a partition (in process)', () => {
  it('a target that holds the final state but never got GO_LIVE does not go live on the silence: it asks the source again through the partition for the retry window and halts, saying why; the source, which sent GO_LIVE, never resumes: no copy is live, and both say so', async () => {
    const key = randomBytes(32);
    const make = () => new Machine({ memory: 16 << 20, clock: 'real' });
    const machine = make();
    machine.load(countingGuest());
    const timing = { heartbeatMs: 50, timeoutMs: 1_000 };
    const primary = new FtPrimary({ machine, vmId: 'solo', key, arbiter: new LocalArbiter(), disabled: true, ...timing });
    const addr = await primary.start();
    // GO_LIVE lost in a partition: the source's frames pass one by one until GO_LIVE, then nothing crosses
    // any connection (a cut cable that stays cut).
    const proxy = await cuttingProxy(addr, { hits: (type) => type === MessageType.GO_LIVE, how: 'stall', later: 'blocked' });
    const secondary = new FtSecondary({ vmId: 'solo', key, arbiter: new LocalArbiter(), join: { host: '127.0.0.1', port: proxy.port }, createMachine: make, ...timing });
    const seen: string[] = [];
    for (const [side, e] of [['source', primary], ['target', secondary]] as const) {
      for (const name of ['warning', 'halted', 'secondary-lost', 'go-live', 'cloned', 'handed-over']) (e as NodeJS.EventEmitter).on(name, (x: unknown) => seen.push(`${side} ${name}: ${typeof x === 'string' ? x : JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))?.slice(0, 160)}`));
    }
    try {
      primary.migrate();
      await secondary.start();
      await until('both sides to settle', () => seen.some((x) => x.startsWith('source halted')) && (secondary.phase === 'halted' || secondary.primary !== undefined), { timeoutMs: 60_000 });
      const story = seen.join(' | ');
      expect(proxy.cut(), story).toBe(true);
      expect(seen.some((x) => x.startsWith('target cloned')), story).toBe(true); // it held the final state
      expect(secondary.primary, story).toBeUndefined();
      expect(seen.some((x) => x.startsWith('target go-live')), story).toBe(false);
      // It asked the source again for the retry window, through the partition, and got no answer.
      expect(seen.some((x) => x.startsWith('target warning') && /asking it how the hand-over stands/.test(x)), story).toBe(true);
      expect(seen.find((x) => x.startsWith('target halted')), story).toMatch(/asking it again for \d+ ms brought no answer.*goes live only on the source's GO_LIVE/);
      expect(seen.some((x) => x.startsWith('source warning') && /did not take GO_LIVE within \d+ ms \(neither on its connection nor by asking again/.test(x)), story).toBe(true);
      expect(seen.some((x) => x.startsWith('source handed-over')), story).toBe(true);
      const at = machine.progress;
      await new Promise((r) => setTimeout(r, 50));
      expect(machine.progress).toBe(at); // the source never runs the guest again
    } finally {
      proxy.close();
      await secondary.stop();
      await primary.stop();
      machine.close();
      secondary.machine?.close();
    }
  }, 120_000);
});

describe('live migration without FT: a key made for the migration (in process)', () => {
  it('a source armed with a fresh key takes a target with that key and refuses one with the key it was started with', async () => {
    const startKey = randomBytes(32);
    const migrationKey = randomBytes(32);
    const make = () => new Machine({ memory: 16 << 20, clock: 'real' });
    const machine = make();
    machine.load(countingGuest());
    const timing = { heartbeatMs: 50, timeoutMs: 2_000 };
    const primary = new FtPrimary({ machine, vmId: 'solo', key: startKey, arbiter: new LocalArbiter(), disabled: true, ...timing });
    const addr = await primary.start();
    const rejected: string[] = [];
    primary.on('rejected', (reason: string) => rejected.push(reason));
    const target = (key: Uint8Array) => new FtSecondary({ vmId: 'solo', key, arbiter: new LocalArbiter(), join: addr, createMachine: make, ...timing });
    const stale = target(startKey);
    const fresh = target(migrationKey);
    try {
      primary.migrate({ key: migrationKey });
      // The start key no longer opens the channel: the handshake fails, nothing is cloned.
      await expect(stale.start()).rejects.toThrow();
      await until('the source to refuse the stale key', () => rejected.length > 0);
      expect(stale.machine).toBeUndefined();
      await fresh.start();
      await until('the target to go live', () => fresh.primary !== undefined, { timeoutMs: 60_000 });
      await until('the target to run the guest', () => (fresh.machine?.progress ?? 0n) > 0n);
    } finally {
      await stale.stop().catch(() => undefined);
      await fresh.primary?.stop().catch(() => undefined);
      await fresh.stop().catch(() => undefined);
      await primary.stop().catch(() => undefined);
      machine.close();
      fresh.machine?.close();
    }
  }, 120_000);

  it('refuses a key for one migration from a primary that has an arbiter (its secondaries join with the pair key)', async () => {
    const machine = new Machine({ memory: 16 << 20, clock: 'real' });
    machine.load(countingGuest());
    const dir = join(tmp, 'arbiter-key');
    mkdirSync(dir, { recursive: true });
    const primary = new FtPrimary({ machine, vmId: 'ftvm', key: randomBytes(32), arbiter: new FileArbiter({ dir }), heartbeatMs: 50, timeoutMs: 2_000 });
    try {
      await primary.start();
      expect(() => primary.migrate({ key: randomBytes(32) })).toThrow(/a key for one migration is only for a VM with FT off and no arbiter/);
    } finally {
      await primary.stop().catch(() => undefined);
      machine.close();
    }
  }, 60_000);
});
