// The logging channel over real sockets on 127.0.0.1: the handshake and every message both ways, flow
// control, and hostile peers (wrong key, garbage, oversized and forged frames, replays, mismatches,
// silence), after each of which the server still serves a good client.
import diagnostics from 'node:diagnostics_channel';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { LockstepError } from '../../src/errors.js';
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, computeProof, importKey, transcript } from '../../src/protocol/auth.js';
import { ChannelServer, connectChannel, type ClosedDiagnostic, type RejectedDiagnostic } from '../../src/protocol/channel.js';
import { ProtocolError } from '../../src/protocol/errors.js';
import { CRC32C_TRAILER, FrameDecoder, HEADER_BYTES, OFF_LENGTH, encodeFrame } from '../../src/protocol/frame.js';
import { MessageType, decodeHello, decodeMessage, encodeAuth, encodeHello, type Message } from '../../src/protocol/messages.js';
import {
  HOST,
  KEY,
  VM,
  cleanups,
  closed,
  connect,
  expectServerHealthy,
  nextMessage,
  rawAuthenticated,
  rawConnect,
  recordingProxy,
  runCleanups,
  sealed,
  startServer,
  within,
} from './helpers.js';

afterEach(runCleanups);

async function rejectsWith(p: Promise<unknown>, code: string): Promise<LockstepError> {
  const err = await within(p.then(() => new Error('resolved'), (e: unknown) => e), 10_000, code);
  expect(err, String(err)).toBeInstanceOf(LockstepError);
  expect((err as LockstepError).code, (err as Error).message).toBe(code);
  return err as LockstepError;
}

/** A plain TCP server whose connection handler a test writes (a fake or rogue channel server). */
async function fakeServer(onConnection: (s: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    onConnection(s);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, () => resolve()));
  cleanups.push(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return (server.address() as net.AddressInfo).port;
}

/** Counts 'message' events of every channel the server hands over. */
function countServerMessages(t: { server: ChannelServer }): { n: number } {
  const count = { n: 0 };
  t.server.on('channel', (ch) => ch.on('message', () => count.n++));
  return count;
}

const U64_MAX = (1n << 64n) - 1n;
const everyMessage: Message[] = [
  { type: 'log', batches: randomBytes(1000) },
  { type: 'ack', lsn: 1n, instret: U64_MAX, bytes: 4096n },
  { type: 'heartbeat', sentAtMs: 12.25, instret: 5n, releasedLsn: 4n },
  { type: 'release', lsn: 9n },
  { type: 'clone-begin', meta: { memory: 1 << 20 } },
  { type: 'clone-pages', pageSize: 4096, pages: [{ index: 3, data: randomBytes(4096) }, { index: 9, data: randomBytes(4096) }] },
  { type: 'clone-final', state: randomBytes(300), meta: { instret: '77' } },
  { type: 'clone-done' },
  { type: 'clone-disk', offset: 1n << 40n, data: randomBytes(4096) },
  { type: 'control', op: 'hello', listen: '127.0.0.1:9' },
  { type: 'go-live', epoch: 3n, reason: 'primary lost' },
];

function same(a: Message, b: Message): boolean {
  const norm = (v: unknown): unknown =>
    v instanceof Uint8Array ? Buffer.from(v).toString('hex') : Array.isArray(v) ? v.map(norm)
      : typeof v === 'object' && v !== null ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)])) : v;
  expect(norm(a)).toEqual(norm(b));
  return true;
}

describe('channel', () => {
  it('a server closed while it starts listening rejects listen() (it waited forever: a promoted primary stopped at once never finished starting)', async () => {
    const server = new ChannelServer({ key: KEY, vmId: VM, role: 'primary', epoch: 1 });
    const listening = server.listen(0, HOST);
    const outcome = listening.then(() => 'listened', (err: { code?: string }) => err.code);
    await server.close();
    expect(await outcome).toBe('ERR_LOCKSTEP_PROTOCOL_CLOSED');
    await expect(server.listen(0, HOST)).rejects.toMatchObject({ code: 'ERR_LOCKSTEP_PROTOCOL_CLOSED' });
  });

  it('authenticates both ways, reports the peer, and carries every message type in both directions', async () => {
    const t = await startServer();
    const client = await connect(t.port);
    const server = await t.nextChannel();
    expect(client.peer).toMatchObject({ role: 'primary', vmId: VM, version: PROTOCOL_VERSION, epoch: 7, remote: `${HOST}:${t.port}` });
    expect(server.peer).toMatchObject({ role: 'secondary', vmId: VM, version: PROTOCOL_VERSION, epoch: 8 });
    expect(server.peer.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    for (const [from, to] of [[client, server], [server, client]] as const) {
      const got: Message[] = [];
      to.on('message', (m) => got.push(m));
      for (const m of everyMessage) from.send(m);
      await within(new Promise<void>((resolve) => {
        const tick = () => (got.length >= everyMessage.length ? resolve() : setTimeout(tick, 5));
        tick();
      }), 30_000, 'every message');
      got.forEach((m, i) => same(m, everyMessage[i]!));
      to.removeAllListeners('message');
    }
    expect(client.bytesSent).toBe(server.bytesReceived);
    expect(server.bytesSent).toBe(client.bytesReceived);
    const serverClosed = closed(server);
    client.close('finished');
    expect(client.closed).toBe(true);
    expect(client.send({ type: 'release', lsn: 1n })).toBe(false); // closed: nothing is sent
    expect(await closed(client)).toEqual({ reason: 'finished' });
    expect(await serverClosed).toEqual({ reason: 'the peer closed the channel: finished' });
    expect(t.rejected).toEqual([]);
  });

  it('delivers messages the server sent the instant the channel opened, before the client had listeners', async () => {
    const t = await startServer();
    t.server.on('channel', (ch) => {
      ch.send({ type: 'control', op: 'first' });
      ch.send({ type: 'control', op: 'second' });
    });
    const client = await connect(t.port);
    const got: Message[] = [];
    client.on('message', (m) => got.push(m));
    await within(new Promise<void>((resolve) => {
      const tick = () => (got.length >= 2 ? resolve() : setTimeout(tick, 5));
      tick();
    }), 30_000, 'both messages');
    expect(got.map((m) => m.type === 'control' && m.op)).toEqual(['first', 'second']);
  });

  it('streams 32 MiB of 64 KiB LOG frames in order, reporting back-pressure and drain', async () => {
    const t = await startServer();
    const client = await connect(t.port);
    const server = await t.nextChannel();
    const batch = randomBytes(64 << 10);
    const total = 512;
    let received = 0;
    let intact = true;
    const done = new Promise<void>((resolve) => server.on('message', (m) => {
      if (m.type !== 'log') return;
      intact &&= m.batches.length === batch.length && m.batches[0] === (received & 0xff) && Buffer.compare(m.batches.subarray(1), batch.subarray(1)) === 0;
      if (++received === total) resolve();
    }));
    let sawFalse = false;
    let drains = 0;
    client.on('drain', () => drains++);
    for (let i = 0; i < total; i++) {
      const b = Buffer.from(batch); // the payload is referenced until written: a fresh one per frame
      b[0] = i & 0xff;
      if (!client.sendLog(b)) {
        sawFalse = true;
        await within(new Promise<void>((resolve) => client.once('drain', () => resolve())), 10_000, 'drain');
      }
    }
    await within(done, 30_000, 'all batches');
    expect(intact).toBe(true);
    expect(sawFalse).toBe(true);
    expect(drains).toBeGreaterThan(0);
  });

  it('refuses to send a payload over maxFrameBytes, and a receiver with a smaller limit closes on it before reading it', async () => {
    const t = await startServer({ maxFrameBytes: 100_000 });
    const client = await connect(t.port, { maxFrameBytes: 1_000_000 });
    await t.nextChannel();
    expect(() => client.sendLog(Buffer.alloc(1_000_001))).toThrow(expect.objectContaining({ code: 'ERR_LOCKSTEP_PROTOCOL_OVERSIZED' }));
    client.sendLog(Buffer.alloc(200_000));
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_OVERSIZED');
    const c = await closed(client);
    expect(c.reason).toMatch(/the peer closed the channel: .*200000-byte payload, over the limit of 100000/);
    await expectServerHealthy(t);
  });

  it('a peer that vanishes without BYE closes the channel with ERR_LOCKSTEP_PROTOCOL_CLOSED', async () => {
    const t = await startServer();
    const peer = await rawAuthenticated(t.port);
    const server = await t.nextChannel();
    peer.socket.destroy();
    const c = await closed(server);
    expect(c.reason).toMatch(/without BYE/);
    expect((c.error as ProtocolError).code).toBe('ERR_LOCKSTEP_PROTOCOL_CLOSED');
    expect(t.rejected).toEqual([]);
  });

  it('server.close() says goodbye to every channel and drops connections mid-handshake', async () => {
    const t = await startServer();
    const client = await connect(t.port);
    await t.nextChannel();
    const silent = await rawConnect(t.port);
    await t.server.close();
    expect((await closed(client)).reason).toBe('the peer closed the channel: server closing');
    await within(silent.closed, 30_000, 'the silent socket to close');
  });

  it('validates options: short key, bad vmId, role, maxFrameBytes, port', async () => {
    const bad = [
      { key: Buffer.alloc(15) },
      { key: 'a string key that is long' as unknown as Uint8Array },
      { vmId: '' },
      { vmId: 'a\u0000b' },
      { role: 'tertiary' as 'primary' },
      { maxFrameBytes: 10 },
      { maxFrameBytes: 2 ** 32 },
      { handshakeTimeoutMs: 0 },
      { epoch: NaN },
    ];
    for (const o of bad) {
      expect(() => new ChannelServer({ key: KEY, vmId: VM, role: 'primary', ...o }), JSON.stringify(o)).toThrow(
        expect.objectContaining({ code: 'ERR_LOCKSTEP_OPTION_INVALID' }),
      );
      await rejectsWith(connectChannel({ host: HOST, port: 1, key: KEY, vmId: VM, role: 'secondary', ...o }), 'ERR_LOCKSTEP_OPTION_INVALID');
    }
    await rejectsWith(connectChannel({ host: HOST, port: 0, key: KEY, vmId: VM, role: 'secondary' }), 'ERR_LOCKSTEP_OPTION_INVALID');
  });

  it('connection refused is ERR_LOCKSTEP_PROTOCOL_CLOSED; an abort signal ends a pending connect with its reason', async () => {
    const port = await fakeServer(() => undefined);
    const t = await startServer();
    await t.server.close();
    await rejectsWith(connectChannel({ host: HOST, port: t.port, key: KEY, vmId: VM, role: 'secondary' }), 'ERR_LOCKSTEP_PROTOCOL_CLOSED');
    const ac = new AbortController();
    const p = connectChannel({ host: HOST, port, key: KEY, vmId: VM, role: 'secondary', signal: ac.signal });
    setTimeout(() => ac.abort(new Error('operator gave up')), 50);
    await expect(within(p, 30_000, 'abort')).rejects.toThrow('operator gave up');
    await expect(connectChannel({ host: HOST, port, key: KEY, vmId: VM, role: 'secondary', signal: AbortSignal.abort() })).rejects.toThrow();
  });

  it('publishes rejections and closes on the lockstep:protocol diagnostics channels', async () => {
    const rejected: RejectedDiagnostic[] = [];
    const closes: ClosedDiagnostic[] = [];
    const onRejected = (m: unknown) => rejected.push(m as RejectedDiagnostic);
    const onClosed = (m: unknown) => closes.push(m as ClosedDiagnostic);
    diagnostics.subscribe('lockstep:protocol:rejected', onRejected);
    diagnostics.subscribe('lockstep:protocol:closed', onClosed);
    cleanups.push(() => {
      diagnostics.unsubscribe('lockstep:protocol:rejected', onRejected);
      diagnostics.unsubscribe('lockstep:protocol:closed', onClosed);
    });
    const t = await startServer();
    await rejectsWith(connect(t.port, { key: Buffer.alloc(32, 1) }), 'ERR_LOCKSTEP_PROTOCOL_AUTH');
    await t.nextRejection();
    expect(rejected.map((r) => `${r.side}/${r.stage}/${r.error.code}`).sort()).toEqual([
      'client/handshake/ERR_LOCKSTEP_PROTOCOL_AUTH',
      'server/handshake/ERR_LOCKSTEP_PROTOCOL_AUTH',
    ]);
    const client = await connect(t.port);
    const server = await t.nextChannel();
    const serverClosed = closed(server);
    client.close('bye now');
    await serverClosed;
    expect(closes.map((c) => c.reason).sort()).toEqual(['bye now', 'the peer closed the channel: bye now']);
    expect(closes[0]!.bytesSent).toBeGreaterThan(0);
  });
});

describe('hostile peers', () => {
  it('a client with the wrong key is refused; the client learns its proof was rejected', async () => {
    const t = await startServer();
    const err = await rejectsWith(connect(t.port, { key: Buffer.alloc(32, 0x01) }), 'ERR_LOCKSTEP_PROTOCOL_AUTH');
    expect(err.message).toMatch(/rejected it/);
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    expect(r.reason).toMatch(/initiator's proof does not verify/);
    expect(r.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    await expectServerHealthy(t);
  });

  it('a server with the wrong key cannot prove itself: the client refuses it', async () => {
    // A rogue server that speaks the protocol perfectly, but signs with a key it guessed.
    const rogueKey = importKey(Buffer.alloc(32, 0x02));
    const port = await fakeServer((s) => {
      const dec = new FrameDecoder({ trailer: CRC32C_TRAILER });
      let helloI: Uint8Array | undefined;
      const helloR = encodeHello({ role: 'primary', vmId: VM, minVersion: PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION, epoch: 0, nonce: randomBytes(32) });
      s.on('data', (d: Buffer) => {
        dec.push(d);
        for (let f = dec.next(); f; f = dec.next()) {
          if (f.type === MessageType.HELLO) {
            helloI = Buffer.from(f.payload);
            s.write(encodeFrame(MessageType.HELLO, 0, helloR, CRC32C_TRAILER));
          } else if (f.type === MessageType.AUTH) {
            const proof = computeProof(rogueKey, 'responder', decodeHello(helloI!).nonce, decodeHello(helloR).nonce, transcript(helloI!, helloR));
            s.write(encodeFrame(MessageType.AUTH, 1, encodeAuth(proof), CRC32C_TRAILER));
          }
        }
      });
    });
    const err = await rejectsWith(connect(port), 'ERR_LOCKSTEP_PROTOCOL_AUTH');
    expect(err.message).toMatch(/responder's proof does not verify/);
    // A real server holding another key refuses our proof first: also an AUTH failure on the client.
    const other = await startServer({ key: Buffer.alloc(32, 0x03) });
    await rejectsWith(connect(other.port), 'ERR_LOCKSTEP_PROTOCOL_AUTH');
    expect((await other.nextRejection()).error.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
  });

  it('garbage bytes and an HTTP request are refused on the first header', async () => {
    const t = await startServer();
    for (const junk of [randomBytes(64), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]) {
      const raw = await rawConnect(t.port);
      raw.write(junk);
      const r = await t.nextRejection();
      expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_MALFORMED');
      expect(r.reason).toMatch(/bad frame magic/);
      await within(raw.closed, 30_000, 'close');
      expect(raw.received).toEqual([]); // nothing said to a stranger
    }
    await expectServerHealthy(t);
  });

  it('an oversized HELLO header is refused before its payload is sent (the server never waits to buffer it)', async () => {
    const t = await startServer();
    const raw = await rawConnect(t.port);
    const header = encodeFrame(MessageType.HELLO, 0, Buffer.alloc(0), CRC32C_TRAILER).subarray(0, HEADER_BYTES);
    header.writeUInt32BE(1 << 30, OFF_LENGTH); // 1 GiB announced; not one payload byte follows
    raw.write(header);
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_OVERSIZED');
    expect(r.reason).toMatch(/1073741824-byte payload, over the limit of 1024/);
    await within(raw.closed, 30_000, 'the server to close the connection');
    await expectServerHealthy(t);
  });

  it('an authenticated peer\'s oversized LOG header closes the channel at once, with a BYE that says why', async () => {
    const t = await startServer({ maxFrameBytes: 1 << 20 });
    const messages = countServerMessages(t);
    const peer = await rawAuthenticated(t.port);
    const server = await t.nextChannel();
    const f = peer.encoder.encode(MessageType.LOG, Buffer.alloc(0));
    f.header.writeUInt32BE((1 << 20) + 1, OFF_LENGTH); // header only: the payload never comes
    peer.write(f.header);
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_OVERSIZED');
    expect((await closed(server)).error).toBe(r.error);
    await within(peer.closed, 30_000, 'close');
    // The BYE the server sent, sealed for us.
    const bye = peer.frames.map((fr) => decodeMessage(fr.type, fr.payload)).find((m) => m.type === 'bye');
    expect(bye?.type === 'bye' && bye.reason).toMatch(/1048577-byte payload/);
    expect(server.bytesReceived).toBeLessThan(1000); // handshake + one 20-byte header
    expect(messages.n).toBe(0);
    await expectServerHealthy(t);
  });

  it('a frame with one flipped payload byte fails its HMAC and is never delivered', async () => {
    const t = await startServer();
    const messages = countServerMessages(t);
    const peer = await rawAuthenticated(t.port);
    await t.nextChannel();
    const frame = sealed(peer, MessageType.ACK, Buffer.alloc(24, 1));
    frame[HEADER_BYTES + 5]! ^= 0x10;
    peer.write(frame);
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    expect(r.reason).toMatch(/fails its HMAC/);
    await within(peer.closed, 30_000, 'close');
    expect(messages.n).toBe(0);
    await expectServerHealthy(t);
  });

  it('a replayed frame (duplicate sequence number) is refused after the original is delivered once', async () => {
    const t = await startServer();
    const got: Message[] = [];
    t.server.on('channel', (ch) => ch.on('message', (m) => got.push(m)));
    const peer = await rawAuthenticated(t.port);
    await t.nextChannel();
    const frame = sealed(peer, MessageType.RELEASE, Buffer.alloc(8, 0));
    peer.write(frame);
    peer.write(frame);
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_SEQUENCE');
    expect(r.reason).toMatch(/sequence 2 where 3 was expected/);
    expect(got).toEqual([{ type: 'release', lsn: 0n }]);
    await expectServerHealthy(t);
  });

  it('a handshake captured from an earlier session and replayed to the server fails on the fresh nonce', async () => {
    const t = await startServer();
    const proxy = await recordingProxy(t.port);
    const client = await connect(proxy.port);
    await t.nextChannel();
    client.send({ type: 'control', op: 'something worth replaying' });
    const gone = closed(client);
    client.close('done');
    await gone;
    await within(new Promise<void>((resolve) => {
      const tick = () => (t.server.channels.size === 0 ? resolve() : setTimeout(tick, 5));
      tick();
    }), 30_000, 'the first session to end');
    const captured = Buffer.concat(proxy.fromClient[0]!);
    expect(captured.length).toBeGreaterThan(0);
    const messages = countServerMessages(t);
    const raw = await rawConnect(t.port);
    raw.write(captured);
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    expect(r.reason).toMatch(/replayed an old handshake/);
    await within(raw.closed, 30_000, 'close');
    expect(messages.n).toBe(0);
    await expectServerHealthy(t);
  });

  it('a peer for another VM is refused on both sides', async () => {
    const t = await startServer();
    const err = await rejectsWith(connect(t.port, { vmId: 'some-other-vm' }), 'ERR_LOCKSTEP_PROTOCOL_PEER');
    expect(err.message).toContain('"some-other-vm"');
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_PEER');
    expect(r.reason).toMatch(/the peer is for VM "some-other-vm", this side is for VM "vm-test"/);
    await expectServerHealthy(t);
  });

  it('a second primary is refused (roles must differ)', async () => {
    const t = await startServer();
    await rejectsWith(connect(t.port, { role: 'primary' }), 'ERR_LOCKSTEP_PROTOCOL_PEER');
    expect((await t.nextRejection()).reason).toMatch(/both sides are primary/);
    await expectServerHealthy(t);
  });

  it('no common version: the server answers with its HELLO and closes, naming both ranges', async () => {
    const t = await startServer();
    const raw = await rawConnect(t.port);
    const hello = encodeHello({ role: 'secondary', vmId: VM, minVersion: PROTOCOL_VERSION + 1, maxVersion: PROTOCOL_VERSION + 2, epoch: 0, nonce: randomBytes(32) });
    raw.write(encodeFrame(MessageType.HELLO, 0, hello, CRC32C_TRAILER));
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_VERSION');
    expect(r.reason).toContain(`speaks ${PROTOCOL_VERSION + 1}..${PROTOCOL_VERSION + 2}, this side speaks ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION}`);
    await within(raw.closed, 30_000, 'close');
    const dec = new FrameDecoder();
    dec.push(Buffer.concat(raw.received));
    const answer = dec.next()!;
    expect(answer.type).toBe(MessageType.HELLO);
    expect(decodeHello(answer.payload)).toMatchObject({ minVersion: MIN_PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION, role: 'primary' });
    // And a client facing a newer-only server says the same from its side.
    const port = await fakeServer((s) => s.once('data', () => {
      const h = encodeHello({ role: 'primary', vmId: VM, minVersion: PROTOCOL_VERSION + 2, maxVersion: 9, epoch: 0, nonce: randomBytes(32) });
      s.end(encodeFrame(MessageType.HELLO, 0, h, CRC32C_TRAILER));
    }));
    const err = await rejectsWith(connect(port), 'ERR_LOCKSTEP_PROTOCOL_VERSION');
    expect(err.message).toContain(`speaks ${PROTOCOL_VERSION + 2}..9, this side speaks ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION}`);
    await expectServerHealthy(t);
  });

  it('a HELLO then silence, and a connection that sends nothing, both time out', async () => {
    const t = await startServer({ handshakeTimeoutMs: 300 });
    const silent = await rawConnect(t.port);
    const stalled = await rawConnect(t.port);
    stalled.write(encodeFrame(MessageType.HELLO, 0, encodeHello({ role: 'secondary', vmId: VM, minVersion: PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION, epoch: 0, nonce: randomBytes(32) }), CRC32C_TRAILER));
    const codes = [(await t.nextRejection()).error.code, (await t.nextRejection()).error.code];
    expect(codes).toEqual(['ERR_LOCKSTEP_PROTOCOL_TIMEOUT', 'ERR_LOCKSTEP_PROTOCOL_TIMEOUT']);
    expect(t.rejected[0]!.reason).toMatch(/handshake not complete after 300 ms/);
    await within(Promise.all([silent.closed, stalled.closed]), 30_000, 'both closed');
    await expectServerHealthy(t);
    // The client side times out the same way against a server that never answers.
    const port = await fakeServer(() => undefined);
    await rejectsWith(connect(port, { handshakeTimeoutMs: 300 }), 'ERR_LOCKSTEP_PROTOCOL_TIMEOUT');
  });

  it('an application message before authentication is refused unread', async () => {
    const t = await startServer();
    const raw = await rawConnect(t.port);
    raw.write(encodeFrame(MessageType.LOG, 0, Buffer.from('sneaky batch'), CRC32C_TRAILER));
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    expect(r.reason).toMatch(/LOG frame before authentication/);
    await expectServerHealthy(t);
  });

  it('a HELLO after authentication, and an unknown type, are malformed', async () => {
    const t = await startServer();
    for (const code of [MessageType.HELLO, 0x7e]) {
      const peer = await rawAuthenticated(t.port);
      await t.nextChannel();
      peer.write(sealed(peer, code, Buffer.alloc(50)));
      const r = await t.nextRejection();
      expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_MALFORMED');
    }
    await expectServerHealthy(t);
  });

  it('a well-sealed but malformed message (an ACK of 23 bytes) closes the channel', async () => {
    const t = await startServer();
    const messages = countServerMessages(t);
    const peer = await rawAuthenticated(t.port);
    await t.nextChannel();
    peer.write(sealed(peer, MessageType.ACK, Buffer.alloc(23)));
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_MALFORMED');
    expect(r.reason).toMatch(/ACK payload is 23 bytes/);
    expect(messages.n).toBe(0);
    await expectServerHealthy(t);
  });

  it('a frame reflected back to its sender fails (direction keys differ)', async () => {
    const t = await startServer();
    const peer = await rawAuthenticated(t.port);
    const server = await t.nextChannel();
    server.send({ type: 'release', lsn: 5n }); // the server's frame #2, sealed with its direction key
    await within(new Promise<void>((resolve) => {
      const tick = () => (peer.frames.length > 0 ? resolve() : setTimeout(tick, 5));
      tick();
    }), 30_000, 'the server frame');
    // Re-seal nothing: send the server's own bytes back; the sequence (2) is what the server expects next.
    const f = peer.frames[0]!;
    const back = encodeFrame(f.type, f.sequence, f.payload, { kind: 'hmac', key: peer.result.receiveKey });
    peer.write(back);
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    await expectServerHealthy(t);
  });
});
