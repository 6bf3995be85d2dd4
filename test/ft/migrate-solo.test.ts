// Live migration of a VM without FT and without an arbiter (ft.enabled: false, no ft.arbiter, the key
// from --key-file): processes of the built CLI, kvserver under a verifying load, and a guest that counts
// on its console. The target goes live only on the source's GO_LIVE; a SIGKILL at any point leaves at
// most one live copy, and a VM that is down is reported by the side that is left.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { callControl } from '../../src/ft/control-client.js';
import { FtPrimary, FtSecondary, LocalArbiter, Machine } from '../../src/index.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { exited, killAll, kvConfig, launch, processScope, type Proc } from '../helpers/ft-pair.js';
import { Asm } from '../helpers/asm.js';
import { minimalElf } from '../helpers/tiny-elf.js';
import { until } from '../helpers/wait.js';
import { verifyingLoads } from '../helpers/verifying-load.js';

const { tmp, start } = processScope('migrate-solo');
const withStdout: Proc[] = [];
afterEach(() => killAll(withStdout.splice(0)));

/** A config of `dir` with FT off and neither arbiter nor key (kvserver unless `guest`), and a key file. */
async function soloConfig(dir: string, guest?: string): Promise<{ path: string; udpPort: number; keyFile: string; key: Uint8Array }> {
  mkdirSync(dir, { recursive: true });
  const cfg = await kvConfig(dir, { ramMiB: 64 });
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
  writeFileSync(keyFile, key);
  return { path: cfg.path, udpPort: cfg.udpPort, keyFile, key };
}

/** A guest that writes bytes 0, 1, …, 250, 0, 1, … to the UART, one every ~20 000 instructions, forever. */
function countingGuest(): Buffer {
  const a = new Asm();
  a.lui(5, 0x10000); //        t0 = the UART
  a.li(6, 0); //               t1 = the next byte
  a.li(7, 251);
  a.label('loop');
  a.sb(6, 0, 5);
  a.addi(6, 6, 1);
  a.bne(6, 7, 'wait');
  a.li(6, 0);
  a.label('wait');
  a.li(28, 10_000);
  a.label('spin');
  a.addi(28, 28, -1);
  a.bne(28, 0, 'spin');
  a.j('loop');
  const b = a.bytes();
  const words: number[] = [];
  for (let i = 0; i < b.length; i += 4) words.push(b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
  return minimalElf(words);
}

function stdoutOf(p: Proc): { bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  p.child.stdout!.on('data', (c: Buffer) => chunks.push(c));
  return { bytes: () => Buffer.concat(chunks) };
}

const alive = (p: Proc) => p.child.exitCode === null && p.child.signalCode === null;

describe('live migration without FT and without an arbiter (processes)', () => {
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
  // source running on; after GO_LIVE the target is the VM.
  const points = [
    { name: 'the source during the pre-copy', kill: 'source', at: 'target-joined' },
    { name: 'the source once the target is in lockstep', kill: 'source', at: 'target-cloned' },
    { name: 'the target during the pre-copy', kill: 'target', at: 'target-joined' },
    { name: 'the target once it is in lockstep', kill: 'target', at: 'target-cloned' },
    { name: 'the source after GO_LIVE', kill: 'source', at: 'source-migrated' },
  ] as const;
  it(`SIGKILL at points of the hand-over under a verifying load (${points.map((p) => p.name).join('; ')}): never two live copies, and a VM left without one is reported`, async () => {
    const outcomes: string[] = [];
    for (const [i, point] of points.entries()) {
      const cfg = await soloConfig(join(tmp, `kill-${i}`));
      const source = start('source', ['primary', cfg.path, '--key-file', cfg.keyFile, '--control', '127.0.0.1:0']);
      const port = Number((await source.wait('listening')).port);
      const control = String((await source.wait('control')).url);
      const l = verifyingLoads(cfg.udpPort, 80);
      await until('the load to run', () => l.progress() >= 10);
      expect((await callControl(control, cfg.key, 'POST', '/ft/migrate')).status).toBe(200);
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
        await l.verify();
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
      // Killed in lockstep, the source may have sent GO_LIVE already (the hand-over follows at once), but
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

describe('live migration without an arbiter: a partition before GO_LIVE (in process)', () => {
  it("a target cut off from its source after it restored the clone does not go live on the silence (it halts); the source, which never sent GO_LIVE, runs on: one live copy, not two", async () => {
    const key = randomBytes(32);
    const make = () => new Machine({ memory: 16 << 20, clock: 'real' });
    const machine = make();
    machine.load(countingGuest());
    const timing = { heartbeatMs: 50, timeoutMs: 1_000 };
    const primary = new FtPrimary({ machine, vmId: 'solo', key, arbiter: new LocalArbiter(), disabled: true, ...timing });
    const addr = await primary.start();
    const proxy = await TcpProxy.start(addr.host, addr.port);
    const secondary = new FtSecondary({ vmId: 'solo', key, arbiter: new LocalArbiter(), join: { host: '127.0.0.1', port: proxy.port }, createMachine: make, ...timing });
    const seen: string[] = [];
    for (const [side, e] of [['source', primary], ['target', secondary]] as const) {
      for (const name of ['warning', 'halted', 'secondary-lost', 'go-live', 'cloned', 'handed-over']) (e as NodeJS.EventEmitter).on(name, (x: unknown) => seen.push(`${side} ${name}: ${typeof x === 'string' ? x : JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))?.slice(0, 160)}`));
    }
    try {
      primary.migrate();
      // Cut the link the moment the target has restored the clone (before its CONTROL cloned reaches
      // the source): the source never counts it in lockstep, so no GO_LIVE can have left.
      secondary.once('cloned', () => proxy.partition());
      await secondary.start();
      await until('the target to give up on the silent source', () => secondary.phase === 'halted' || secondary.primary !== undefined, { timeoutMs: 60_000 });
      expect(secondary.primary, seen.join(' | ')).toBeUndefined();
      expect(seen.find((x) => x.startsWith('target halted')), seen.join(' | ')).toMatch(/goes live only on the source's GO_LIVE/);
      await until('the source to call the migration off', () => seen.some((x) => x.startsWith('source secondary-lost')), { timeoutMs: 60_000 });
      expect(seen.some((x) => x.startsWith('source handed-over'))).toBe(false);
      expect(primary.status).toEqual({ protected: false, reason: 'disabled' });
      const at = machine.progress;
      await until('the source to run on', () => machine.progress > at);
    } finally {
      await proxy.close();
      await secondary.stop();
      await primary.stop();
      machine.close();
      secondary.machine?.close();
    }
  }, 120_000);
});
