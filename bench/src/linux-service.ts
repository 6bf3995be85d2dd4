// `npm run bench -- linux --sections service`: the Linux guest's kvd (memcached over TCP and UDP) on a
// TAP device, plain (`lockstep run`), recorded (`lockstep record`), as an FT pair (`lockstep primary` /
// `secondary` in two network namespaces) and Debian's memcached for scale, all on one layer-2 segment
// with the load in a client namespace: throughput, latency, CPU per request of every process, log per
// request and log per byte of guest input. Root needed (namespaces, TAP devices).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { EventKind, LogReader, decodeRecords } from 'lockstep';
import type { ServiceLoadResult, ServiceLoadSpec } from './linux-service-load.js';
import { BUILD_DIR, ROOT } from './paths.js';
import type { Progress } from './progress.js';
import { median } from './stats.js';

const { launch } = (await import(pathToFileURL(join(ROOT, 'dist', 'cluster', 'agent', 'cli-process.js')).href)) as typeof import('../../src/cluster/agent/cli-process.js');
const { setUpL2Hosts } = (await import(pathToFileURL(join(ROOT, 'dist', 'cluster', 'agent', 'l2-hosts.js')).href)) as typeof import('../../src/cluster/agent/l2-hosts.js');

export const SERVICE_SECTION_TITLE = '# npm run bench -- linux --sections service: kvd in the Linux guest on a TAP device (plain, recorded, FT) and Debian memcached';
export const SYSTEMS = ['plain', 'recorded', 'ft', 'memcached', 'nodisk'] as const;
export type System = (typeof SYSTEMS)[number];
/** LOCKSTEP_BENCH_SYSTEMS / LOCKSTEP_BENCH_LOADS (comma-separated names) run a subset; the tables then show n/a for the rest. */
const only = (env: string | undefined) => (env === undefined || env === '' ? undefined : new Set(env.split(',')));
const ONLY_SYSTEMS = only(process.env.LOCKSTEP_BENCH_SYSTEMS);
const ONLY_LOADS = only(process.env.LOCKSTEP_BENCH_LOADS);
/** LOCKSTEP_BENCH_SECONDARY_LOG_DIR keeps the FT secondary's log there (`--log-dir`, which moves its log path to JavaScript): to study what the log carries. */
const SECONDARY_LOG_DIR = process.env.LOCKSTEP_BENCH_SECONDARY_LOG_DIR;
/** kvd's readiness line on the console (guest/linux/user/kvd.c). */
const KVD_READY = 'kvd: listening on tcp 11211';
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const GUEST_IP = '10.0.2.15';
/** memcached's address in host A's namespace, on the same segment as the guest. */
const MEMCACHED_IP = '10.0.2.16';
const DISK_BYTES = 32 << 20;
const STEP_MS = 180_000;
/** Clients of every load: persistent TCP connections, or UDP sockets, one request outstanding each. */
export const CLIENTS = 8;
/** The offered load at which every system's CPU per request is compared: below what each one serves on a loaded 2-core machine. */
export const EQUAL_RATE = 500;

interface LoadKind {
  name: string;
  proto: 'tcp' | 'udp';
  setRatio: number;
  valueSize: number;
  /** Offered requests/s (equal for every system); none: closed loop. */
  rate?: number;
  /** Only where there is a log (recorded, FT). */
  logOnly?: boolean;
  /** No requests: the window measures each process idle. */
  idle?: boolean;
}

/**
 * The loads, in the order each system runs them. 1 360-byte UDP sets make 1 388-byte datagrams (the
 * 8-byte frame header, `set k42 0 0 1360\r\n`, the value, CRLF), 1 380-byte TCP sets 1 400-byte requests.
 */
export const LOADS: LoadKind[] = [
  { name: 'idle', proto: 'tcp', setRatio: 0, valueSize: 32, idle: true },
  { name: 'tcp', proto: 'tcp', setRatio: 0.5, valueSize: 32 },
  { name: 'udp', proto: 'udp', setRatio: 0.5, valueSize: 32 },
  { name: 'tcp-rate', proto: 'tcp', setRatio: 0.5, valueSize: 32, rate: EQUAL_RATE },
  { name: 'udp-rate', proto: 'udp', setRatio: 0.5, valueSize: 32, rate: EQUAL_RATE },
  { name: 'udp-1400', proto: 'udp', setRatio: 1, valueSize: 1360, logOnly: true },
  { name: 'tcp-1400', proto: 'tcp', setRatio: 1, valueSize: 1380, logOnly: true },
];

export interface ServiceTrial extends ServiceLoadResult {
  system: System;
  load: string;
  trial: number;
  /** FT: the primary's log bytes per second between its stats reports inside the window. */
  logBytesPerSecond?: number;
  /** FT: log batches and LOG frames per second, from the same reports (each frame costs 52 more bytes on the wire). */
  logBatchesPerSecond?: number;
  logFramesPerSecond?: number;
  /** FT: log bytes ÷ guest input bytes between the same two stats reports (both counted by the primary as it reports). */
  logPerInput?: number;
  /** FT: the primary's guest MIPS (its moving average), median of its reports inside the window. */
  mips?: number;
  /** Recorded: what the window's log is made of (whole batches that start inside the window). */
  logContent?: LogContent;
}

/** The bytes of a stretch of log by what they carry. */
export interface LogContent {
  bytes: number;
  batches: number;
  /** Payloads: frames into virtio-net; completed disk requests (writes and flushes too) and the data read. */
  netRxFrames: number;
  netRxDataBytes: number;
  blockDone: number;
  blockReadBytes: number;
  clockReads: number;
  clockSamples: number;
  /** Everything else: batch headers, record kinds, positions, lengths, clock values, marks, hashes. */
  otherBytes: number;
}

/** Sums the batches of the recording at `path` that start in [start, end) (a file still being written: its torn tail is ignored). */
function logContent(path: string, start: number, end: number): LogContent {
  const c: LogContent = { bytes: 0, batches: 0, netRxFrames: 0, netRxDataBytes: 0, blockDone: 0, blockReadBytes: 0, clockReads: 0, clockSamples: 0, otherBytes: 0 };
  const reader = LogReader.open(path);
  try {
    for (const b of reader.batches()) {
      if (b.offset < start) continue;
      if (b.offset >= end) break;
      c.batches++;
      c.bytes += b.bytes.length;
      for (const e of decodeRecords(b)) {
        if (e.kind === EventKind.NetRx) {
          c.netRxFrames++;
          c.netRxDataBytes += e.data!.length;
        } else if (e.kind === EventKind.BlockDone) {
          c.blockDone++;
          c.blockReadBytes += e.data!.length;
        } else if (e.kind === EventKind.ClockRead) c.clockReads++;
        else if (e.kind === EventKind.ClockSample) c.clockSamples++;
      }
    }
  } catch (err) {
    // The recording was killed mid-batch; everything before the torn batch was read.
    if ((err as { code?: string }).code !== 'ERR_LOCKSTEP_LOG_TRUNCATED') throw err;
  } finally {
    reader.close();
  }
  c.otherBytes = c.bytes - c.netRxDataBytes - c.blockReadBytes;
  return c;
}

/** Bytes the TAP device has sent toward the guest (its tx counter), from the namespace of process `pid`. */
function tapTxBytes(pid: number, dev = 'tap0'): number | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n').find((l) => l.trim().startsWith(`${dev}:`));
    return line === undefined ? undefined : Number(line.slice(line.indexOf(':') + 1).trim().split(/\s+/)[8]);
  } catch {
    return undefined; // the process is gone
  }
}

/** Steps (progress) of `trials` rounds. */
export function serviceSteps(trials: number): number {
  return trials * SYSTEMS.filter((s) => ONLY_SYSTEMS?.has(s) ?? true).reduce((n, s) => n + 1 + LOADS.filter((l) => (ONLY_LOADS?.has(l.name) ?? true) && (!l.logOnly || s === 'recorded' || s === 'ft')).length, 0);
}

const sh = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 50 ms until it holds; fails naming `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean, timeoutMs = STEP_MS): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** The process `child` became once `ip netns exec … taskset …` exec'd into it (neither forks). */
function checkComm(child: ChildProcess, expected: string): number {
  const comm = readFileSync(`/proc/${child.pid!}/comm`, 'utf8').trim();
  if (comm !== expected) throw new Error(`pid ${child.pid!} is '${comm}', not ${expected}: its CPU time would be another process's`);
  return child.pid!;
}

export async function serviceBench(o: { trials: number; quick: boolean; tmp: string; progress: Progress }) {
  const { trials, quick, tmp, progress } = o;
  if (process.getuid?.() !== 0) throw new Error('--sections service needs root (network namespaces and TAP devices)');
  const hosts = setUpL2Hosts(`${process.pid % 100000}b`);
  if (typeof hosts === 'string') throw new Error(`--sections service: ${hosts}`);
  const { ns } = hosts;
  const pinned = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  const pin = (core: number) => (pinned ? ['taskset', '-c', String(core)] : []);
  // The load generator and the secondary share core 1, the VM (primary, memcached) has core 0; so does
  // this process, idle while a load runs.
  if (pinned) spawnSync('taskset', ['-pc', '1', String(process.pid)], { stdio: 'ignore' });
  const warmupMs = quick ? 500 : 1000;
  const windowMs = quick ? 2500 : 4000;
  const children: ChildProcess[] = [];
  const trialsOut: ServiceTrial[] = [];
  let disks = 0;
  const disk = () => {
    const path = join(tmp, `svc-disk${disks++}.img`);
    writeFileSync(path, Buffer.alloc(DISK_BYTES));
    return path;
  };
  const append = () => `console=ttyS0 quiet lockstep.service=kvd:-m:16 lockstep.time=${Math.floor(Date.now() / 1000)}`;
  try {
    const add = hosts.inNs(ns.a, 'ip', 'addr', 'add', `${MEMCACHED_IP}/24`, 'dev', 'brh');
    if (add.status !== 0) throw new Error(`ip addr add ${MEMCACHED_IP}: ${add.stderr}`);

    /** Starts `lockstep run|record` of the guest in namespace A on tap0; resolves with its pid once kvd listens. */
    const startVm = async (verb: string[], withDisk = true) => {
      const devices = withDisk ? ['--disk', disk()] : [];
      const cmdline = withDisk ? append() : append().replace('kvd:-m:16', 'kvd:-m:16:-n');
      const c = spawn('ip', ['netns', 'exec', ns.a, ...pin(0), process.execPath, CLI, ...verb, '--linux', '--clock', 'real', '--net', 'tap:tap0', ...devices, '--append', cmdline], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(c);
      let out = '';
      let err = '';
      c.stdout!.on('data', (d: Buffer) => (out += d.toString('latin1')));
      c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      await until(`kvd under lockstep ${verb[0]!} (console ${JSON.stringify(out.slice(-400))}, stderr ${err.slice(-400)})`, () => out.includes(KVD_READY) || c.exitCode !== null);
      if (c.exitCode !== null) throw new Error(`lockstep ${verb[0]!} exited ${c.exitCode}: ${out.slice(-400)} ${err.slice(-400)}`);
      return { pids: { vm: checkComm(c, 'node') }, tapPid: c.pid!, stop: () => c.kill('SIGKILL') };
    };

    const startFt = async () => {
      const dir = join(tmp, `svc-ft-${disks}`);
      mkdirSync(join(dir, 'arbiter'), { recursive: true });
      const config = {
        vm: {
          id: 'bench-kvd',
          kernel: join(ROOT, 'guest', 'linux', 'bin', 'Image.gz'),
          initrd: join(ROOT, 'guest', 'linux', 'bin', 'rootfs.cpio.gz'),
          append: append(),
          ramMiB: 64,
          clock: 'real',
          devices: { disk: { path: disk(), mode: 'separate' }, net: { backend: 'tap', name: 'tap0', mac: '52:54:00:12:34:56' } },
        },
        ft: { listen: '127.0.0.1:0', keyHex: randomBytes(32).toString('hex'), arbiter: { backend: 'file', dir: join(dir, 'arbiter') } },
      };
      const cfg = join(dir, 'vm.json');
      writeFileSync(cfg, JSON.stringify(config));
      const stats: { t: number; logBytes: number; logBatches: number; logFrames: number; mips: number; guestInputBytes: number | undefined }[] = [];
      let primaryPid = 0;
      const primary = launch('primary', ['primary', cfg, '--listen', '192.168.77.1:0', '--await-secondary', '--console'], (_p, e) => {
        if (e.event === 'stats') {
          const st = e as unknown as { logBytes: number; logBatches: number; logFrames: number; mips: number; guestInputBytes?: number };
          // The guest's input so far, counted by the primary as it reads its log's size: log ÷ input over
          // exactly the same interval (the TAP's counter, read as the report arrives, if it has none).
          const input = st.guestInputBytes ?? tapTxBytes(primaryPid);
          stats.push({ t: Number(e.t), logBytes: Number(st.logBytes), logBatches: Number(st.logBatches), logFrames: Number(st.logFrames), mips: Number(st.mips), guestInputBytes: input });
        }
      }, { prefix: ['ip', 'netns', 'exec', ns.a, ...pin(0)], stdout: true });
      children.push(primary.child);
      primaryPid = primary.child.pid!;
      let out = '';
      primary.child.stdout!.on('data', (d: Buffer) => (out += d.toString('latin1')));
      const l = await primary.wait('listening', undefined, STEP_MS);
      const secondary = launch('secondary', ['secondary', cfg, '--join', `192.168.77.1:${String(l.port)}`, '--listen', '192.168.77.2:0', '--disk', disk(), ...(SECONDARY_LOG_DIR ? ['--log-dir', SECONDARY_LOG_DIR] : [])], undefined, { prefix: ['ip', 'netns', 'exec', ns.b, ...pin(1)] });
      children.push(secondary.child);
      await primary.wait('status', (e) => e.protected === true, STEP_MS);
      await until(`kvd under the FT primary (console ${JSON.stringify(out.slice(-400))})`, () => out.includes(KVD_READY) || primary.child.exitCode !== null);
      if (primary.child.exitCode !== null) throw new Error(`the primary exited: ${primary.log.slice(-5).join(' / ')}`);
      return {
        pids: { primary: checkComm(primary.child, 'node'), secondary: checkComm(secondary.child, 'node') },
        tapPid: primary.child.pid!,
        stats,
        stop: () => {
          primary.child.kill('SIGKILL');
          secondary.child.kill('SIGKILL');
        },
      };
    };

    const startMemcached = async () => {
      // One worker thread (kvd has one), UDP on as for kvd, 16 MiB for items as kvd's -m 16.
      const c = spawn('ip', ['netns', 'exec', ns.a, ...pin(0), 'memcached', '-u', 'root', '-l', MEMCACHED_IP, '-p', '11211', '-U', '11211', '-m', '16', '-t', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(c);
      await until('memcached listening', () => c.exitCode !== null || hosts.inNs(ns.a, 'ss', '-ltnH', 'sport = :11211').stdout.includes('11211'), 30_000);
      if (c.exitCode !== null) throw new Error(`memcached exited ${c.exitCode}`);
      return { pids: { memcached: checkComm(c, 'memcached') }, stop: () => c.kill('SIGKILL') };
    };

    const runLoad = (spec: ServiceLoadSpec): Promise<ServiceLoadResult> =>
      new Promise((resolve, reject) => {
        const c = spawn('ip', ['netns', 'exec', ns.c, ...pin(1), process.execPath, join(BUILD_DIR, 'linux-service-load.js'), JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
        children.push(c);
        let out = '';
        let err = '';
        c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        const timer = setTimeout(() => c.kill('SIGKILL'), STEP_MS);
        c.on('close', (code) => {
          clearTimeout(timer);
          if (code !== 0) return reject(new Error(`the ${spec.proto} load exited ${code}: ${err.slice(-1500)}`));
          resolve(JSON.parse(out.trim().split('\n').pop()!) as ServiceLoadResult);
        });
      });

    for (let t = 1; t <= trials; t++) {
      // Each round starts with the next system, so none is always the first after the namespaces' set-up.
      for (const system of [...SYSTEMS.slice((t - 1) % SYSTEMS.length), ...SYSTEMS.slice(0, (t - 1) % SYSTEMS.length)]) {
        if (ONLY_SYSTEMS && !ONLY_SYSTEMS.has(system)) continue;
        progress.step(`service ${t}/${trials}: ${system}: starting`);
        const logFile = system === 'recorded' ? join(tmp, `svc-${t}.log`) : undefined;
        const s =
          system === 'memcached' ? await startMemcached() : system === 'ft' ? await startFt() : await startVm(logFile === undefined ? ['run'] : ['record', '-o', logFile], system !== 'nodisk');
        try {
          for (const load of LOADS) {
            if (load.logOnly && system !== 'recorded' && system !== 'ft') continue;
            if (ONLY_LOADS && !ONLY_LOADS.has(load.name)) continue;
            progress.step(`service ${t}/${trials}: ${system}: ${load.name}`);
            const spec: ServiceLoadSpec = {
              proto: load.proto,
              host: system === 'memcached' ? MEMCACHED_IP : GUEST_IP,
              port: 11211,
              clients: load.idle ? 0 : CLIENTS,
              setRatio: load.setRatio,
              valueSize: load.valueSize,
              warmupMs,
              windowMs,
              ...(load.rate === undefined ? {} : { ratePerSecond: load.rate }),
              pids: s.pids,
              ...('tapPid' in s ? { tapPid: s.tapPid, tap: 'tap0' } : {}),
              ...(logFile === undefined ? {} : { logFile }),
            };
            const r = await runLoad(spec);
            const trial: ServiceTrial = { system, load: load.name, trial: t, ...r };
            if ('stats' in s) {
              // The primary reports its log's size about once a second: the rate between the first and
              // the last report inside the window.
              const inside = s.stats.filter((e) => e.t >= r.startMs && e.t <= r.endMs);
              if (inside.length >= 2) {
                const per = (k: 'logBytes' | 'logBatches' | 'logFrames') => ((inside.at(-1)![k] - inside[0]![k]) * 1000) / (inside.at(-1)!.t - inside[0]!.t);
                trial.logBytesPerSecond = per('logBytes');
                trial.logBatchesPerSecond = per('logBatches');
                trial.logFramesPerSecond = per('logFrames');
                const first = inside[0]!.guestInputBytes;
                const last = inside.at(-1)!.guestInputBytes;
                if (first !== undefined && last !== undefined && last > first) trial.logPerInput = (inside.at(-1)!.logBytes - inside[0]!.logBytes) / (last - first);
              }
              if (inside.length >= 1) trial.mips = median(inside.map((e) => e.mips));
            }
            trialsOut.push(trial);
          }
        } finally {
          s.stop();
        }
        if (logFile !== undefined) {
          await sleep(200); // the recorder is gone (SIGKILL): the file no longer grows
          for (const r of trialsOut.filter((x) => x.system === 'recorded' && x.trial === t && x.logFileStart !== undefined)) {
            r.logContent = logContent(logFile, r.logFileStart!, r.logFileStart! + r.logFileBytes!);
          }
          rmSync(logFile, { force: true });
        }
      }
    }
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await sleep(200);
    hosts.remove();
    if (pinned) spawnSync('taskset', ['-pc', '0-1023', String(process.pid)], { stdio: 'ignore' });
  }
  return summarize(trialsOut, { trials, windowMs, warmupMs, pinned });
}

const f = (x: number | undefined, d = 0) => (x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(d));

/** Medians per system and load, ratios against plain from the same round, and the Markdown tables. */
function summarize(all: ServiceTrial[], meta: { trials: number; windowMs: number; warmupMs: number; pinned: boolean }) {
  const of = (system: System, load: string) => all.filter((r) => r.system === system && r.load === load);
  const rate = (r: ServiceTrial) => r.acknowledged / (r.elapsedMs / 1000);
  const cpuPer = (r: ServiceTrial, who: string) => (r.cpuUs[who] ?? NaN) / r.acknowledged;
  /** Log bytes per second in the window: the recording's growth, or the primary's reports. */
  const logRate = (r: ServiceTrial) => (r.logFileBytes !== undefined ? r.logFileBytes / ((r.endMs - r.startMs) / 1000) : r.logBytesPerSecond ?? NaN);
  const inputRate = (r: ServiceTrial) => (r.guestInputBytes ?? NaN) / ((r.endMs - r.startMs) / 1000);
  const ratioToPlain = (system: System, load: string, g: (r: ServiceTrial) => number) =>
    median(of(system, load).map((r) => {
      const p = of('plain', load).find((x) => x.trial === r.trial);
      return p === undefined ? NaN : g(r) / g(p);
    }));
  const procs: Record<System, string[]> = { plain: ['vm'], recorded: ['vm'], ft: ['primary', 'secondary'], memcached: ['memcached'], nodisk: ['vm'] };
  const label: Record<System, string> = { plain: 'plain (`lockstep run`)', recorded: 'recorded (`lockstep record`)', ft: 'FT (`lockstep primary` + `secondary`)', memcached: 'Debian memcached 1.6 (host, `-t 1`)', nodisk: 'plain, kvd without its disk (`kvd -n`: no write-ahead log)' };
  const summary: Record<string, unknown>[] = [];
  const perf: string[] = [
    `| ${CLIENTS} clients, 50 % sets, 32-byte values | TCP requests/s | ×plain | p50 / p99 ms | UDP requests/s | ×plain | p50 / p99 ms |`,
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  const cpu: string[] = [
    `| CPU µs per request (user + system, \`/proc/<pid>/stat\`) | TCP closed loop | UDP closed loop | TCP at ${EQUAL_RATE}/s | UDP at ${EQUAL_RATE}/s | idle (no requests): CPU of a core |`,
    '|---|---|---|---|---|---|',
  ];
  for (const system of SYSTEMS) {
    const row: Record<string, unknown> = { system };
    const cells: string[] = [];
    for (const load of ['tcp', 'udp']) {
      const rs = of(system, load);
      const m = { rate: median(rs.map(rate)), p50Ms: median(rs.map((r) => r.p50Ms)), p99Ms: median(rs.map((r) => r.p99Ms)), ratio: ratioToPlain(system, load, rate), failed: rs.reduce((n, r) => n + r.failed, 0) };
      row[load] = m;
      // Every round's figure in brackets, in round order: the spread is the noise.
      const rounds = [...rs].sort((a, b) => a.trial - b.trial).map((r) => f(rate(r)));
      cells.push(`${f(m.rate)} [${rounds.join(' ')}]`, system === 'plain' ? '1' : f(m.ratio, 2), `${f(m.p50Ms, 2)} / ${f(m.p99Ms, 2)}`);
    }
    perf.push(`| ${label[system]} | ${cells.join(' | ')} |`);
    const cpuCells: string[] = [];
    for (const load of ['tcp', 'udp', 'tcp-rate', 'udp-rate']) {
      const rs = of(system, load);
      const per: Record<string, number> = {};
      for (const who of [...procs[system], 'load']) per[who] = median(rs.map((r) => cpuPer(r, who)));
      const achieved = median(rs.map(rate));
      row[`${load}CpuUsPerRequest`] = per;
      row[`${load}Rate`] = achieved;
      // Every server process of the system against the plain VM, round by round.
      const serverCpu = (r: ServiceTrial) => procs[r.system].reduce((n, who) => n + cpuPer(r, who), 0);
      const cpuRatio = ratioToPlain(system, load, serverCpu);
      row[`${load}CpuRatioToPlain`] = cpuRatio;
      const ratio = system === 'plain' || system === 'memcached' ? '' : ` (×${f(cpuRatio, 2)} plain)`;
      // FT: the guest's instructions per request, from the primary's MIPS (a moving average it reports).
      const instructions = median(rs.map((r) => ((r.mips ?? NaN) * 1e6) / rate(r)));
      row[`${load}GuestInstructionsPerRequest`] = instructions;
      const guest = system === 'ft' ? `, guest ${f(instructions / 1e3)} k instructions` : '';
      cpuCells.push(`${procs[system].map((who) => `${who} ${f(per[who], 1)}`).join(', ')}${ratio}; load ${f(per.load, 1)}${load.endsWith('rate') ? ` [${f(achieved)}/s]` : ''}${guest}`);
    }
    const idle = of(system, 'idle');
    const idlePerSecond: Record<string, number> = {};
    for (const who of procs[system]) idlePerSecond[who] = median(idle.map((r) => ((r.cpuUs[who] ?? NaN) / (r.endMs - r.startMs)) * 1000));
    row.idleCpuUsPerSecond = idlePerSecond;
    cpuCells.push(procs[system].map((who) => `${who} ${f(idlePerSecond[who]! / 1e4, 1)} %`).join(', '));
    cpu.push(`| ${label[system]} | ${cpuCells.join(' | ')} |`);
    summary.push(row);
  }
  const log: string[] = [
    '| Log | 50 % sets, 32 B: TCP B/request | UDP B/request | TCP Mbit/s | UDP Mbit/s | 1 400-byte UDP sets: requests/s, log ÷ guest input | 1 400-byte TCP sets: requests/s, log ÷ guest input |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  const logSummary: Record<string, unknown> = {};
  for (const system of ['recorded', 'ft'] as const) {
    const perReq = (load: string) => median(of(system, load).map((r) => logRate(r) / rate(r)));
    const mbit = (load: string) => median(of(system, load).map((r) => (logRate(r) * 8) / 1e6));
    const perInput = (load: string) => median(of(system, load).map((r) => r.logPerInput ?? logRate(r) / inputRate(r)));
    const rateOf = (load: string) => median(of(system, load).map(rate));
    const input = (load: string) => of(system, load).map((r) => ({ logBytesPerSecond: logRate(r), guestInputBytesPerSecond: inputRate(r), guestInputFrames: r.guestInputFrames, requests: r.acknowledged }));
    logSummary[system] = { tcpBytesPerRequest: perReq('tcp'), udpBytesPerRequest: perReq('udp'), tcpMbitPerSecond: mbit('tcp'), udpMbitPerSecond: mbit('udp'), udp1400LogPerInput: perInput('udp-1400'), tcp1400LogPerInput: perInput('tcp-1400'), udp1400: input('udp-1400'), tcp1400: input('tcp-1400') };
    log.push(`| ${label[system]} | ${f(perReq('tcp'))} | ${f(perReq('udp'))} | ${f(mbit('tcp'), 2)} | ${f(mbit('udp'), 2)} | ${f(rateOf('udp-1400'))}/s, ${f(perInput('udp-1400'), 3)}× | ${f(rateOf('tcp-1400'))}/s, ${f(perInput('tcp-1400'), 3)}× |`);
  }
  // The recording's content in each window, per request (whole batches starting in the window).
  const content: string[] = [
    '| What the recorded log carries, per request (median) | bytes | frames in: count, data bytes | disk: completions (writes, flushes, reads), data read | clock reads, timer samples | the rest (headers, positions, lengths, clock values) |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  const contentSummary: Record<string, unknown> = {};
  for (const load of ['tcp', 'udp', 'udp-1400', 'tcp-1400']) {
    const rs = of('recorded', load).filter((r) => r.logContent !== undefined);
    const per = (g: (c: LogContent) => number) => median(rs.map((r) => g(r.logContent!) / r.acknowledged));
    const m = {
      bytes: per((c) => c.bytes),
      netRxFrames: per((c) => c.netRxFrames),
      netRxDataBytes: per((c) => c.netRxDataBytes),
      blockDone: per((c) => c.blockDone),
      blockReadBytes: per((c) => c.blockReadBytes),
      clockReads: per((c) => c.clockReads),
      clockSamples: per((c) => c.clockSamples),
      otherBytes: per((c) => c.otherBytes),
    };
    contentSummary[load] = m;
    const desc = load === 'tcp' || load === 'udp' ? `${load.toUpperCase()}, 50 % sets, 32 B` : `${load.slice(0, 3).toUpperCase()}, 1 400-byte sets`;
    content.push(`| ${desc} | ${f(m.bytes)} | ${f(m.netRxFrames, 2)}, ${f(m.netRxDataBytes)} | ${f(m.blockDone, 2)}, ${f(m.blockReadBytes)} | ${f(m.clockReads, 1)}, ${f(m.clockSamples, 2)} | ${f(m.otherBytes)} |`);
  }
  // The FT primary's logging channel, per request: batches sealed, LOG frames sent (one HMAC and one
  // header each), and the log as it goes on the wire (frames included) per byte of guest input.
  const channel: string[] = [
    '| FT logging channel, per request (median) | log bytes | batches | LOG frames | on the wire ÷ guest input (52 bytes a frame added) |',
    '|---|---:|---:|---:|---:|',
  ];
  const channelSummary: Record<string, unknown> = {};
  for (const load of ['tcp', 'udp', 'udp-1400', 'tcp-1400']) {
    const rs = of('ft', load).filter((r) => r.logBatchesPerSecond !== undefined);
    const m = {
      bytes: median(rs.map((r) => logRate(r) / rate(r))),
      batches: median(rs.map((r) => r.logBatchesPerSecond! / rate(r))),
      frames: median(rs.map((r) => r.logFramesPerSecond! / rate(r))),
      wirePerInput: median(rs.map((r) => (r.logPerInput ?? logRate(r) / inputRate(r)) * (1 + (52 * r.logFramesPerSecond!) / logRate(r)))),
    };
    channelSummary[load] = m;
    const desc = load === 'tcp' || load === 'udp' ? `${load.toUpperCase()}, 50 % sets, 32 B` : `${load.slice(0, 3).toUpperCase()}, 1 400-byte sets`;
    channel.push(`| ${desc} | ${f(m.bytes)} | ${f(m.batches, 2)} | ${f(m.frames, 2)} | ${f(m.wirePerInput, 3)}× |`);
  }
  return { meta, trials: all, summary, log: logSummary, logContent: contentSummary, channel: channelSummary, tables: [perf.join('\n'), cpu.join('\n'), log.join('\n'), content.join('\n'), channel.join('\n')] };
}
