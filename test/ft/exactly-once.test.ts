// Exactly once through failover: 40 clients increment their own counters (each attempt resent after
// 50 ms without an answer, the same datagram) while the primary is killed with SIGKILL again and again,
// a new secondary joining after each failover. Every answer is checked against its counter as it
// comes, and every counter at the end: no increment applied twice, none lost. Over the `udp` back-end
// (processes on this host) and over `tap` (two hosts and a client in network namespaces; root only).
// LOCKSTEP_EO_KILLS and LOCKSTEP_EO_CLIENTS make it a longer run (bench/README reports one).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { LoadGenerator, type CounterSummary, type LoadOptions } from '../../src/index.js';
import { exited, killAll, kvConfig, launch, type Proc } from '../helpers/ft-pair.js';
import { setUpL2Hosts } from '../helpers/l2-hosts.js';

const KILLS = Number(process.env.LOCKSTEP_EO_KILLS ?? 3);
const CLIENTS = Number(process.env.LOCKSTEP_EO_CLIENTS ?? 40);
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-eo-'));
const procs: Proc[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  killAll(procs.splice(0));
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

/** The clients: an attempt resent after 50 ms without an answer, the same datagram, within the retry window. */
const loadOptions = (host: string, port: number): LoadOptions => ({
  endpoints: [{ host, port }],
  clients: CLIENTS,
  incrRatio: 1,
  durationMs: 3_600_000,
  timeoutMs: 50,
  retries: 1000,
  backoff: { initialMs: 0, maxMs: 0 },
  progressIntervalMs: 100,
});

interface RunningLoad {
  acknowledged(): number;
  stop(): Promise<{ increments: CounterSummary; violationCount: number; retries: number }>;
}

function inProcessLoad(options: LoadOptions): RunningLoad {
  const load = new LoadGenerator(options);
  let acknowledged = 0;
  load.on('progress', (p) => (acknowledged = p.acknowledged));
  const running = load.run();
  return {
    acknowledged: () => acknowledged,
    stop: async () => {
      load.stop();
      return running;
    },
  };
}

/** The same load in a child process (to run it inside a network namespace). */
function childLoad(prefix: string[], options: LoadOptions): RunningLoad {
  const script = fileURLToPath(new URL('./incr-load-child.mjs', import.meta.url));
  const child = spawn(prefix[0]!, [...prefix.slice(1), process.execPath, script, JSON.stringify(options)], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  let acknowledged = 0;
  let result: Awaited<ReturnType<RunningLoad['stop']>> | undefined;
  const done = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const m = JSON.parse(line) as { progress?: { acknowledged: number }; result?: typeof result };
    if (m.progress) acknowledged = m.progress.acknowledged;
    if (m.result) result = m.result;
  });
  return {
    acknowledged: () => acknowledged,
    stop: async () => {
      child.stdin!.write('stop\n');
      // Every client finishes its request in flight first: at most the 10 s retry window.
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      await done;
      clearTimeout(timer);
      if (result === undefined) throw new Error(`the load process exited (${child.exitCode}) without a result`);
      return result;
    },
  };
}

/** Waits (bounded) until the load has `more` acknowledged answers beyond `from`. */
async function progressed(load: RunningLoad, from: number, more: number): Promise<number> {
  for (let i = 0; load.acknowledged() < from + more; i++) {
    if (i > 1200) throw new Error(`the load made no progress: ${load.acknowledged() - from} of ${more} answers in 60 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return load.acknowledged();
}

/**
 * Starts a secondary and waits until `primary` reports itself protected. A secondary that exits first
 * (on a starved machine one can miss the detection timeout while it is cloned, and halts) is replaced,
 * as an operator or the cluster manager would: up to three tries.
 */
async function joinUntilProtected(primary: Proc, start: (attempt: number) => Proc): Promise<Proc> {
  for (let attempt = 1; ; attempt++) {
    const mark = primary.events.length;
    const s = start(attempt);
    const exited = new Promise<'exited'>((r) => s.child.once('exit', () => r('exited')));
    const joined = primary.wait('status', (e) => e.protected === true && primary.events.indexOf(e) >= mark, 120_000).then(() => 'protected' as const);
    joined.catch(() => undefined);
    const got = await Promise.race([joined, exited]);
    if (got === 'protected') return s;
    if (attempt === 3) throw new Error(`no secondary could join ${primary.name} in ${attempt} tries; the last said: ${s.log.slice(-3).join(' / ')}`);
  }
}

interface Host {
  /** Runs `lockstep <args>` on this host. */
  launch(name: string, args: string[]): Proc;
  /** `--listen` for this host's logging channel. */
  listen: string;
}

/**
 * A pair on hosts A and B under `load`; kills whichever is primary `kills` times, starting a new
 * secondary on the dead one's host each time and waiting until the pair is protected again.
 */
async function killPrimaries(cfgPath: string, hosts: [Host, Host], load: (() => RunningLoad)): Promise<Awaited<ReturnType<RunningLoad['stop']>>> {
  let [here, there] = hosts;
  let primary = here.launch('primary', ['primary', cfgPath, '--listen', here.listen]);
  const l = await primary.wait('listening');
  let secondary = await joinUntilProtected(primary, (n) => there.launch(`secondary 1.${n}`, ['secondary', cfgPath, '--join', `${String(l.host)}:${String(l.port)}`, '--listen', there.listen]));
  const running = load();
  let seen = await progressed(running, 0, 200);
  for (let i = 0; i < KILLS; i++) {
    primary.child.kill('SIGKILL');
    await exited(primary);
    await secondary.wait('go-live', undefined, 30_000);
    const promoted = await secondary.wait('listening', (e) => Number(e.epoch) === i + 2, 30_000);
    [here, there] = [there, here];
    primary = secondary;
    secondary = await joinUntilProtected(primary, (n) => there.launch(`secondary ${i + 2}.${n}`, ['secondary', cfgPath, '--join', `${String(promoted.host)}:${String(promoted.port)}`, '--listen', there.listen]));
    seen = await progressed(running, seen, 200);
  }
  return running.stop();
}

function expectExactlyOnce(r: Awaited<ReturnType<RunningLoad['stop']>>): void {
  console.log(`exactly once: ${KILLS} kills, ${CLIENTS} clients: ${JSON.stringify(r.increments)}, ${r.retries} retries`);
  expect(r.increments).toMatchObject({ appliedTwice: 0, lost: 0, unverified: 0 });
  expect(r.increments.acknowledged).toBeGreaterThanOrEqual(200 * (KILLS + 1));
  expect(r.violationCount).toBe(0);
}

describe('exactly once through failover', () => {
  it(`udp back-end: ${KILLS} SIGKILLs of the primary under ${CLIENTS} clients resending after 50 ms: no increment applied twice, none lost`, async () => {
    const dir = join(tmp, 'udp');
    mkdirSync(dir);
    // Detection at 2 s: on a starved machine (the suite beside stress-ng) 600 ms gave false failovers.
    const cfg = await kvConfig(dir, { timeoutMs: 2000 });
    const host: Host = {
      launch: (name, args) => {
        const p = launch(name, args);
        procs.push(p);
        return p;
      },
      listen: '127.0.0.1:0',
    };
    expectExactlyOnce(await killPrimaries(cfg.path, [host, host], () => inProcessLoad(loadOptions('127.0.0.1', cfg.udpPort))));
  }, 900_000);

  const hosts = setUpL2Hosts(`${process.pid % 100000}`);
  const reason = typeof hosts === 'string' ? hosts : undefined;
  if (reason) console.log(`test/ft/exactly-once.test.ts: the tap run is skipped: ${reason}`);
  afterAll(() => {
    if (typeof hosts !== 'string') hosts.remove();
    rmSync(tmp, { recursive: true, force: true });
  });

  it.skipIf(reason !== undefined)(`tap back-end: ${KILLS} SIGKILLs of the primary under ${CLIENTS} clients resending after 50 ms: no increment applied twice, none lost`, async () => {
    const h = hosts as Exclude<typeof hosts, string>;
    const dir = join(tmp, 'tap');
    mkdirSync(dir);
    // Detection at 2 s: on a starved machine (the suite beside stress-ng) 600 ms gave false failovers.
    const cfg = await kvConfig(dir, { timeoutMs: 2000 });
    const json = JSON.parse(readFileSync(cfg.path, 'utf8')) as { vm: { devices: Record<string, unknown> } };
    json.vm.devices = { disk: json.vm.devices.disk, net: { backend: 'tap', name: 'tap0', mac: '52:54:00:12:34:56' } };
    writeFileSync(cfg.path, JSON.stringify(json));
    const on = (n: string, listen: string): Host => ({
      launch: (name, args) => {
        const p = launch(name, args, undefined, { prefix: ['ip', 'netns', 'exec', n] });
        procs.push(p);
        return p;
      },
      listen,
    });
    const r = await killPrimaries(cfg.path, [on(h.ns.a, '192.168.77.1:0'), on(h.ns.b, '192.168.77.2:0')], () =>
      childLoad(['ip', 'netns', 'exec', h.ns.c], loadOptions('10.0.2.15', 11211)),
    );
    expectExactlyOnce(r);
  }, 900_000);
});
