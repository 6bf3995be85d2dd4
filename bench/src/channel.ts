// Logging channel throughput and ACK latency on loopback: 64 KiB LOG frames with HMAC, and with TLS
// as well, in MB/s against the 1 Gbit/s logging budget (125 MB/s) and against raw TCP measured in the
// same run; ACK round trip p50/p99. The receiver runs in a worker thread, so each end has its own thread.
//   npx tsc -p bench/tsconfig.json && node bench/build/bench/src/channel.js [--trials N] [--quick] [--json PATH]
// Prints a table; writes bench/results/channel.json unless --json '' is given.
import { execFileSync, spawnSync } from 'node:child_process';
import { createSecretKey, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ChannelServer, connectChannel, type Channel, type ChannelTlsOptions } from '../../src/protocol/channel.js';
import { FrameDecoder, FrameEncoder, type FrameTrailer } from '../../src/protocol/frame.js';
import { MessageType, decodeMessage } from '../../src/protocol/messages.js';
import { RESULTS_DIR } from './paths.js';
import { fmt, max, median, min } from './stats.js';

const BUDGET_BYTES_PER_S = 125e6; // 1 Gbit/s
const CHUNK = 64 << 10;
const KEY = Buffer.alloc(32, 0x42);
const VM_ID = 'bench-vm';
const HOST = '127.0.0.1';

type Kind = 'tcp' | 'channel' | 'tls';
interface WorkerInit {
  kind: Kind;
  tls?: ChannelTlsOptions;
}
type ToWorker = { mode: 'count'; expect: number } | { mode: 'ack' } | { mode: 'stop' };
type FromWorker = { port: number } | { ready: true } | { done: number } | { stopped: true };

// ---- receiver (worker thread) ----------------------------------------------------------------------

async function receiver(init: WorkerInit): Promise<void> {
  const port = parentPort!;
  let mode: ToWorker = { mode: 'ack' };
  let received = 0;
  const account = (n: number) => {
    if (mode.mode !== 'count') return;
    received += n;
    if (received >= mode.expect) {
      port.postMessage({ done: received } satisfies FromWorker);
      received = 0;
      mode = { mode: 'ack' };
    }
  };
  let stop: () => Promise<void>;
  if (init.kind === 'tcp') {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.setNoDelay(true);
      s.on('data', (d: Buffer) => account(d.length));
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, HOST, () => resolve()));
    port.postMessage({ port: (server.address() as net.AddressInfo).port } satisfies FromWorker);
    stop = () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  } else {
    const server = new ChannelServer({ key: KEY, vmId: VM_ID, role: 'secondary', ...(init.tls ? { tls: init.tls } : {}) });
    server.on('channel', (ch) => {
      let lsn = 0n;
      ch.on('message', (m) => {
        if (m.type !== 'log') return;
        if (mode.mode === 'ack') ch.send({ type: 'ack', lsn: lsn++, instret: 0n, bytes: BigInt(m.batches.length) });
        else account(m.batches.length);
      });
    });
    server.on('rejected', (reason) => {
      throw new Error(`bench receiver rejected a connection: ${reason}`);
    });
    const { port: p } = await server.listen(0, HOST);
    port.postMessage({ port: p } satisfies FromWorker);
    stop = () => server.close();
  }
  port.on('message', (m: ToWorker) => {
    if (m.mode === 'stop') {
      void stop().then(() => port.postMessage({ stopped: true } satisfies FromWorker));
      return;
    }
    mode = m;
    received = 0;
    // Confirmed before the sender starts: frames that overtook this message would go uncounted.
    port.postMessage({ ready: true } satisfies FromWorker);
  });
}

if (!isMainThread) {
  await receiver(workerData as WorkerInit);
} else {
  await main();
}

// ---- sender (main thread) --------------------------------------------------------------------------

interface Receiver {
  port: number;
  send(m: ToWorker): void;
  next(): Promise<FromWorker>;
  stop(): Promise<void>;
}

async function startReceiver(init: WorkerInit): Promise<Receiver> {
  const worker = new Worker(new URL(import.meta.url), { workerData: init });
  const inbox: FromWorker[] = [];
  const waiting: ((m: FromWorker) => void)[] = [];
  let failure: Error | undefined;
  worker.on('error', (err) => {
    failure = err;
    process.stderr.write(`bench receiver failed: ${err.stack ?? err}\n`);
    process.exit(1);
  });
  worker.on('message', (m: FromWorker) => {
    const w = waiting.shift();
    if (w) w(m);
    else inbox.push(m);
  });
  const next = () => {
    if (failure) return Promise.reject(failure);
    const m = inbox.shift();
    return m ? Promise.resolve(m) : new Promise<FromWorker>((resolve) => waiting.push(resolve));
  };
  const first = await next();
  if (!('port' in first)) throw new Error('bench receiver did not report its port');
  return {
    port: first.port,
    send: (m) => worker.postMessage(m),
    next,
    async stop() {
      worker.postMessage({ mode: 'stop' } satisfies ToWorker);
      await next();
      await worker.terminate();
    },
  };
}

/** Sends `bytes` in 64 KiB writes, honouring back-pressure; resolves with bytes/s once the receiver has them all. */
async function throughput(r: Receiver, write: (chunk: Uint8Array) => boolean, waitDrain: () => Promise<void>, bytes: number): Promise<number> {
  r.send({ mode: 'count', expect: bytes });
  const ready = await r.next();
  if (!('ready' in ready)) throw new Error(`receiver answered ${JSON.stringify(ready)} to a mode change`);
  // A small pool of distinct buffers: a written chunk is referenced until the socket is done with it.
  const pool = Array.from({ length: 64 }, () => randomBytes(CHUNK));
  const t0 = performance.now();
  for (let sent = 0, i = 0; sent < bytes; sent += CHUNK, i++) {
    if (!write(pool[i % pool.length]!)) await waitDrain();
  }
  const done = await r.next();
  const seconds = (performance.now() - t0) / 1000;
  if (!('done' in done) || done.done !== bytes) throw new Error(`receiver reported ${JSON.stringify(done)}, expected ${bytes} bytes`);
  return bytes / seconds;
}

/** Sequential LOG → ACK round trips; returns the round-trip times in milliseconds. */
async function ackRoundTrips(ch: Channel, payloadBytes: number, count: number): Promise<number[]> {
  const payload = randomBytes(payloadBytes);
  const rtts: number[] = [];
  for (let i = 0; i < count; i++) {
    const acked = new Promise<void>((resolve) => ch.once('message', () => resolve()));
    const t0 = performance.now();
    ch.sendLog(payload);
    await acked;
    rtts.push(performance.now() - t0);
  }
  return rtts;
}

/**
 * The framing's own ceiling on one core, without sockets: sealing 64 KiB LOG frames, and verifying and
 * decoding them from a stream cut into 64 KiB reads (so most payloads straddle two reads, as on a socket).
 */
function codec(frames: number): { encodeBytesPerS: number; decodeBytesPerS: number } {
  const trailer: FrameTrailer = { kind: 'hmac', key: createSecretKey(KEY) };
  const payload = randomBytes(CHUNK);
  const enc = new FrameEncoder({ trailer });
  const pieces: Uint8Array[] = [];
  let t0 = performance.now();
  for (let i = 0; i < frames; i++) {
    const f = enc.encode(MessageType.LOG, payload);
    pieces.push(f.header, f.payload, f.trailer);
  }
  const encodeBytesPerS = (frames * CHUNK) / ((performance.now() - t0) / 1000);
  const wire = Buffer.concat(pieces);
  const dec = new FrameDecoder({ trailer });
  let bytes = 0;
  t0 = performance.now();
  for (let at = 0; at < wire.length; at += CHUNK) {
    dec.push(wire.subarray(at, at + CHUNK));
    for (let f = dec.next(); f; f = dec.next()) {
      const m = decodeMessage(f.type, f.payload);
      if (m.type === 'log') bytes += m.batches.length;
    }
  }
  const decodeBytesPerS = bytes / ((performance.now() - t0) / 1000);
  if (bytes !== frames * CHUNK) throw new Error(`codec decoded ${bytes} of ${frames * CHUNK} bytes`);
  return { encodeBytesPerS, decodeBytesPerS };
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Throwaway CA and two leaf certificates made with the openssl CLI, or a reason why not. */
function makeCerts(): { server: ChannelTlsOptions; client: ChannelTlsOptions } | string {
  const probe = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (probe.status !== 0) return `openssl CLI not available (${probe.error?.message ?? probe.stderr})`;
  const dir = mkdtempSync(join(os.tmpdir(), 'lockstep-bench-tls-'));
  try {
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    writeFileSync(join(dir, 'leaf.ext'), 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n');
    ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-keyout', 'ca.key', '-out', 'ca.crt',
      '-subj', '/CN=lockstep bench ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
    for (const [name, serial] of [['server', '1'], ['client', '2']] as const) {
      ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', serial, '-days', '1', '-out', `${name}.crt`, '-extfile', 'leaf.ext');
    }
    const read = (f: string) => readFileSync(join(dir, f), 'utf8');
    return {
      server: { cert: read('server.crt'), key: read('server.key'), ca: read('ca.crt') },
      client: { cert: read('client.crt'), key: read('client.key'), ca: read('ca.crt') },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface ChannelBenchResult {
  name: string;
  what: string;
  bytesPerTrial: number;
  /** Bytes per second of each trial, from the first write to the receiver holding the last byte. */
  samples: number[];
  medianBytesPerS: number;
  /** medianBytesPerS / 125 MB/s. */
  budgetMultiple: number;
  /** medianBytesPerS / raw TCP's median in the same run. */
  ratioToTcp: number | null;
  /** LOG → ACK round trips (ms), channel scenarios only. */
  ack?: { payloadBytes: number; count: number; p50Ms: number; p99Ms: number; maxMs: number }[];
}

async function main(): Promise<void> {
  const { values: opts } = parseArgs({
    options: {
      trials: { type: 'string', default: '5' },
      quick: { type: 'boolean', default: false },
      json: { type: 'string', default: join(RESULTS_DIR, 'channel.json') },
    },
  });
  const trials = opts.quick ? 1 : Number(opts.trials);
  if (!Number.isInteger(trials) || trials < 1) throw new Error(`--trials must be a positive integer, got ${opts.trials}`);
  const bytes = (opts.quick ? 64 : 512) * CHUNK * 16; // 64 MiB quick, 512 MiB full
  const rtts = opts.quick ? 300 : 3000;

  const certs = makeCerts();
  const scenarios: { kind: Kind; name: string; what: string }[] = [
    { kind: 'tcp', name: 'raw TCP', what: 'net.Socket, 64 KiB writes, no framing (the reference)' },
    { kind: 'channel', name: 'channel (HMAC)', what: 'LOG frames of 64 KiB, HMAC-SHA-256 sealed and verified, sendLog() zero-copy' },
    { kind: 'tls', name: 'channel (TLS + HMAC)', what: 'as above inside TLS with client certificates (AES-GCM or ChaCha20 as negotiated)' },
  ];
  // Every end is set up first and the trials then alternate between scenarios, so that drift in the
  // machine's load hits all of them alike (the ratio to raw TCP is the robust number).
  interface Running {
    s: (typeof scenarios)[number];
    r: Receiver;
    write(c: Uint8Array): boolean;
    drain(): Promise<void>;
    close(): void;
    channel?: Channel;
    samples: number[];
  }
  const running: Running[] = [];
  for (const s of scenarios) {
    if (s.kind === 'tls' && typeof certs === 'string') {
      process.stdout.write(`skipping ${s.name}: ${certs}\n`);
      continue;
    }
    const tls = s.kind === 'tls' && typeof certs !== 'string' ? certs : undefined;
    const r = await startReceiver({ kind: s.kind, ...(tls ? { tls: tls.server } : {}) });
    if (s.kind === 'tcp') {
      const sock = net.connect({ host: HOST, port: r.port, noDelay: true });
      await new Promise<void>((resolve, reject) => sock.once('connect', () => resolve()).once('error', reject));
      running.push({
        s, r, samples: [],
        write: (c) => sock.write(c),
        drain: () => new Promise((resolve) => sock.once('drain', () => resolve())),
        close: () => sock.destroy(),
      });
    } else {
      const ch = await connectChannel({ host: HOST, port: r.port, key: KEY, vmId: VM_ID, role: 'primary', ...(tls ? { tls: tls.client } : {}) });
      running.push({
        s, r, samples: [], channel: ch,
        write: (c) => ch.sendLog(c),
        drain: () => new Promise((resolve) => ch.once('drain', () => resolve())),
        close: () => ch.close('bench done'),
      });
    }
  }
  const acks = new Map<Running, NonNullable<ChannelBenchResult['ack']>>();
  for (const x of running) {
    if (!x.channel) continue;
    process.stderr.write(`${x.s.name}: ACK round trips …\n`);
    const list: NonNullable<ChannelBenchResult['ack']> = [];
    for (const payloadBytes of [256, CHUNK]) {
      await ackRoundTrips(x.channel, payloadBytes, Math.min(100, rtts)); // warm-up
      const xs = await ackRoundTrips(x.channel, payloadBytes, rtts);
      list.push({ payloadBytes, count: xs.length, p50Ms: percentile(xs, 50), p99Ms: percentile(xs, 99), maxMs: max(xs) });
    }
    acks.set(x, list);
  }
  const codecSamples: { encodeBytesPerS: number; decodeBytesPerS: number }[] = [];
  for (let t = 0; t < trials; t++) {
    process.stderr.write(`throughput trial ${t + 1}/${trials} …\n`);
    for (const x of running) x.samples.push(await throughput(x.r, x.write, x.drain, bytes));
    codecSamples.push(codec(opts.quick ? 512 : 4096));
  }
  const codecResult = {
    what: 'one core, no sockets: seal 64 KiB LOG frames (HMAC-SHA-256); verify and decode them from 64 KiB reads',
    encodeBytesPerS: median(codecSamples.map((c) => c.encodeBytesPerS)),
    decodeBytesPerS: median(codecSamples.map((c) => c.decodeBytesPerS)),
    samples: codecSamples,
  };
  for (const x of running) {
    x.close();
    await x.r.stop();
  }
  const tcp = running.find((x) => x.s.kind === 'tcp');
  const tcpMedian = tcp ? median(tcp.samples) : null;
  const results: ChannelBenchResult[] = running.map((x) => {
    const m = median(x.samples);
    const ack = acks.get(x);
    return {
      name: x.s.name,
      what: x.s.what,
      bytesPerTrial: bytes,
      samples: x.samples,
      medianBytesPerS: m,
      budgetMultiple: m / BUDGET_BYTES_PER_S,
      ratioToTcp: tcpMedian === null ? null : m / tcpMedian,
      ...(ack ? { ack } : {}),
    };
  });

  const MB = (x: number): string => fmt(x / 1e6, 0);
  const pad = (x: string, n: number): string => x.padEnd(n);
  process.stdout.write(
    `\nchannel throughput on loopback: ${CHUNK >> 10} KiB LOG frames, ${bytes >> 20} MiB per trial, ${trials} trial(s); ` +
      `budget 1 Gbit/s = 125 MB/s\n\n` +
      `${pad('scenario', 24)}${pad('median MB/s', 13)}${pad('min..max', 14)}${pad('x budget', 10)}${pad('vs TCP', 8)}ACK RTT p50 / p99 (256 B; 64 KiB)\n`,
  );
  for (const r of results) {
    const ackText = r.ack
      ? r.ack.map((a) => `${fmt(a.p50Ms * 1000, 0)} / ${fmt(a.p99Ms * 1000, 0)} µs`).join('; ')
      : '';
    process.stdout.write(
      `${pad(r.name, 24)}${pad(MB(r.medianBytesPerS), 13)}${pad(`${MB(min(r.samples))}..${MB(max(r.samples))}`, 14)}` +
        `${pad(fmt(r.budgetMultiple, 1) + 'x', 10)}${pad(r.ratioToTcp === null ? 'n/a' : fmt(r.ratioToTcp, 2), 8)}${ackText}\n`,
    );
  }

  process.stdout.write(
    `\nframing alone (${codecResult.what}): encode ${MB(codecResult.encodeBytesPerS)} MB/s, decode ${MB(codecResult.decodeBytesPerS)} MB/s\n`,
  );

  if (opts.json) {
    mkdirSync(dirname(opts.json), { recursive: true });
    const cpu = os.cpus()[0]?.model ?? 'unknown';
    writeFileSync(
      opts.json,
      JSON.stringify({ date: new Date().toISOString(), node: process.version, cpu, cpus: os.cpus().length, loadAverage: os.loadavg(), chunkBytes: CHUNK, trials, quick: opts.quick, results, codec: codecResult }, null, 2) + '\n',
    );
  }
}
