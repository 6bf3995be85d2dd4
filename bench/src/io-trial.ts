// One I/O trial in its own process, run by bench/src/io.ts:
//   node io-trial.js kv       plain|record <disk> <durationMs> <setRatio>
//   node io-trial.js rx       plain|record <disk> <durationMs> small|large
//   node io-trial.js recover  <disk> <records>
// kv: kvserver (real clock, net + disk + rng) under the LoadGenerator (4 clients, 100 keys, 100-byte
// values). rx: several host sockets blast `version` requests (small: 17-byte payload; large: padded
// with spaces to 1 400 bytes) through the UdpForwarder, keeping a window in flight, and count replies.
// recover: writes a WAL of <records> 1 KiB set records (3 sectors each) on the host, then times kvserver's
// boot (run() start → "listening" on the console), which replays them. Prints one JSON line.
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { LoadGenerator, Machine, Recorder, UdpForwarder } from 'lockstep';
import { GUEST_BIN } from './paths.js';
import { interpreterUnlessAsked } from './engine.js';

interpreterUnlessAsked();

export interface IoTrial {
  scenario: 'kv' | 'rx' | 'recover';
  mode: 'plain' | 'record';
  variant: string;
  /** Seconds of the measured window (load or blast; boot time for recover). */
  seconds: number;
  bootMs: number;
  requests: number;
  sets: number;
  failed: number;
  retries: number;
  requestsPerSecond: number;
  setsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** rx: datagrams sent/received by the host and payload bytes both ways. */
  sent: number;
  received: number;
  rxPayloadBytes: number;
  txPayloadBytes: number;
  logBytes: number;
  logBytesWindow: number;
  logBytesPerSecond: number;
  instret: string;
  walBytes: number;
  console: string;
}

const [scenario, ...rest] = process.argv.slice(2) as [IoTrial['scenario'], ...string[]];
const SECTOR = 512;
const KV = readFileSync(`${GUEST_BIN}/kvserver.elf`);

/** Builds a kvserver WAL image (format 2): generation 1 (half 1), `records` set records of 1 KiB values over 256 keys. */
function buildWal(path: string, records: number): number {
  const HDR = 48;
  const recSectors = Math.ceil((HDR + 8 + 1024) / SECTOR); // 3
  const halfLen = 2 + records * recSectors + 16;
  if (halfLen > 4096) throw new RangeError(`${records} records do not fit kvserver's 4096-sector log half`);
  const img = Buffer.alloc((2 + 2 * halfLen) * SECTOR);
  const sb = img.subarray(SECTOR, 2 * SECTOR); // generation 1 lives in slot 1
  sb.write('LSKVWAL1', 0, 'latin1');
  sb.writeUInt32LE(2, 8); // format version
  sb.writeUInt32LE(1, 12);
  sb.writeUInt32LE(halfLen, 16);
  sb.writeBigUInt64LE(BigInt(records + 1), 20);
  sb.writeUInt32LE(0, 28); // flags
  sb.writeUInt32LE(crc32(sb.subarray(0, 32)), 32);
  let pos = (2 + halfLen) * SECTOR;
  let prev = 0;
  for (let i = 0; i < records; i++) {
    const rec = img.subarray(pos, pos + recSectors * SECTOR);
    const key = Buffer.from(`k${String(i % 256).padStart(7, '0')}`, 'latin1');
    const val = Buffer.alloc(1024, 0x61 + (i % 26));
    rec.writeUInt32LE(0x3252564b, 0);
    rec.writeUInt32LE(1, 4);
    rec.writeUInt32LE(i, 8);
    rec.writeUInt8(1, 12);
    rec.writeUInt8(key.length, 13);
    rec.writeUInt16LE(0, 14);
    rec.writeUInt32LE(0, 16);
    rec.writeUInt32LE(val.length, 20);
    rec.writeBigUInt64LE(BigInt(i + 1), 24);
    rec.writeUInt32LE(recSectors, 32);
    rec.writeUInt32LE(prev, 36); // the chain: the previous record's crc
    key.copy(rec, HDR);
    val.copy(rec, HDR + key.length);
    prev = crc32(rec.subarray(0, HDR + key.length + val.length));
    rec.writeUInt32LE(prev, 44);
    pos += recSectors * SECTOR;
  }
  writeFileSync(path, img);
  return records * recSectors * SECTOR;
}

interface Booted {
  m: Machine;
  running: Promise<import('lockstep').RunResult>;
  port: number;
  forwarder: UdpForwarder;
  recorder: Recorder | undefined;
  bootMs: number;
  console: () => string;
}

async function boot(disk: string, record: boolean): Promise<Booted> {
  const m = new Machine({ memory: 64 << 20, clock: 'real', devices: { net: true, disk: { path: disk }, rng: true } });
  m.load(KV);
  const recorder = record ? new Recorder(m) : undefined;
  let text = '';
  let ready!: () => void;
  const listening = new Promise<void>((res) => (ready = res));
  m.on('console', (b) => {
    text += Buffer.from(b).toString('latin1');
    if (text.includes('listening')) ready();
  });
  const { forwarder, ports } = await UdpForwarder.create(m, [{ hostPort: 0, guestPort: 11211 }]);
  const start = process.hrtime.bigint();
  const running = m.run();
  running.then(() => ready(), () => ready());
  await listening;
  const bootMs = Number(process.hrtime.bigint() - start) / 1e6;
  if (!text.includes('listening')) throw new Error(`kvserver did not start: ${text}`);
  return { m, running, port: ports[0]!, forwarder, recorder, bootMs, console: () => text };
}

async function shutdown(b: Booted): Promise<string> {
  b.m.stop();
  const r = await b.running;
  b.recorder?.finish(r);
  b.forwarder.close();
  const instret = r.instret.toString();
  b.m.close();
  return instret;
}

function blank(): IoTrial {
  return {
    scenario, mode: 'plain', variant: '', seconds: 0, bootMs: 0, requests: 0, sets: 0, failed: 0, retries: 0,
    requestsPerSecond: 0, setsPerSecond: 0, p50Ms: 0, p99Ms: 0, sent: 0, received: 0, rxPayloadBytes: 0,
    txPayloadBytes: 0, logBytes: 0, logBytesWindow: 0, logBytesPerSecond: 0, instret: '0', walBytes: 0, console: '',
  };
}

/** Blasts version requests from `sockets` sockets with `window` in flight each; counts replies. */
async function blast(port: number, ms: number, large: boolean, sockets = 4, window = 32) {
  const text = large ? `version${' '.repeat(1400 - 8 - 9)}\r\n` : 'version\r\n';
  let sent = 0, received = 0, rxBytes = 0, txBytes = 0;
  const socks: Socket[] = [];
  let running = true;
  const inflight: number[] = [];
  const lastReply: number[] = [];
  for (let s = 0; s < sockets; s++) {
    const sock = createSocket('udp4');
    await new Promise<void>((res) => sock.bind(0, '127.0.0.1', res));
    let id = 0;
    const send = () => {
      const msg = Buffer.alloc(8 + text.length);
      msg.writeUInt16BE(id++ & 0xffff, 0);
      msg.writeUInt16BE(0, 2);
      msg.writeUInt16BE(1, 4);
      msg.write(text, 8, 'latin1');
      sock.send(msg, port, '127.0.0.1');
      sent++;
      rxBytes += msg.length; // received by the guest
      inflight[s]!++;
    };
    inflight[s] = 0;
    lastReply[s] = Date.now();
    sock.on('message', (msg) => {
      received++;
      txBytes += msg.length; // sent by the guest
      inflight[s]!--;
      lastReply[s] = Date.now();
      if (running) send();
    });
    socks.push(sock);
    for (let i = 0; i < window; i++) send();
    (sock as Socket & { _send?: () => void })._send = send;
  }
  // Datagrams dropped on the way are not retried: refill a socket's window after 20 ms of silence.
  const refill = setInterval(() => {
    const now = Date.now();
    socks.forEach((sock, s) => {
      if (now - lastReply[s]! > 20) {
        inflight[s] = 0;
        for (let i = 0; i < window; i++) (sock as Socket & { _send: () => void })._send();
      }
    });
  }, 10);
  const start = process.hrtime.bigint();
  const at0 = { sent, received, rxBytes, txBytes };
  await new Promise((res) => setTimeout(res, ms));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  running = false;
  clearInterval(refill);
  const out = { seconds, sent: sent - at0.sent, received: received - at0.received, rxBytes, txBytes };
  await new Promise((res) => setTimeout(res, 50));
  for (const s of socks) s.close();
  // Count only replies (and the requests they answer) within the window.
  out.rxBytes = Math.round((rxBytes / Math.max(sent, 1)) * out.received);
  out.txBytes = Math.round((txBytes / Math.max(received, 1)) * out.received);
  return out;
}

const out = blank();
if (scenario === 'kv') {
  const [mode, disk, durationMs, setRatio] = rest as [IoTrial['mode'], string, string, string];
  out.mode = mode;
  out.variant = `setRatio ${setRatio}`;
  const b = await boot(disk, mode === 'record');
  out.bootMs = b.bootMs;
  const before = b.recorder?.bytes ?? 0;
  const gen = new LoadGenerator({
    endpoints: [{ host: '127.0.0.1', port: b.port }],
    clients: 4,
    setRatio: Number(setRatio),
    keys: 100,
    valueSize: 100,
    durationMs: Number(durationMs),
  });
  const r = await gen.run();
  out.logBytesWindow = (b.recorder?.bytes ?? 0) - before;
  out.instret = await shutdown(b);
  out.logBytes = b.recorder?.bytes ?? 0;
  out.seconds = r.elapsedMs / 1e3;
  out.requests = r.acknowledged;
  out.sets = r.sets;
  out.failed = r.failed;
  out.retries = r.retries;
  out.requestsPerSecond = r.acknowledged / out.seconds;
  out.setsPerSecond = r.sets / out.seconds;
  out.p50Ms = r.latency.p50Ms;
  out.p99Ms = r.latency.p99Ms;
  out.logBytesPerSecond = out.logBytesWindow / out.seconds;
  if (r.violationCount !== 0) throw new Error(`${r.violationCount} read violations`);
  out.console = b.console();
} else if (scenario === 'rx') {
  const [mode, disk, durationMs, variant] = rest as [IoTrial['mode'], string, string, string];
  out.mode = mode;
  out.variant = variant;
  const b = await boot(disk, mode === 'record');
  out.bootMs = b.bootMs;
  const before = b.recorder?.bytes ?? 0;
  const x = await blast(b.port, Number(durationMs), variant === 'large');
  out.logBytesWindow = (b.recorder?.bytes ?? 0) - before;
  out.instret = await shutdown(b);
  out.logBytes = b.recorder?.bytes ?? 0;
  out.seconds = x.seconds;
  out.sent = x.sent;
  out.received = x.received;
  out.rxPayloadBytes = x.rxBytes;
  out.txPayloadBytes = x.txBytes;
  out.requests = x.received;
  out.requestsPerSecond = x.received / x.seconds;
  out.logBytesPerSecond = out.logBytesWindow / x.seconds;
  out.console = b.console();
} else if (scenario === 'recover') {
  const [disk, records] = rest as [string, string];
  out.variant = `${records} records`;
  out.walBytes = buildWal(disk, Number(records));
  const b = await boot(disk, false);
  out.bootMs = b.bootMs;
  out.seconds = b.bootMs / 1e3;
  out.instret = await shutdown(b);
  out.console = b.console();
} else {
  throw new Error(`io-trial: unknown scenario ${scenario}`);
}
process.stdout.write(JSON.stringify(out) + '\n');
