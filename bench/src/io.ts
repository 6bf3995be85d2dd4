// `npm run bench -- io`: I/O throughput of kvserver (guest/bin/kvserver.elf: memcached over UDP, WAL on
// virtio-blk) on a real clock, each trial its own process (io-trial.js), plain and recorded trials
// interleaved. Reports requests/s and latency under the LoadGenerator, host → guest datagram rate and
// Mbit/s, log bandwidth against the 1 Gbit/s budget, WAL sets/s (block writes + FLUSH) and the read
// rate of kvserver's boot recovery over a host-built WAL.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { IoTrial } from './io-trial.js';
import { BUILD_DIR, RESULTS_DIR, ROOT } from './paths.js';
import { Progress } from './progress.js';
import { median } from './stats.js';

const BUDGET = 125_000_000; // bytes/s: the 1 Gbit/s logging budget
const DISK_BYTES = 4 << 20;
const RECOVER_RECORDS = 1300; // 3 sectors each: 2.0 MB of WAL, about all one log half holds (4096 sectors)

const { values: opts } = parseArgs({
  args: process.argv.slice(2),
  options: { trials: { type: 'string', default: '3' }, quick: { type: 'boolean' } },
});
const trials = opts.quick ? 1 : Number(opts.trials);
const durationMs = opts.quick ? '1000' : '3000';
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-bench-io-'));

interface Spec {
  id: string;
  label: string;
  args: string[];
}
const SPECS: Spec[] = [
  { id: 'kv-plain', label: 'kvserver, 50 % sets: plain', args: ['kv', 'plain', '@disk', durationMs, '0.5'] },
  { id: 'kv-record', label: 'kvserver, 50 % sets: recorded', args: ['kv', 'record', '@disk', durationMs, '0.5'] },
  { id: 'kv-sets', label: 'kvserver, 100 % sets: plain', args: ['kv', 'plain', '@disk', durationMs, '1'] },
  { id: 'rx-small-plain', label: 'receive, 17 B requests: plain', args: ['rx', 'plain', '@disk', durationMs, 'small'] },
  { id: 'rx-small-record', label: 'receive, 17 B requests: recorded', args: ['rx', 'record', '@disk', durationMs, 'small'] },
  { id: 'rx-large-plain', label: 'receive, 1 400 B requests: plain', args: ['rx', 'plain', '@disk', durationMs, 'large'] },
  { id: 'rx-large-record', label: 'receive, 1 400 B requests: recorded', args: ['rx', 'record', '@disk', durationMs, 'large'] },
  { id: 'recover', label: `boot recovery, ${RECOVER_RECORDS} WAL records`, args: ['recover', '@disk', String(RECOVER_RECORDS)] },
  { id: 'recover-empty', label: 'boot, empty WAL', args: ['recover', '@disk', '0'] },
];
const progress = new Progress(SPECS.length * trials);

function trial(spec: Spec, n: number): IoTrial {
  const disk = join(tmp, `${spec.id}-${n}.img`);
  writeFileSync(disk, '');
  truncateSync(disk, DISK_BYTES); // a zeroed raw image; recover overwrites it with its WAL
  const args = [join(BUILD_DIR, 'io-trial.js'), ...spec.args.map((a) => (a === '@disk' ? disk : a))];
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  rmSync(disk, { force: true });
  if (r.status !== 0) throw new Error(`io trial ${spec.id} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as IoTrial;
}

const all = new Map<string, IoTrial[]>(SPECS.map((s) => [s.id, []]));
try {
  for (let t = 1; t <= trials; t++) {
    for (const spec of SPECS) {
      progress.step(`trial ${t}/${trials}: ${spec.label}`);
      all.get(spec.id)!.push(trial(spec, t));
    }
  }
  progress.end();
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const med = (id: string, f: (x: IoTrial) => number) => median(all.get(id)!.map(f));
const mbit = (bytes: number, s: number) => (bytes * 8) / s / 1e6;
const kv = {
  plainRps: med('kv-plain', (x) => x.requestsPerSecond),
  plainP50: med('kv-plain', (x) => x.p50Ms),
  plainP99: med('kv-plain', (x) => x.p99Ms),
  recordRps: med('kv-record', (x) => x.requestsPerSecond),
  recordP50: med('kv-record', (x) => x.p50Ms),
  recordP99: med('kv-record', (x) => x.p99Ms),
  recordLogBps: med('kv-record', (x) => x.logBytesPerSecond),
  setsPerSecond: med('kv-sets', (x) => x.setsPerSecond),
  setsP50: med('kv-sets', (x) => x.p50Ms),
  setsP99: med('kv-sets', (x) => x.p99Ms),
};
function rx(variant: 'small' | 'large') {
  const p = `rx-${variant}-plain`, r = `rx-${variant}-record`;
  return {
    plainPps: med(p, (x) => x.received / x.seconds),
    plainRxMbit: med(p, (x) => mbit(x.rxPayloadBytes, x.seconds)),
    plainTxMbit: med(p, (x) => mbit(x.txPayloadBytes, x.seconds)),
    plainLoss: med(p, (x) => 1 - x.received / Math.max(x.sent, 1)),
    recordPps: med(r, (x) => x.received / x.seconds),
    recordRxMbit: med(r, (x) => mbit(x.rxPayloadBytes, x.seconds)),
    recordTxMbit: med(r, (x) => mbit(x.txPayloadBytes, x.seconds)),
    recordLogBps: med(r, (x) => x.logBytesPerSecond),
    logPerInput: med(r, (x) => x.logBytesWindow / Math.max(x.rxPayloadBytes, 1)),
  };
}
const small = rx('small');
const large = rx('large');
const recBoot = med('recover', (x) => x.seconds);
const emptyBoot = med('recover-empty', (x) => x.seconds);
const walBytes = all.get('recover')![0]!.walBytes;
const readMBps = walBytes / (recBoot - emptyBoot) / 1e6;

const pct = (f: number) => `${(f * 100).toFixed(2)} %`;
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }).replace(/,/g, ' ');
const rxRow = (name: string, x: ReturnType<typeof rx>) => [
  `| ${name}, plain | ${fmt(x.plainPps)} | ${fmt(x.plainRxMbit, 1)} in / ${fmt(x.plainTxMbit, 1)} out | | | | |`,
  `| ${name}, recorded | ${fmt(x.recordPps)} | ${fmt(x.recordRxMbit, 1)} in / ${fmt(x.recordTxMbit, 1)} out | ${(x.recordPps / x.plainPps).toFixed(2)} | ${fmt(x.recordLogBps / 1e6, 2)} MB/s | ${pct(x.recordLogBps / BUDGET)} | ${x.logPerInput.toFixed(2)}× |`,
];
const table = [
  '| Scenario | replies/s | payload Mbit/s | recorded / plain | log bandwidth | of the 1 Gbit/s budget | log / guest input |',
  '|---|---:|---:|---:|---:|---:|---:|',
  `| kvserver, 50 % sets, plain: p50 ${kv.plainP50.toFixed(2)} ms, p99 ${kv.plainP99.toFixed(2)} ms | ${fmt(kv.plainRps)} | | | | | |`,
  `| kvserver, 50 % sets, recorded: p50 ${kv.recordP50.toFixed(2)} ms, p99 ${kv.recordP99.toFixed(2)} ms | ${fmt(kv.recordRps)} | | ${(kv.recordRps / kv.plainRps).toFixed(2)} | ${fmt(kv.recordLogBps / 1e6, 2)} MB/s | ${pct(kv.recordLogBps / BUDGET)} | |`,
  `| kvserver, 100 % sets (each a 512 B WAL write + FLUSH), plain: p50 ${kv.setsP50.toFixed(2)} ms, p99 ${kv.setsP99.toFixed(2)} ms | ${fmt(kv.setsPerSecond)} sets/s = ${fmt((kv.setsPerSecond * 512) / 1e6, 2)} MB/s written | | | | | |`,
  ...rxRow('receive, 17 B `version` requests', small),
  ...rxRow('receive, 1 400 B padded `version` requests', large),
  `| kvserver boot recovery: ${fmt(walBytes / 1e6, 2)} MB of WAL (${RECOVER_RECORDS} × 3-sector records) in ${(recBoot * 1e3).toFixed(0)} ms (empty WAL: ${(emptyBoot * 1e3).toFixed(1)} ms) | ${fmt(readMBps, 1)} MB/s read | | | | | |`,
].join('\n');
const note =
  `Real clock, each trial its own process, ${trials} trial${trials === 1 ? '' : 's'} of ${Number(durationMs) / 1e3} s per scenario (medians; plain and recorded interleaved). ` +
  `kvserver: LoadGenerator, 4 closed-loop clients over UDP, 100 keys, 100-byte values, so requests/s is latency-bound, not the server's ceiling. ` +
  `Receive: 4 host sockets through the UdpForwarder, 32 requests in flight each, replies counted; "in" is the request payload the guest took (UDP payload incl. the 8-byte memcached frame header), "out" its replies. ` +
  `Log bandwidth is the Recorder's output during the load window; log / guest input divides it by the request payload. ` +
  `Block write = sets/s of the 100 % set run: each set is one 1-sector WAL write followed by a FLUSH, answered only after both, with 4 closed-loop clients — a latency-bound figure, not a bandwidth one. ` +
  `Block read = WAL bytes / (boot time with the WAL − boot time with an empty WAL); it includes kvserver's per-record CRC-32 (nibble table) and hash-table inserts, so it is the recovery rate, not raw virtio-blk read bandwidth. ` +
  `Not measured: raw virtio-blk read/write MB/s and IOPS with large or queued requests (the disk example guest does 4 sectors only; no block benchmark guest exists), guest → host transmit at its own ceiling (transmit is measured only as replies), and a recorded 100 % set run (the recorded kvserver run is 50 % sets). ` +
  `Machine: ${cpus()[0]?.model ?? '?'}, ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(2)}.`;
process.stdout.write(`\n${table}\n\n${note}\n`);
const name = opts.quick ? 'io-quick' : 'io';
writeFileSync(
  join(RESULTS_DIR, `${name}.json`),
  JSON.stringify(
    { date: new Date().toISOString(), loadavg: loadavg(), trials, durationMs: Number(durationMs), budget: BUDGET, summary: { kv, small, large, recovery: { walBytes, bootSeconds: recBoot, emptyBootSeconds: emptyBoot, readMBps } }, trialsById: Object.fromEntries(all) },
    null,
    2,
  ) + '\n',
);
if (!opts.quick) writeFileSync(join(RESULTS_DIR, 'README-io-table.md'), `${table}\n\n${note}\n`);
