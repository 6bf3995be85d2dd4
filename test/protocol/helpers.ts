// Fixtures for the channel tests: a server that records what it rejects, a raw peer that speaks the
// handshake by hand and then sends whatever a test wants, a recording TCP proxy, and throwaway
// certificates made with the openssl CLI. Everything started here is stopped by the `cleanups` list.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { Handshake, importKey, type HandshakeResult, type LocalIdentity } from '../../src/protocol/auth.js';
import { Channel, ChannelServer, connectChannel, type ChannelOptions } from '../../src/protocol/channel.js';
import type { ProtocolError } from '../../src/protocol/errors.js';
import { CRC32C_TRAILER, FrameDecoder, FrameEncoder, type Frame } from '../../src/protocol/frame.js';
import type { Message } from '../../src/protocol/messages.js';

export const KEY = Buffer.alloc(32, 0x5a);
export const VM = 'vm-test';
export const HOST = '127.0.0.1';

/** Teardown steps, run in reverse by the test file's afterEach. */
export const cleanups: (() => Promise<void> | void)[] = [];

export async function runCleanups(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c();
}

/** Rejects after `ms` so no wait in a test is unbounded. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export interface Rejection {
  reason: string;
  remote: string;
  error: ProtocolError;
}

export interface TestServer {
  server: ChannelServer;
  port: number;
  rejected: Rejection[];
  channels: Channel[];
  /** Resolves with the next rejection (or one already recorded and not yet taken). */
  nextRejection(ms?: number): Promise<Rejection>;
  /** Resolves with the next channel. */
  nextChannel(ms?: number): Promise<Channel>;
}

export async function startServer(options: Partial<ChannelOptions> = {}): Promise<TestServer> {
  const server = new ChannelServer({ key: KEY, vmId: VM, role: 'primary', epoch: 7, ...options });
  const rejected: Rejection[] = [];
  const channels: Channel[] = [];
  let takenRejections = 0;
  let takenChannels = 0;
  server.on('rejected', (reason, remote, error) => rejected.push({ reason, remote, error }));
  server.on('channel', (ch) => {
    track(ch);
    channels.push(ch);
    cleanups.push(() => ch.close('test over'));
  });
  const { port } = await server.listen(0, HOST);
  cleanups.push(() => server.close());
  const poll = <T>(list: T[], taken: () => number, take: () => void, ms: number, what: string) =>
    within(
      new Promise<T>((resolve) => {
        const tick = () => {
          if (list.length > taken()) {
            const item = list[taken()]!;
            take();
            resolve(item);
          } else setTimeout(tick, 5);
        };
        tick();
      }),
      ms,
      what,
    );
  return {
    server,
    port,
    rejected,
    channels,
    nextRejection: (ms = 5000) => poll(rejected, () => takenRejections, () => takenRejections++, ms, 'a rejection'),
    nextChannel: (ms = 5000) => poll(channels, () => takenChannels, () => takenChannels++, ms, 'a channel'),
  };
}

export async function connect(port: number, options: Partial<ChannelOptions> & { signal?: AbortSignal } = {}): Promise<Channel> {
  const ch = await connectChannel({ host: HOST, port, key: KEY, vmId: VM, role: 'secondary', epoch: 8, ...options });
  track(ch);
  cleanups.push(() => ch.close('test over'));
  return ch;
}

/** The next message on a channel. */
export function nextMessage(ch: Channel, ms = 5000): Promise<Message> {
  return within(new Promise((resolve) => ch.once('message', resolve)), ms, 'a message');
}

/** The channel's close event. */
export function closed(ch: Channel, ms = 5000): Promise<{ reason: string; error?: Error }> {
  return within(closeOf.get(ch) ?? track(ch), ms, 'close');
}

const closeOf = new WeakMap<Channel, Promise<{ reason: string; error?: Error }>>();

/** Records a channel's close event from the start, so a test can await it after it happened. */
function track(ch: Channel): Promise<{ reason: string; error?: Error }> {
  const p = new Promise<{ reason: string; error?: Error }>((resolve) => ch.once('close', (reason, error) => resolve({ reason, ...(error ? { error } : {}) })));
  closeOf.set(ch, p);
  return p;
}

/** A good client still gets through and both directions carry messages. */
export async function expectServerHealthy(t: TestServer, options: Partial<ChannelOptions> = {}): Promise<void> {
  const before = t.channels.length;
  const client = await connect(t.port, options);
  const serverSide = await t.nextChannel();
  expect(t.channels.length).toBe(before + 1);
  const toServer = nextMessage(serverSide);
  client.send({ type: 'ack', lsn: 1n, instret: 2n, bytes: 3n });
  expect(await toServer).toEqual({ type: 'ack', lsn: 1n, instret: 2n, bytes: 3n });
  const toClient = nextMessage(client);
  serverSide.sendLog(Buffer.from('batch bytes'));
  const m = await toClient;
  expect(m.type === 'log' && Buffer.from(m.batches).toString()).toBe('batch bytes');
  const bye = closed(serverSide);
  client.close('healthy check done');
  expect((await bye).reason).toContain('healthy check done');
}

/** A raw TCP connection with everything it receives, and a promise of its close. */
export interface RawSocket {
  socket: net.Socket;
  received: Buffer[];
  closed: Promise<void>;
  write(bytes: Uint8Array): void;
}

export async function rawConnect(port: number): Promise<RawSocket> {
  const socket = net.connect({ host: HOST, port });
  const received: Buffer[] = [];
  socket.on('data', (d: Buffer) => received.push(d));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await within(new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  }), 30_000, 'raw connect');
  cleanups.push(() => {
    socket.destroy();
  });
  return { socket, received, closed, write: (b) => socket.write(b) };
}

/**
 * A hand-driven initiator: performs the real handshake over a raw socket with the frame codec, then
 * lets the test send any bytes. `encoder` is positioned after the handshake (sequence 2, HMAC).
 */
export interface RawPeer extends RawSocket {
  result: HandshakeResult;
  encoder: FrameEncoder;
  decoder: FrameDecoder;
  /** Frames the peer has sent to us since the handshake, decoded as they arrive. */
  frames: Frame[];
}

export async function rawAuthenticated(port: number, local: Partial<LocalIdentity> = {}, key: Uint8Array = KEY): Promise<RawPeer> {
  const raw = await rawConnect(port);
  const hs = new Handshake({ side: 'initiator', key: importKey(key), local: { role: 'secondary', vmId: VM, epoch: 0, ...local } });
  const encoder = new FrameEncoder({ trailer: CRC32C_TRAILER });
  const decoder = new FrameDecoder({ trailer: CRC32C_TRAILER });
  const frames: Frame[] = [];
  const send = (out: { code: number; payload: Uint8Array }[]) => {
    for (const o of out) {
      const f = encoder.encode(o.code, o.payload);
      raw.write(Buffer.concat([f.header, f.payload, f.trailer]));
    }
  };
  const result = await within(new Promise<HandshakeResult>((resolve, reject) => {
    let done = false;
    raw.socket.on('data', (d: Buffer) => {
      decoder.push(d);
      for (let f = decoder.next(); f; f = decoder.next()) {
        if (done) {
          frames.push(f);
          continue;
        }
        const step = hs.receive(f);
        send(step.send);
        if (step.error) return reject(step.error);
        if (step.result) {
          done = true;
          decoder.setTrailer({ kind: 'hmac', key: step.result.receiveKey });
          encoder.setTrailer({ kind: 'hmac', key: step.result.sendKey });
          resolve(step.result);
        }
      }
    });
    raw.socket.once('close', () => reject(new Error('closed during the raw handshake')));
    send(hs.start());
  }), 30_000, 'the raw handshake');
  return { ...raw, result, encoder, decoder, frames };
}

/** Encodes a sealed frame from a raw peer as one buffer. */
export function sealed(peer: RawPeer, code: number, payload: Uint8Array): Buffer {
  const f = peer.encoder.encode(code, payload);
  return Buffer.concat([f.header, f.payload, f.trailer]);
}

/** A TCP proxy that forwards to `port` and records what the client sent. */
export async function recordingProxy(port: number): Promise<{ port: number; fromClient: Buffer[][] }> {
  const fromClient: Buffer[][] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const log: Buffer[] = [];
    fromClient.push(log);
    const upstream = net.connect({ host: HOST, port });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (d: Buffer) => {
      log.push(Buffer.from(d));
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => client.write(d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, () => resolve()));
  cleanups.push(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return { port: (server.address() as net.AddressInfo).port, fromClient };
}

/** PEM material for the TLS tests. */
export interface TestCerts {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A second, unrelated CA and a client certificate it signed. */
  otherCa: string;
  otherCert: string;
  otherKey: string;
}

/** Why TLS tests cannot run here, or undefined when the openssl CLI is available. */
export function opensslMissing(): string | undefined {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `the openssl CLI is not available (${r.error?.message ?? r.stderr})`;
}

/** Generates two throwaway CAs and certificates (EC P-256, one day) into a temporary directory. */
export function makeCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-tls-'));
  try {
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    const ext = join(dir, 'leaf.ext');
    writeFileSync(ext, 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
    const ca = (name: string) =>
      ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
        '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=lockstep test ${name}`,
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    const leaf = (name: string, caName: string, serial: string) => {
      ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=lockstep test ${name}`);
      ssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.crt`, '-CAkey', `${caName}.key`, '-set_serial', serial,
        '-days', '1', '-out', `${name}.crt`, '-extfile', ext);
    };
    ca('ca');
    ca('other-ca');
    leaf('server', 'ca', '101');
    leaf('client', 'ca', '102');
    leaf('other', 'other-ca', '201');
    const read = (f: string) => readFileSync(join(dir, f), 'utf8');
    return {
      ca: read('ca.crt'),
      serverCert: read('server.crt'),
      serverKey: read('server.key'),
      clientCert: read('client.crt'),
      clientKey: read('client.key'),
      otherCa: read('other-ca.crt'),
      otherCert: read('other.crt'),
      otherKey: read('other.key'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
