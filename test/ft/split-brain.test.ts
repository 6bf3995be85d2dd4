// Split brain (issue 10 §1): at most one side of a pair is ever live. In one process, with the arbiter
// behind a gate the test controls: a secondary claims only after its drain reached the end of the log
// soundly, a halted side makes no further claim, a promoted secondary keeps its own owner token.
// As processes: two secondaries that are both pid 1 (separate PID namespaces) through a partition.
import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FileArbiter, FtPrimary, FtSecondary, KvClient, Machine } from '../../src/index.js';
import { GatedArbiter } from '../helpers/gated-arbiter.js';
import { until } from '../helpers/cluster.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { exited, freeUdpPort, killAll, KVSERVER, kvConfig, launch, type Proc } from '../helpers/ft-pair.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-splitbrain-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const kv = readFileSync(KVSERVER);
const kvMachine = () => new Machine({ clock: 'real', devices: { net: true } });

/** Waits (bounded) until `cond` holds; a failure tells `story()`, what happened meanwhile. */
async function poll(what: string, cond: () => boolean, story: () => string = () => '', timeoutMs = 30_000): Promise<void> {
  try {
    await until(what, timeoutMs, async () => (cond() ? true : undefined), 10);
  } catch (err) {
    throw new Error(`${(err as Error).message}; meanwhile: ${story()}`);
  }
}

/** The next `name` event of `emitter`, or a failure naming what happened meanwhile after `timeoutMs`. */
function next<T extends unknown[]>(emitter: EventEmitter, name: string, story: () => string, timeoutMs = 30_000): Promise<T> {
  return once(emitter, name, { signal: AbortSignal.timeout(timeoutMs) }).then(
    (args) => args as T,
    () => {
      throw new Error(`no '${name}' within ${timeoutMs} ms; meanwhile: ${story()}`);
    },
  );
}

/**
 * A kvserver pair in this process, its logging channel through a proxy (to cut), each side with its own
 * gate in front of one shared file arbiter.
 */
async function gatedPair(vmId: string) {
  const dir = mkdtempSync(join(tmp, `${vmId}-`));
  const key = randomBytes(32);
  const machine = kvMachine();
  machine.load(kv);
  const pGate = new GatedArbiter(new FileArbiter({ dir }));
  const sGate = new GatedArbiter(new FileArbiter({ dir }));
  // A long failure timeout: the tests cut the channel (both sides see it close at once), and a loaded
  // machine must not fail the pair over on its own before that.
  const timing = { heartbeatMs: 100, timeoutMs: 20_000 };
  const primary = new FtPrimary({ machine, vmId, key, arbiter: pGate, ...timing });
  const addr = await primary.start();
  const proxy = await TcpProxy.start(addr.host, addr.port);
  const secondary = new FtSecondary({ vmId, key, arbiter: sGate, join: { host: '127.0.0.1', port: proxy.port }, createMachine: kvMachine, ...timing });
  // What each side did, for failure messages.
  const seen: string[] = [];
  for (const [side, e] of [['primary', primary as EventEmitter], ['secondary', secondary as EventEmitter]] as const) {
    for (const name of ['warning', 'halted', 'left', 'secondary-lost', 'go-live', 'cloned']) {
      e.on(name, (x: unknown) => seen.push(`${side} ${name}: ${typeof x === 'string' ? x : JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))?.slice(0, 120)}`));
    }
    e.on('promoted', () => seen.push(`${side} promoted`));
  }
  const story = () => seen.slice(-8).join(' | ');
  const cloned = next(primary, 'cloned', story);
  await secondary.start();
  await cloned;
  const dispose = async () => {
    await proxy.close();
    await secondary.primary?.stop();
    await secondary.stop();
    await primary.stop();
    machine.close();
    secondary.machine?.close();
  };
  return { primary, secondary, pGate, sGate, proxy, dispose, story };
}

describe('split brain: the claim paths of one pair (in process)', () => {
  it('a secondary whose drain does not reach the end of the log soundly makes no claim; the live primary keeps the VM', async () => {
    const { primary, secondary, pGate, sGate, proxy, dispose, story } = await gatedPair('drain');
    try {
      pGate.mode = 'hold'; // the primary's claim waits until the secondary has decided
      // The secondary's replay stops short of the log's end (as a divergence would end it).
      const m = secondary.machine!;
      m.stop();
      await poll("the secondary's replay to stop", () => !m.running, story);
      const halted = next<[string]>(secondary, 'halted', story);
      proxy.reset();
      const [reason] = await halted;
      expect(reason).toMatch(/replay ended with stopped while draining/);
      expect(sGate.calls).toEqual([]); // no claim: a win here would have fenced out the live primary
      await poll("the primary's claim", () => pGate.holding === 1, story);
      const lost = next(primary, 'secondary-lost', story);
      pGate.mode = 'pass';
      pGate.release();
      await lost;
      expect(primary.epoch).toBe(2);
      expect(await pGate.current('drain')).toMatchObject({ epoch: 2, owner: primary.owner });
    } finally {
      await dispose();
    }
  }, 60_000);

  it('a secondary halted while it retries an unreachable arbiter makes no further claim; the primary keeps the VM', async () => {
    const { primary, secondary, pGate, sGate, proxy, dispose, story } = await gatedPair('halt');
    try {
      pGate.mode = 'fail';
      sGate.mode = 'fail';
      proxy.reset();
      await poll('the secondary to retry its claim', () => sGate.calls.length >= 2, story);
      await secondary.stop();
      expect(secondary.phase).toBe('left');
      const s0 = sGate.calls.length;
      const p0 = pGate.calls.length;
      // The primary retries on the same capped backoff; four more of its attempts outlast any pause the
      // secondary's loop would take before its next attempt, had it kept going.
      await poll('four more attempts by the primary', () => pGate.calls.length >= p0 + 4, story);
      expect(sGate.calls.length).toBe(s0);
      const lost = next(primary, 'secondary-lost', story);
      sGate.mode = 'pass';
      pGate.mode = 'pass';
      await lost;
      expect(primary.epoch).toBe(2);
      expect(await pGate.current('halt')).toMatchObject({ epoch: 2, owner: primary.owner });
      expect(sGate.calls.length).toBe(s0);
    } finally {
      await dispose();
    }
  }, 60_000);

  it('a primary stopped while it retries an unreachable arbiter makes no further claim; the secondary takes the VM', async () => {
    const { primary, secondary, pGate, sGate, proxy, dispose, story } = await gatedPair('stop');
    try {
      pGate.mode = 'fail';
      sGate.mode = 'fail';
      proxy.reset();
      await poll('the primary to retry its claim', () => pGate.calls.length >= 2, story);
      await primary.stop();
      const p0 = pGate.calls.length;
      const s0 = sGate.calls.length;
      await poll('four more attempts by the secondary', () => sGate.calls.length >= s0 + 4, story);
      expect(pGate.calls.length).toBe(p0);
      const promoted = next<[FtPrimary]>(secondary, 'promoted', story);
      pGate.mode = 'pass';
      sGate.mode = 'pass';
      const [p2] = await promoted;
      expect(p2.epoch).toBe(2);
      expect(await sGate.current('stop')).toMatchObject({ epoch: 2, owner: secondary.owner });
      expect(pGate.calls.length).toBe(p0);
    } finally {
      await dispose();
    }
  }, 60_000);

  it('a secondary that goes live keeps its own owner token as primary; the old primary, reaching the arbiter late, loses and halts', async () => {
    const { primary, secondary, pGate, sGate, proxy, dispose, story } = await gatedPair('promote');
    try {
      pGate.mode = 'fail'; // partitioned from the arbiter too
      const promoted = next<[FtPrimary]>(secondary, 'promoted', story);
      proxy.reset();
      const [p2] = await promoted;
      expect(p2.epoch).toBe(2);
      expect(p2.owner).toBe(secondary.owner);
      expect(p2.owner).not.toBe(primary.owner);
      expect(await sGate.current('promote')).toMatchObject({ epoch: 2, owner: secondary.owner });
      expect(sGate.calls.map((c) => [c.epoch, c.owner])).toEqual([[2, secondary.owner]]);
      const halted = next<[string]>(primary, 'halted', story);
      pGate.mode = 'pass';
      const [why] = await halted;
      expect(why).toContain(`epoch 2 belongs to ${secondary.owner}`);
    } finally {
      await dispose();
    }
  }, 60_000);
});

const unshare = spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true'], { timeout: 10_000 });
const noNs = unshare.status === 0 ? undefined : `unshare --pid cannot run here (${unshare.error?.message ?? unshare.stderr.toString().trim()}); needs root and util-linux`;
if (noNs) console.log(`test/ft/split-brain.test.ts: the PID-namespace pair is skipped: ${noNs}`);
/** Each VM half in a PID namespace of its own, where it is pid 1 (as in a container). */
const NS = ['unshare', '--pid', '--fork', '--kill-child'];

describe('split brain: processes', () => {
  const procs: Proc[] = [];
  afterEach(() => killAll(procs.splice(0)));
  const start = (name: string, args: string[], prefix?: string[]) => {
    const p = launch(name, args, () => {}, prefix ? { prefix } : {});
    procs.push(p);
    return p;
  };
  /** Waits until `p` reported `liveEvent` or halted; says which. */
  const decision = async (p: Proc, liveEvent: string) => {
    await poll(`${p.name} to go live or halt`, () => p.events.some((e) => e.event === liveEvent || e.event === 'halted'), () => `${JSON.stringify(p.events.slice(-3))} ${p.log.slice(-3).join(' / ')}`);
    return p.events.some((e) => e.event === 'halted') ? 'halted' : 'live';
  };

  it.skipIf(noNs !== undefined)(
    'two secondaries in separate PID namespaces (both pid 1) through a partition: exactly one side live, no conflicting acknowledged writes',
    async () => {
      const dir = join(tmp, 'pidns');
      mkdirSync(dir);
      const cfg = await kvConfig(dir, { timeoutMs: 1_000, heartbeatMs: 100 });
      // The second secondary's configuration differs only in its UDP port, so both sides could serve at once.
      const portB = await freeUdpPort();
      const json = JSON.parse(readFileSync(cfg.path, 'utf8')) as { vm: { devices: { net: { hostPort: number } } } };
      json.vm.devices.net.hostPort = portB;
      const pathB = join(dir, 'vm-b.json');
      writeFileSync(pathB, JSON.stringify(json));

      const primary = start('primary', ['primary', cfg.path]);
      const l = await primary.wait('listening');
      const s1 = start('secondary 1', ['secondary', cfg.path, '--join', `127.0.0.1:${String(l.port)}`], NS);
      await primary.wait('status', (e) => e.protected === true);
      const a = new KvClient({ endpoints: [{ host: '127.0.0.1', port: cfg.udpPort }], timeoutMs: 200, retries: 50 });
      expect(await a.set('k', 'epoch-1')).toBe('stored');
      primary.child.kill('SIGKILL');
      expect(Number((await s1.wait('go-live', undefined, 20_000)).epoch)).toBe(2);
      const l1 = await s1.wait('listening', (e) => Number(e.epoch) === 2);
      const proxy = await TcpProxy.start('127.0.0.1', Number(l1.port));
      try {
        const s2 = start('secondary 2', ['secondary', pathB, '--join', `127.0.0.1:${proxy.port}`], NS);
        await s1.wait('cloned', (e) => e.pauseMs !== undefined); // s1, now a primary, cloned s2
        expect(await a.set('k', 'epoch-2')).toBe('stored'); // acknowledged: secondary 2 holds it
        await a.close();

        proxy.partition();
        const outcome = { s1: await decision(s1, 'secondary-lost'), s2: await decision(s2, 'go-live') };
        expect([outcome.s1, outcome.s2].sort(), JSON.stringify(outcome)).toEqual(['halted', 'live']);
        const [live, loser] = outcome.s1 === 'live' ? [s1, s2] : [s2, s1];
        const livePort = live === s1 ? cfg.udpPort : portB;
        expect(await exited(loser)).toBe(76);

        // Both sides were pid 1: the old default owner ids were equal ('secondary@1').
        const record = (epoch: number) => JSON.parse(readFileSync(join(dir, 'arbiter', 'kv-test', `epoch-${epoch}`), 'utf8')) as { owner: string; pid: number };
        const [e2, e3] = [record(2), record(3)];
        expect([e2.pid, e3.pid]).toEqual([1, 1]);
        expect(e2.owner).toMatch(/^secondary@.+\/1#/);
        expect(e3.owner).toMatch(/^secondary@.+\/1#/);
        if (live === s1) expect(e3.owner).toBe(e2.owner);
        else expect(e3.owner).not.toBe(e2.owner);
        const halted = loser.events.find((e) => e.event === 'halted');
        expect(String(halted?.reason)).toContain(e3.owner);

        // The same key written through both sides: only the live one acknowledges, and it holds what was
        // acknowledged before the partition.
        const viaLive = new KvClient({ endpoints: [{ host: '127.0.0.1', port: livePort }], timeoutMs: 200, retries: 50 });
        expect((await viaLive.get('k'))?.value.toString()).toBe('epoch-2');
        const writers = [cfg.udpPort, portB].map((port) => new KvClient({ endpoints: [{ host: '127.0.0.1', port }], timeoutMs: 200, retries: 10 }));
        const writes = await Promise.allSettled(writers.map((c, i) => c.set('k', `via-${i}`)));
        const acked = writes.flatMap((w, i) => (w.status === 'fulfilled' && w.value === 'stored' ? [i] : []));
        expect(acked).toEqual([livePort === cfg.udpPort ? 0 : 1]);
        expect((await viaLive.get('k'))?.value.toString()).toBe(`via-${acked[0]}`);
        for (const c of [viaLive, ...writers]) await c.close();
      } finally {
        await proxy.close();
      }
    },
    120_000,
  );
});
