// Linux with kvd (the memcached-compatible service) as a fault-tolerant pair on TAP devices in two
// network namespaces, stock pymemcache clients in a third, each on one persistent TCP connection: the
// primary is SIGKILLed again and again (the survivor goes on as primary, a new secondary joins in the
// namespace that lost its process). No acknowledged write lost, no increment applied twice, no
// connection reset or reopened. Root needed (skips otherwise). LOCKSTEP_KILLS sets the number of kills.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_ENGINE } from '../helpers/engines.js';
import { exited, killAll, launch, root, type Proc } from '../helpers/ft-pair.js';
import { KVD_READY, PYTHON, kvdUnavailable } from '../helpers/kvd-guest.js';
import { setUpL2Hosts } from '../helpers/l2-hosts.js';
import { until } from '../helpers/wait.js';

const KILLS = Number(process.env.LOCKSTEP_KILLS ?? 3);
/**
 * Keys per client (LOCKSTEP_KVD_KEYS): each client cycles through them, reading a key back before it
 * overwrites it, so the live set stays within the cache and its log however many kills a soak runs.
 */
const KEYS = Number(process.env.LOCKSTEP_KVD_KEYS ?? 2048);
const CLIENTS = 4;
/** Bounds for a loaded two-core machine; a passing test never waits them out. */
const STEP_MS = 180_000;
const DISK_BYTES = 8 << 20;
const DRIVER = join(root, 'test', 'ft', 'kvd-clients.py');

const unavailable = kvdUnavailable();
const hosts = unavailable ?? setUpL2Hosts(`${process.pid % 100000}k`);
const reason = typeof hosts === 'string' ? hosts : undefined;
if (reason) console.log(`test/ft/linux-kvd-failover.test.ts skipped: ${reason}`);
const procs: Proc[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-linuxkvd-'));
let driver: ChildProcess | undefined;
afterAll(() => {
  if (driver && driver.exitCode === null) driver.kill('SIGKILL');
  killAll(procs);
  if (typeof hosts !== 'string') hosts.remove();
  rmSync(tmp, { recursive: true, force: true });
});

/** The monotonic clock Python's time.monotonic() reads (CLOCK_MONOTONIC), in seconds. */
const monotonic = (): number => Number(process.hrtime.bigint()) / 1e9;

interface ClientResult {
  client: number;
  requests: number;
  acknowledged: number;
  writes: number;
  /** Distinct keys written (each client cycles through KEYS). */
  keys: number;
  /** Writes that first read their key back (it held the last acknowledged value, or counts as lost). */
  keysChecked: number;
  lost: number;
  incrs: number;
  counter: number;
  incrSequenceOk: boolean;
  appliedTwice: number;
  reconnects: number;
  errorCount: number;
  errors: string[];
  verifyError?: string;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

describe.skipIf(reason !== undefined)('Linux kvd as a fault-tolerant pair: TCP clients across failovers', () => {
  it(
    `${KILLS} SIGKILLs of the primary: no acknowledged write lost, no incr applied twice, no connection reset or reopened`,
    async () => {
      const { ns, inNs } = hosts as Exclude<typeof hosts, string>;
      /** TCP segments the clients' namespace retransmitted so far (/proc/net/snmp, Tcp RetransSegs). */
      const clientRetransmits = (): number => {
        const lines = inNs(ns.c, 'cat', '/proc/net/snmp').stdout.split('\n').filter((x) => x.startsWith('Tcp:'));
        const [names, values] = lines.map((x) => x.split(/\s+/));
        return Number(values![names!.indexOf('RetransSegs')]);
      };
      mkdirSync(join(tmp, 'arbiter'));
      let generation = 0;
      const disk = (): string => {
        const path = join(tmp, `disk${generation++}.img`);
        writeFileSync(path, Buffer.alloc(DISK_BYTES));
        return path;
      };
      const config = {
        vm: {
          id: 'linux-kvd',
          kernel: join(root, 'guest', 'linux', 'bin', 'Image.gz'),
          initrd: join(root, 'guest', 'linux', 'bin', 'rootfs.cpio.gz'),
          append: `console=ttyS0 quiet lockstep.service=kvd:-m:16 lockstep.time=${Math.floor(Date.now() / 1000)}`,
          ramMiB: 64,
          clock: 'real',
          devices: { disk: { path: disk(), mode: 'separate' }, net: { backend: 'tap', name: 'tap0', mac: '52:54:00:12:34:56' } },
        },
        // A SIGKILL closes the logging channel at once; the timeout is for a stall, kept clear of a
        // loaded machine's pauses.
        ft: { listen: '127.0.0.1:0', keyHex: randomBytes(32).toString('hex'), arbiter: { backend: 'file', dir: join(tmp, 'arbiter') }, timeoutMs: 5_000, heartbeatMs: 100 },
      };
      const cfgPath = join(tmp, 'vm.json');
      writeFileSync(cfgPath, JSON.stringify(config, null, 2));
      const hostOf = { [ns.a]: '192.168.77.1', [ns.b]: '192.168.77.2' };
      const secondary = (n: string, joinAt: string): Proc => {
        const p = launch(`secondary in ${n}`, ['secondary', cfgPath, '--join', joinAt, '--listen', `${hostOf[n]}:0`, '--disk', disk()], undefined, { prefix: ['ip', 'netns', 'exec', n] });
        procs.push(p);
        return p;
      };

      // The first pair: the guest boots once protected; its console says when kvd listens.
      let primary = launch(`primary in ${ns.a}`, ['primary', cfgPath, '--listen', `${hostOf[ns.a]}:0`, '--await-secondary', '--console'], undefined, {
        prefix: ['ip', 'netns', 'exec', ns.a],
        stdout: true,
      });
      procs.push(primary);
      let console_ = '';
      primary.child.stdout!.on('data', (d: Buffer) => (console_ += d.toString('latin1')));
      let primaryNs = ns.a;
      const l = await primary.wait('listening', undefined, STEP_MS);
      // Both halves run the default engine (the block compiler where there is one; LOCKSTEP_ENGINE changes it).
      expect(l.engine).toBe(DEFAULT_ENGINE);
      let standby = secondary(ns.b, `${hostOf[ns.a]}:${String(l.port)}`);
      await primary.wait('status', (e) => e.protected === true, STEP_MS);
      await until(`kvd is ready (console: ${JSON.stringify(console_.slice(-600))})`, () => console_.includes(KVD_READY) || primary.child.exitCode !== null, { timeoutMs: STEP_MS, everyMs: 50 });
      expect(console_).toContain(KVD_READY);

      // The clients, in namespace C.
      const d = spawn('ip', ['netns', 'exec', ns.c, PYTHON, DRIVER, JSON.stringify({ host: '10.0.2.15', port: 11211, clients: CLIENTS, keys: KEYS })], { stdio: ['pipe', 'pipe', 'pipe'] });
      driver = d;
      let progress: number[] = [];
      let connects: number[] = [];
      let errors = 0;
      let final: { result: ClientResult[]; outagesMs: number[] } | undefined;
      let stderr = '';
      let buf = '';
      d.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      d.stdout!.on('data', (b: Buffer) => {
        buf += b.toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const m = JSON.parse(buf.slice(0, nl)) as { progress?: number[]; errors?: number; connects?: number[]; result?: ClientResult[]; outagesMs?: number[] };
          buf = buf.slice(nl + 1);
          if (m.progress) [progress, errors, connects] = [m.progress, m.errors!, m.connects!];
          if (m.result) final = m as typeof final;
        }
      });
      const everyClientPast = async (what: string, marks: number[], by: number) =>
        until(`${what}: every client acknowledges ${by} more requests (progress ${JSON.stringify(progress)} from ${JSON.stringify(marks)}, ${errors} errors; ${stderr.slice(-400)})`, () => {
          if (d.exitCode !== null) throw new Error(`the client driver exited: ${stderr.slice(-1000)}`);
          return progress.length === CLIENTS && progress.every((n, i) => n >= (marks[i] ?? 0) + by);
        }, { timeoutMs: STEP_MS, everyMs: 20 });
      await everyClientPast('at the start', [], 200);

      const kills: number[] = [];
      const goLiveMs: number[] = [];
      const reemitted: number[] = [];
      const retransmitsAtStart = clientRetransmits();
      for (let k = 1; k <= KILLS; k++) {
        const marks = [...progress];
        const killedNs = primaryNs;
        const at = monotonic();
        const since = Date.now();
        kills.push(at);
        primary.child.kill('SIGKILL');
        await exited(primary);
        const live = await standby.wait('go-live', undefined, STEP_MS);
        goLiveMs.push(Number(live.t) - since);
        reemitted.push(Number(live.reemittedFrames));
        await everyClientPast(`after kill ${k}`, marks, 50);
        // The survivor is the primary now; a new secondary joins in the namespace that lost its process.
        primary = standby;
        primaryNs = killedNs === ns.a ? ns.b : ns.a;
        const listening = await primary.wait('listening', (e) => Number(e.t) >= since, STEP_MS);
        expect(listening.engine).toBe(DEFAULT_ENGINE);
        standby = secondary(killedNs, `${hostOf[primaryNs]}:${String(listening.port)}`);
        await primary.wait('status', (e) => e.protected === true && Number(e.t) >= since, STEP_MS);
        await standby.wait('status', (e) => e.protected === true, STEP_MS);
        expect((await standby.wait('cloned', undefined, STEP_MS)).engine).toBe(DEFAULT_ENGINE);
        await everyClientPast(`protected again after kill ${k}`, [...progress], 50);
        expect(errors, `client errors after kill ${k}`).toBe(0);
      }

      d.stdin!.write(`stop ${JSON.stringify(kills)}\n`);
      await until(`the clients' verdict (${stderr.slice(-1000)})`, () => final !== undefined || d.exitCode !== null, { timeoutMs: STEP_MS, everyMs: 50 });
      expect(final, stderr).toBeDefined();
      const results = final!.result;
      const sum = (f: (r: ClientResult) => number) => results.reduce((s, r) => s + f(r), 0);
      const outages = [...final!.outagesMs].sort((x, y) => x - y);
      const retransmits = clientRetransmits() - retransmitsAtStart;
      console.log(
        `linux-kvd-failover: engine ${DEFAULT_ENGINE}, ${KILLS} kills, ${CLIENTS} TCP clients; ${sum((r) => r.requests)} requests, ${sum((r) => r.acknowledged)} acknowledged, ` +
          `${sum((r) => r.writes)} writes to ${sum((r) => r.keys)} keys (${sum((r) => r.lost)} lost; ${sum((r) => r.keysChecked)} keys read back before being overwritten), ${sum((r) => r.incrs)} incrs (${sum((r) => r.appliedTwice)} applied twice), ` +
          `${sum((r) => r.reconnects)} reconnects, ${sum((r) => r.errorCount)} errors; go-live ${goLiveMs.join('/')} ms after the kill; ` +
          `frames re-emitted at go-live ${reemitted.join('/')}; TCP segments the clients retransmitted ${retransmits}; ` +
          `client-visible outage p50 ${percentile(outages, 50)} ms, p99 ${percentile(outages, 99)} ms (${final!.outagesMs.join(', ')})`,
      );
      for (const r of results) {
        expect(r.verifyError, JSON.stringify(r)).toBeUndefined();
        expect(r.errors, `client ${r.client}`).toEqual([]);
        expect(r.reconnects, `client ${r.client} reconnects`).toBe(0);
        expect(r.lost, `client ${r.client} lost writes`).toBe(0);
        expect(r.incrSequenceOk, `client ${r.client}: incr returned 1, 2, … n`).toBe(true);
        expect(r.counter, `client ${r.client}: counter = acknowledged incrs`).toBe(r.incrs);
        expect(r.writes).toBeGreaterThan(100);
      }
      expect(connects).toEqual(Array.from({ length: CLIENTS }, () => 1));
      expect(final!.outagesMs).toHaveLength(KILLS);
    },
    (8 + 4 * KILLS) * STEP_MS,
  );
});
