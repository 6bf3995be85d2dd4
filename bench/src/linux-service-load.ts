// One load of `npm run bench -- linux --sections service`, in its own process (started in the client
// namespace by bench/src/linux-service.ts, pinned with taskset): a warm-up, then a measured window of
// memcached requests over TCP (persistent connections, one request outstanding each) or UDP (the
// LoadGenerator), sampling the CPU time of the server processes, this process's own, the TAP device's
// byte counters and the recording's size at the window's edges. Prints one JSON line.
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LatencyHistogram, LoadGenerator } from 'lockstep';
import { ROOT } from './paths.js';

export interface ServiceLoadSpec {
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
  /** 0: no requests, the window measures the servers idle. */
  clients: number;
  setRatio: number;
  valueSize: number;
  warmupMs: number;
  windowMs: number;
  /** Offered load over all clients (requests/s); none: closed loop. */
  ratePerSecond?: number;
  /** Server processes whose CPU time is sampled: name → pid. */
  pids: Record<string, number>;
  /** A process in the namespace of the TAP device `tap` (its /proc/<pid>/net/dev has the counters). */
  tapPid?: number;
  tap?: string;
  /** A recording being written: its growth over the window is the log. */
  logFile?: string;
}

export interface ServiceLoadResult {
  acknowledged: number;
  failed: number;
  /** Wall time of the window, ms, and its edges (Date.now(), for matching the primary's stats events). */
  elapsedMs: number;
  startMs: number;
  endMs: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU µs (user + system) over the window: each server process, and `load` (this process). */
  cpuUs: Record<string, number>;
  /** Bytes the TAP device carried to the guest (its transmit counter) and from it, over the window. */
  guestInputBytes?: number;
  guestOutputBytes?: number;
  guestInputFrames?: number;
  logFileBytes?: number;
  /** Where the window's log starts in the recording (file offset). */
  logFileStart?: number;
}

/** Clock ticks per second of /proc/<pid>/stat's CPU times. */
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
/** CPU time of `pid` so far (user + system of all its threads, exited ones included), µs. */
function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK; // fields 14 (utime) and 15 (stime)
}

/** The TAP device's counters, read in its own namespace through a process there. */
function tapCounters(pid: number, dev: string): { rxBytes: number; txBytes: number; txFrames: number } {
  const line = readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n').find((l) => l.trim().startsWith(`${dev}:`));
  if (line === undefined) throw new Error(`no ${dev} in /proc/${pid}/net/dev`);
  const f = line.slice(line.indexOf(':') + 1).trim().split(/\s+/).map(Number);
  return { rxBytes: f[0]!, txBytes: f[8]!, txFrames: f[9]! };
}

function sample(spec: ServiceLoadSpec) {
  const cpu: Record<string, number> = {};
  for (const [name, pid] of Object.entries(spec.pids)) cpu[name] = cpuMicros(pid);
  const self = process.cpuUsage();
  cpu.load = self.user + self.system;
  return {
    cpu,
    tap: spec.tapPid !== undefined ? tapCounters(spec.tapPid, spec.tap ?? 'tap0') : undefined,
    log: spec.logFile !== undefined ? statSync(spec.logFile).size : undefined,
    at: Date.now(),
  };
}

// The LoadGenerator's seeded PRNG, from the built package: the same choices on every run.
const { prng } = (await import(pathToFileURL(join(ROOT, 'dist', 'client', 'prng.js')).href)) as typeof import('../../src/client/prng.js');

const CRLF = Buffer.from('\r\n');
const END = Buffer.from('END\r\n');

/** One persistent connection, one request outstanding; replies are parsed just enough to know where they end. */
class Connection {
  #buf: Buffer = Buffer.alloc(0);
  #waiting: { expect: 'line' | 'get'; resolve: (ok: boolean) => void; reject: (e: Error) => void } | undefined;
  readonly socket: Socket;

  constructor(host: string, port: number) {
    this.socket = connect({ host, port, noDelay: true });
    this.socket.on('data', (d: Buffer) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      this.#drain();
    });
    this.socket.on('error', (e) => this.#waiting?.reject(e));
    this.socket.on('close', () => this.#waiting?.reject(new Error('connection closed')));
  }

  ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('connect', resolve);
      this.socket.once('error', reject);
    });
  }

  #drain(): void {
    const w = this.#waiting;
    if (!w) return;
    let end: number;
    let ok: boolean;
    if (w.expect === 'line') {
      end = this.#buf.indexOf(CRLF);
      if (end < 0) return;
      ok = this.#buf.subarray(0, end).toString('latin1') === 'STORED';
      end += 2;
    } else {
      // VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n, or END\r\n alone.
      if (this.#buf.subarray(0, 5).equals(END)) {
        end = 5;
        ok = true;
      } else {
        const nl = this.#buf.indexOf(CRLF);
        if (nl < 0) return;
        const m = /^VALUE \S+ \d+ (\d+)$/.exec(this.#buf.subarray(0, nl).toString('latin1'));
        if (!m) {
          w.reject(new Error(`unexpected reply to get: ${JSON.stringify(this.#buf.subarray(0, nl).toString('latin1'))}`));
          return;
        }
        end = nl + 2 + Number(m[1]) + 2 + END.length;
        if (this.#buf.length < end) return;
        ok = this.#buf.subarray(end - END.length, end).equals(END);
      }
    }
    this.#buf = this.#buf.subarray(end);
    this.#waiting = undefined;
    w.resolve(ok);
  }

  request(text: Buffer, expect: 'line' | 'get'): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.#waiting = { expect, resolve, reject };
      this.socket.write(text);
    });
  }
}

/** A TCP load of `clients` persistent connections, 50 % sets by default, over `keys` keys. */
async function tcpLoad(spec: ServiceLoadSpec, durationMs: number, conns: Connection[]) {
  const histogram = new LatencyHistogram();
  let acknowledged = 0;
  let failed = 0;
  let sent = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  const value = 'v'.repeat(spec.valueSize);
  await Promise.all(
    conns.map(async (c, i) => {
      const random = prng(1 + i * 7919);
      while (performance.now() < deadline) {
        if (spec.ratePerSecond !== undefined) {
          const wait = start + (sent * 1000) / spec.ratePerSecond - performance.now();
          sent++;
          if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
        }
        const key = `k${Math.floor(random() * 100)}`;
        const isSet = random() < spec.setRatio;
        const t0 = performance.now();
        const ok = isSet ? await c.request(Buffer.from(`set ${key} 0 0 ${spec.valueSize}\r\n${value}\r\n`, 'latin1'), 'line') : await c.request(Buffer.from(`get ${key}\r\n`, 'latin1'), 'get');
        histogram.record(performance.now() - t0);
        if (ok) acknowledged++;
        else failed++;
      }
    }),
  );
  return { acknowledged, failed, elapsedMs: performance.now() - start, p50Ms: histogram.percentile(50), p99Ms: histogram.percentile(99) };
}

const spec = JSON.parse(process.argv[2] ?? '') as ServiceLoadSpec;
const endpoint = { host: spec.host, port: spec.port };
const udpOptions = (durationMs: number) => ({
  endpoints: [endpoint],
  clients: spec.clients,
  setRatio: spec.setRatio,
  keys: 100,
  keyPrefix: 'k',
  valueSize: spec.valueSize,
  durationMs,
  timeoutMs: 500,
  retries: 5,
  ...(spec.ratePerSecond === undefined ? {} : { ratePerSecond: spec.ratePerSecond }),
});
let conns: Connection[] = [];
if (spec.clients === 0) {
  // No load: what the server costs idle over the same window.
  await new Promise((r) => setTimeout(r, spec.warmupMs));
} else if (spec.proto === 'tcp') {
  conns = Array.from({ length: spec.clients }, () => new Connection(spec.host, spec.port));
  await Promise.all(conns.map((c) => c.ready()));
  await tcpLoad(spec, spec.warmupMs, conns);
} else {
  await new LoadGenerator(udpOptions(spec.warmupMs)).run();
}
const s0 = sample(spec);
let r: { acknowledged: number; failed: number; elapsedMs: number; p50Ms: number; p99Ms: number };
if (spec.clients === 0) {
  const t0 = performance.now();
  await new Promise((res) => setTimeout(res, spec.windowMs));
  r = { acknowledged: 0, failed: 0, elapsedMs: performance.now() - t0, p50Ms: NaN, p99Ms: NaN };
} else if (spec.proto === 'tcp') {
  r = await tcpLoad(spec, spec.windowMs, conns);
} else {
  const u = await new LoadGenerator(udpOptions(spec.windowMs)).run();
  r = { acknowledged: u.acknowledged, failed: u.failed, elapsedMs: u.elapsedMs, p50Ms: u.latency.p50Ms, p99Ms: u.latency.p99Ms };
}
const s1 = sample(spec);
for (const c of conns) c.socket.destroy();
const cpuUs: Record<string, number> = {};
for (const k of Object.keys(s0.cpu)) cpuUs[k] = s1.cpu[k]! - s0.cpu[k]!;
const result: ServiceLoadResult = {
  ...r,
  startMs: s0.at,
  endMs: s1.at,
  cpuUs,
  ...(s0.tap && s1.tap ? { guestInputBytes: s1.tap.txBytes - s0.tap.txBytes, guestOutputBytes: s1.tap.rxBytes - s0.tap.rxBytes, guestInputFrames: s1.tap.txFrames - s0.tap.txFrames } : {}),
  ...(s0.log !== undefined && s1.log !== undefined ? { logFileBytes: s1.log - s0.log, logFileStart: s0.log } : {}),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
