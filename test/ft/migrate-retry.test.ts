// Live migration without an arbiter (a VM with FT off): the hand-over survives a connection lost at the
// switch-over. A proxy between target and source cuts the target's first connection at a chosen frame
// of the source (GO_LIVE, the final state, or a pre-copy sync); the target asks the source again on a new
// connection and goes live only if the source says it handed over. In process (a counting guest, whose
// console must be one unbroken count) and with processes of the built CLI (kvserver under a verifying load).
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { callControl } from '../../src/ft/control-client.js';
import { FtPrimary, FtSecondary, LocalArbiter, Machine, type GoLiveReport } from '../../src/index.js';
import { decodeMessage, MessageType } from '../../src/protocol/messages.js';
import { countingGuest } from '../helpers/counting-guest.js';
import { cuttingProxy } from '../helpers/cutting-proxy.js';
import { exited, killAll, kvConfig, processScope, type Proc } from '../helpers/ft-pair.js';
import { verifyingLoads } from '../helpers/verifying-load.js';
import { until } from '../helpers/wait.js';

const { tmp, start } = processScope('migrate-retry');
const procs: Proc[] = [];
afterEach(() => killAll(procs.splice(0)));

/** Which frame of the source's ends the target's first connection (before the target gets it). */
type CutAt = 'go-live' | 'clone-final' | 'sync';

/** The source's frame `cutAt` names (see test/helpers/cutting-proxy.ts). */
function hits(cutAt: CutAt) {
  return (type: number, payload: Buffer): boolean => {
    if (cutAt === 'go-live') return type === MessageType.GO_LIVE;
    if (cutAt === 'clone-final') return type === MessageType.CLONE_FINAL;
    if (type !== MessageType.CONTROL) return false;
    const m = decodeMessage(type, payload);
    return m.type === 'control' && m.op === 'sync';
  };
}

/** A source and a target in this process over a proxy cutting at `cutAt`, each machine's console kept. */
async function inProcess(cutAt: CutAt, how: 'reset' | 'stall' = 'reset') {
  const key = randomBytes(32);
  const consoles = { source: [] as Buffer[], target: [] as Buffer[] };
  const make = (side: 'source' | 'target') => () => {
    const m = new Machine({ memory: 16 << 20, clock: 'real' });
    m.on('console', (b) => consoles[side].push(Buffer.from(b)));
    return m;
  };
  const machine = make('source')();
  machine.load(countingGuest());
  // A generous timeout: the target must answer the catch-up's syncs within it (the final state can be
  // sent again only to a target that did), also on a loaded machine.
  const timing = { heartbeatMs: 50, timeoutMs: 5_000 };
  const primary = new FtPrimary({ machine, vmId: 'solo', key, arbiter: new LocalArbiter(), disabled: true, ...timing });
  const addr = await primary.start();
  const proxy = await cuttingProxy(addr, { hits: hits(cutAt), how });
  const secondary = new FtSecondary({ vmId: 'solo', key, arbiter: new LocalArbiter(), join: { host: '127.0.0.1', port: proxy.port }, createMachine: make('target'), ...timing });
  const seen: string[] = [];
  for (const [side, e] of [['source', primary], ['target', secondary]] as const) {
    for (const name of ['warning', 'halted', 'secondary-lost', 'go-live', 'cloned', 'handed-over', 'migrated']) {
      (e as NodeJS.EventEmitter).on(name, (x: unknown) => seen.push(`${side} ${name}: ${typeof x === 'string' ? x : JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))?.slice(0, 200)}`));
    }
  }
  const live: GoLiveReport[] = [];
  secondary.on('go-live', (r) => live.push(r));
  const cleanup = async () => {
    proxy.close();
    await secondary.primary?.stop().catch(() => undefined);
    await secondary.stop().catch(() => undefined);
    await primary.stop().catch(() => undefined);
    machine.close();
    secondary.machine?.close();
  };
  return { primary, secondary, machine, proxy, seen, live, consoles, cleanup };
}

/** The count the counting guest printed, first at the source and then at the target, has no gap and no repeat. */
function expectOneCount(consoles: { source: Buffer[]; target: Buffer[] }, story: string): void {
  const before = Buffer.concat(consoles.source);
  const all = Buffer.concat([before, ...consoles.target]);
  const broken = all.findIndex((b, i) => b !== i % 251);
  expect(broken, `the count breaks at byte ${broken} (the source printed ${before.length}): ${story}`).toBe(-1);
}

describe('live migration without an arbiter: the hand-over is asked again (in process)', () => {
  const cases = [
    { cutAt: 'go-live', how: 'reset', what: 'is reset as GO_LIVE leaves the source (it holds the final state but not GO_LIVE)' },
    { cutAt: 'clone-final', how: 'reset', what: 'is reset as the final state leaves the source (it has neither the final state nor GO_LIVE: both are sent again)' },
    { cutAt: 'go-live', how: 'stall', what: 'goes silent as GO_LIVE leaves the source (a cut cable: its failure detector fires)' },
  ] as const;
  for (const { cutAt, how, what } of cases) {
    it(`a target whose connection ${what} asks the source again and goes live; the source, which never resumes, exits once the target confirmed: one copy, one unbroken console`, async () => {
      const t = await inProcess(cutAt, how);
      try {
        t.primary.migrate();
        await t.secondary.start();
        await until('the target to go live (or halt) and the source to halt', () => (t.secondary.primary !== undefined || t.secondary.phase === 'halted') && t.seen.some((x) => x.startsWith('source halted')), { timeoutMs: 120_000 });
        const story = t.seen.join(' | ');
        expect(t.proxy.cut(), story).toBe(true);
        expect(t.proxy.connections(), story).toBeGreaterThanOrEqual(2); // it asked again
        expect(t.live.length, story).toBe(1);
        expect(t.live[0]!.reason, story).toMatch(/asking the source again/);
        expect(t.live[0]!.reemittedFrames, story).toBe(0); // every output up to the hand-over left the source
        // The source answered the question, then the target's confirmation ended its wait: no warning that it did not.
        expect(story).toMatch(new RegExp(`source warning: live migration: the target asked again how the hand-over stands; it is sent ${cutAt === 'go-live' ? 'GO_LIVE' : 'the final state and GO_LIVE'} again`));
        expect(story).not.toMatch(/did not take GO_LIVE/);
        expect(t.seen.some((x) => x.startsWith('source handed-over')), story).toBe(true);
        expect(t.seen.some((x) => x.startsWith('source secondary-lost')), story).toBe(false);
        // Exactly one copy runs: the target's guest moves on, the source's does not.
        const target = t.secondary.machine!;
        const from = target.progress;
        await until('the target to run the guest', () => target.progress > from + 1_000_000n);
        const at = t.machine.progress;
        await until('the target to print on', () => Buffer.concat(t.consoles.target).length > 300);
        expect(t.machine.progress, story).toBe(at);
        expectOneCount(t.consoles, story);
      } finally {
        await t.cleanup();
      }
    }, 180_000);
  }

  it('a target whose connection is reset during the pre-copy asks the source, which has called the migration off: the target halts, the source runs on with FT off and its console unbroken', async () => {
    const t = await inProcess('sync');
    try {
      t.primary.migrate();
      await t.secondary.start();
      await until('the target to halt and the source to take the VM back', () => t.secondary.phase === 'halted' && t.seen.some((x) => x.startsWith('source secondary-lost')), { timeoutMs: 120_000 });
      const story = t.seen.join(' | ');
      expect(t.proxy.cut(), story).toBe(true);
      expect(t.proxy.connections(), story).toBeGreaterThanOrEqual(2); // it asked
      expect(t.seen.find((x) => x.startsWith('target halted')), story).toMatch(/did not hand the VM over/);
      expect(t.seen.some((x) => x.startsWith('target go-live')), story).toBe(false);
      expect(t.secondary.primary, story).toBeUndefined();
      expect(t.seen.some((x) => x.startsWith('source handed-over') || x.startsWith('source halted')), story).toBe(false);
      expect(t.primary.describe()).toBe('Not Protected (disabled)');
      const at = t.machine.progress;
      const printed = Buffer.concat(t.consoles.source).length;
      await until('the source to run on', () => t.machine.progress > at + 1_000_000n && Buffer.concat(t.consoles.source).length > printed + 100);
      expect(Buffer.concat(t.consoles.target).length).toBe(0); // nothing ever left the target
      expectOneCount(t.consoles, story);
    } finally {
      await t.cleanup();
    }
  }, 180_000);
});

/** A kvserver config with FT off and neither arbiter nor key, and a key file (as in migrate-solo.test.ts). */
async function soloConfig(dir: string): Promise<{ path: string; udpPort: number; keyFile: string; key: Uint8Array }> {
  mkdirSync(dir, { recursive: true });
  const cfg = await kvConfig(dir, { ramMiB: 64 });
  const json = JSON.parse(readFileSync(cfg.path, 'utf8')) as { ft: Record<string, unknown> };
  json.ft.enabled = false;
  delete json.ft.arbiter;
  delete json.ft.keyHex;
  writeFileSync(cfg.path, JSON.stringify(json));
  const key = randomBytes(32);
  const keyFile = join(dir, 'migration.key');
  writeFileSync(keyFile, Buffer.concat([key, Buffer.from('\n')])); // the newline is dropped: a key ending in 0x0a stays whole
  return { path: cfg.path, udpPort: cfg.udpPort, keyFile, key };
}

describe('live migration without an arbiter: the hand-over is asked again (processes)', () => {
  it('kvserver under a verifying load: the target\'s connection is reset as GO_LIVE leaves the source; lockstep primary stays until the target asked again and confirmed, then exits 0; the target serves, nothing acknowledged lost, no increment doubled', async () => {
    const cfg = await soloConfig(join(tmp, 'kv'));
    const source = start('source', ['primary', cfg.path, '--key-file', cfg.keyFile, '--control', '127.0.0.1:0']);
    procs.push(source);
    const port = Number((await source.wait('listening')).port);
    const control = String((await source.wait('control')).url);
    const proxy = await cuttingProxy({ host: '127.0.0.1', port }, { hits: hits('go-live') });
    try {
      const l = verifyingLoads(cfg.udpPort, 80);
      await until('the load to run', () => l.progress() >= 20);
      expect((await callControl(control, cfg.key, 'POST', '/ft/migrate')).status).toBe(200);
      const target = start('target', ['secondary', cfg.path, '--key-file', cfg.keyFile, '--join', `127.0.0.1:${proxy.port}`]);
      procs.push(target);
      await until('the target to go live or to end', () => target.events.some((e) => e.event === 'go-live') || target.child.exitCode !== null, { timeoutMs: 120_000 });
      const live = await target.wait('go-live');
      const story = () => JSON.stringify([...source.events, ...target.events].filter((e) => ['go-live', 'halted', 'warning', 'migrated', 'handed-over', 'secondary-lost'].includes(e.event)));
      expect(proxy.cut(), story()).toBe(true);
      expect(String(live.reason), story()).toMatch(/asking the source again/);
      expect(Number(live.reemittedFrames)).toBe(0);
      await source.wait('handed-over');
      expect(await exited(source), story()).toBe(0);
      expect(source.events.some((e) => e.event === 'warning' && /the target asked again how the hand-over stands/.test(String(e.message))), story()).toBe(true);
      expect(source.events.some((e) => e.event === 'warning' && /did not take GO_LIVE/.test(String(e.message))), story()).toBe(false);
      expect(source.events.some((e) => e.event === 'secondary-lost'), story()).toBe(false);
      const at = l.progress();
      await until('the target to serve the load', () => l.progress() > at + 20, { timeoutMs: 60_000 });
      await l.verify();
      expect(target.child.exitCode).toBe(null); // the one live copy
    } finally {
      proxy.close();
    }
  }, 300_000);
});
