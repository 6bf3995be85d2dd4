// createLimitedServer over TLS keeps the limits of the plain server: a connection that never starts its
// handshake, and one that completes it and then sends nothing, are both closed; one that asks is answered.
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLimitedServer } from '../../src/observability/http-server.js';
import type { Server } from 'node:http';

const TLS = join(__dirname, '..', 'fixtures', 'tls');
const pem = (name: string) => readFileSync(join(TLS, name));

describe('createLimitedServer with TLS', () => {
  let server: Server;
  let port: number;
  /** Requests to /slow wait for this. */
  let release: () => void = () => undefined;
  let released = new Promise<void>((r) => (release = r));

  beforeAll(async () => {
    server = createLimitedServer((req, res) => void (req.url === '/slow' ? released : Promise.resolve()).then(() => res.end('ok\n')), { headersTimeoutMs: 5_000, idleTimeoutMs: 1_000, keepAliveTimeoutMs: 1_000 }, undefined, { cert: pem('agent.pem'), key: pem('agent-key.pem') });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('closes a connection that never starts the TLS handshake', async () => {
    const parked = tcpConnect(port, '127.0.0.1');
    parked.on('error', () => undefined);
    await new Promise<void>((r) => parked.once('close', () => r()));
    expect(parked.bytesRead).toBe(0);
  });

  it('closes a connection that completes the handshake and then sends nothing', async () => {
    const s = tlsConnect({ port, host: '127.0.0.1', ca: pem('ca.pem') });
    s.on('error', () => undefined);
    await new Promise<void>((r) => s.once('secureConnect', () => r()));
    expect(s.authorized).toBe(true);
    await new Promise<void>((r) => s.once('close', () => r()));
  });

  it('lets a request in flight outlive the idle deadline (it is lifted on the TLS socket the request came on)', async () => {
    const s = tlsConnect({ port, host: '127.0.0.1', ca: pem('ca.pem') }, () => s.write('GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    let answer = '';
    s.on('data', (d: Buffer) => (answer += d.toString()));
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    await new Promise<void>((r) => s.once('secureConnect', () => r()));
    // A connection opened after the request's is closed by the handshake deadline, which is longer than
    // the idle one: the idle deadline has passed for the request's connection too. (Deadlines of seconds,
    // not milliseconds: a handshake on a loaded machine must not run into them.)
    const parked = tcpConnect(port, '127.0.0.1');
    parked.on('error', () => undefined);
    await new Promise<void>((r) => parked.once('close', () => r()));
    expect(answer).toBe('');
    release();
    await closed;
    expect(answer).toMatch(/^HTTP\/1\.1 200 [^]*\r\n\r\nok\n$/);
    released = Promise.resolve();
  });

  it('answers a request over TLS', async () => {
    const s = tlsConnect({ port, host: '127.0.0.1', ca: pem('ca.pem') }, () => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    let answer = '';
    s.on('data', (d: Buffer) => (answer += d.toString()));
    await new Promise<void>((r) => s.once('close', () => r()));
    expect(answer).toMatch(/^HTTP\/1\.1 200 [^]*\r\n\r\nok\n$/);
  });
});
