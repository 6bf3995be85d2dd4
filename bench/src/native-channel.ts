// The native data path alone (native/channel, through the test addon): synthetic sealed batches from a
// producer thread through a sender LogChannel, TCP loopback (or a socketpair), a receiver LogChannel
// that verifies every HMAC, to a consumer thread that checks every byte; every batch acknowledged.
//   npm run bench -- channel [--trials N] [--gb X] [--quick] [--json PATH]
// Reports Gbit/s of batch bytes, and CPU seconds per GB: of each channel thread, and of the whole
// process (producer and consumer included). On a shared machine the CPU figures are the steady ones:
// "per-core Gbit/s" is 8 / (the busier channel thread's CPU s/GB), what the channel carries when each
// end has a core of its own. Writes bench/results/native-channel.json unless --json '' is given.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { PORTABLE, SHA_NI, channelAddon, type LoopbackResult } from '../../test/helpers/channel-addon.js';
import { RESULTS_DIR } from './paths.js';
import { fmt, max, median, min } from './stats.js';

const native = channelAddon();

interface Scenario {
  name: string;
  what: string;
  run: (bytes: number) => Sample;
}
interface Sample {
  gbitPerS: number;
  processCpuSPerGB: number;
  senderCpuSPerGB?: number;
  receiverCpuSPerGB?: number;
  perCoreGbitPerS?: number;
}

function channelRun(opts: { tcp: boolean; impl: number; minRecords: number; maxRecords: number }, bytes: number): Sample {
  const mean = BATCH_HEADER + (opts.minRecords + opts.maxRecords) / 2;
  const r: LoopbackResult = native.loopback({ ...opts, batches: Math.max(1, Math.round(bytes / mean)), timeoutMs: 600_000 });
  if (r.consumerError || r.timedOut || r.ackedLsn1 !== r.batches || r.senderEnd.name !== 'NONE' || r.receiverEnd.name !== 'NONE') {
    throw new Error(`native channel run failed: ${JSON.stringify({ ...r, sender: undefined, receiver: undefined })}`);
  }
  const gb = r.bytes / 1e9;
  const s = r.sender.cpuNs / 1e9 / gb;
  const v = r.receiver.cpuNs / 1e9 / gb;
  return {
    gbitPerS: (r.bytes * 8) / r.ns,
    processCpuSPerGB: r.cpuSeconds / gb,
    senderCpuSPerGB: s,
    receiverCpuSPerGB: v,
    perCoreGbitPerS: 8 / Math.max(s, v),
  };
}

function rawRun(tcp: boolean, bytes: number): Sample {
  const r = native.rawLoopback({ bytes, tcp });
  return { gbitPerS: (r.bytes * 8) / r.ns, processCpuSPerGB: r.cpuSeconds / (r.bytes / 1e9) };
}

const BATCH_HEADER = 48;
const LARGE = { minRecords: 32 << 10, maxRecords: 96 << 10 };
const SMALL = { minRecords: 0, maxRecords: 8 << 10 };

async function main(): Promise<void> {
  const { values: opts } = parseArgs({
    options: { trials: { type: 'string', default: '3' }, gb: { type: 'string' }, quick: { type: 'boolean', default: false }, json: { type: 'string' } },
  });
  const trials = opts.quick ? 1 : Number(opts.trials);
  const bytes = Math.round(Number(opts.gb ?? (opts.quick ? '0.25' : '2')) * 1e9);
  const sha = native.implAvailable(SHA_NI) ? SHA_NI : PORTABLE;
  const shaName = sha === SHA_NI ? 'SHA-NI' : 'portable';
  const scenarios: Scenario[] = [
    { name: 'raw TCP', what: 'TCP loopback, 1 MiB writes, no channel: the ceiling', run: (b) => rawRun(true, b) },
    { name: `TCP, ${shaName}, 32-96 KiB`, what: 'TCP loopback; batches of 32-96 KiB of records, up to 1 MiB a LOG frame', run: (b) => channelRun({ tcp: true, impl: sha, ...LARGE }, b) },
    { name: `TCP, ${shaName}, 0-8 KiB`, what: 'TCP loopback; batches of 0-8 KiB of records (kvserver-like), coalesced', run: (b) => channelRun({ tcp: true, impl: sha, ...SMALL }, b / 2) },
    { name: `unix, ${shaName}, 32-96 KiB`, what: 'AF_UNIX socketpair; large batches', run: (b) => channelRun({ tcp: false, impl: sha, ...LARGE }, b) },
  ];
  if (sha === SHA_NI) {
    scenarios.push({ name: 'TCP, portable, 32-96 KiB', what: 'TCP loopback; large batches; SHA-256 without SHA-NI', run: (b) => channelRun({ tcp: true, impl: PORTABLE, ...LARGE }, b / 4) });
  }
  const samples = new Map<Scenario, Sample[]>(scenarios.map((s) => [s, []]));
  for (let t = 0; t < trials; t++) {
    for (const s of scenarios) {
      process.stderr.write(`trial ${t + 1}/${trials}: ${s.name} …\n`);
      samples.get(s)!.push(s.run(bytes));
    }
  }
  const med = (xs: Sample[], k: keyof Sample): number | undefined => (xs[0]?.[k] === undefined ? undefined : median(xs.map((x) => x[k]!)));
  const results = scenarios.map((s) => {
    const xs = samples.get(s)!;
    const g = xs.map((x) => x.gbitPerS);
    return {
      name: s.name, what: s.what, samples: xs,
      medianGbitPerS: median(g), minGbitPerS: min(g), maxGbitPerS: max(g),
      processCpuSPerGB: med(xs, 'processCpuSPerGB'), senderCpuSPerGB: med(xs, 'senderCpuSPerGB'),
      receiverCpuSPerGB: med(xs, 'receiverCpuSPerGB'), perCoreGbitPerS: med(xs, 'perCoreGbitPerS'),
    };
  });
  const pad = (x: string, n: number): string => x.padEnd(n);
  process.stdout.write(
    `\nnative channel on loopback, HMAC-SHA-256 on every frame; ${fmt(bytes / 1e9, 2)} GB per trial, ${trials} trial(s); ` +
      `${os.cpus().length} CPUs, load average ${fmt(os.loadavg()[0], 1)}\n\n` +
      `${pad('scenario', 28)}${pad('Gbit/s median', 15)}${pad('min..max', 14)}${pad('CPU s/GB: process', 19)}${pad('sender', 8)}${pad('receiver', 10)}per-core Gbit/s\n`,
  );
  for (const r of results) {
    process.stdout.write(
      `${pad(r.name, 28)}${pad(fmt(r.medianGbitPerS, 2), 15)}${pad(`${fmt(r.minGbitPerS, 1)}..${fmt(r.maxGbitPerS, 1)}`, 14)}` +
        `${pad(fmt(r.processCpuSPerGB, 3), 19)}${pad(fmt(r.senderCpuSPerGB, 3), 8)}${pad(fmt(r.receiverCpuSPerGB, 3), 10)}${fmt(r.perCoreGbitPerS, 1)}\n`,
    );
  }
  const json = opts.json ?? join(RESULTS_DIR, 'native-channel.json');
  if (json) {
    mkdirSync(dirname(json), { recursive: true });
    writeFileSync(json, JSON.stringify({ date: new Date().toISOString(), cpus: os.cpus().length, loadavg: os.loadavg(), bytesPerTrial: bytes, trials, results }, null, 2) + '\n');
    process.stdout.write(`\nwrote ${json}\n`);
  }
}

await main();
