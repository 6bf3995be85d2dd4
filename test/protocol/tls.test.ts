// The channel over TLS with client certificates: good certificates on both sides pass (and the PSK
// handshake still runs inside); a certificate from another CA, or none, is refused on either side.
// Certificates are made per run with the openssl CLI; without it the tests are skipped with the reason.
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LockstepError } from '../../src/errors.js';
import type { ChannelOptions } from '../../src/protocol/channel.js';
import {
  HOST,
  cleanups,
  connect,
  expectServerHealthy,
  makeCerts,
  nextMessage,
  opensslMissing,
  runCleanups,
  startServer,
  within,
  type TestCerts,
} from './helpers.js';

afterEach(runCleanups);

const missing = opensslMissing();
if (missing) console.log(`skipping the TLS channel tests: ${missing}`);

async function rejection(p: Promise<unknown>): Promise<LockstepError> {
  const err = await within(p.then(() => new Error('resolved'), (e: unknown) => e), 10_000, 'a rejection');
  expect(err, String(err)).toBeInstanceOf(LockstepError);
  return err as LockstepError;
}

describe.skipIf(missing !== undefined)('channel over TLS', () => {
  let certs: TestCerts;
  let serverTls: ChannelOptions['tls'];
  let clientTls: ChannelOptions['tls'];
  beforeAll(() => {
    certs = makeCerts();
    serverTls = { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca };
    clientTls = { cert: certs.clientCert, key: certs.clientKey, ca: certs.ca };
  });

  it('connects with certificates from the shared CA on both sides and carries messages', async () => {
    const t = await startServer({ tls: serverTls });
    const client = await connect(t.port, { tls: clientTls });
    const server = await t.nextChannel();
    expect(client.peer.role).toBe('primary');
    const m = nextMessage(server);
    client.sendLog(Buffer.from('over tls'));
    const got = await m;
    expect(got.type === 'log' && Buffer.from(got.batches).toString()).toBe('over tls');
    await expectServerHealthy(t, { tls: clientTls });
  });

  it('still requires the pre-shared key inside TLS', async () => {
    const t = await startServer({ tls: serverTls });
    const err = await rejection(connect(t.port, { tls: clientTls, key: Buffer.alloc(32, 0xee) }));
    expect(err.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    expect((await t.nextRejection()).error.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    await expectServerHealthy(t, { tls: clientTls });
  });

  it('refuses a client certificate signed by another CA', async () => {
    const t = await startServer({ tls: serverTls });
    const err = await rejection(connect(t.port, { tls: { cert: certs.otherCert, key: certs.otherKey, ca: certs.ca } }));
    expect(err.code).toBe('ERR_LOCKSTEP_PROTOCOL_TLS');
    expect(err.message).toMatch(/refused this side's certificate/);
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_TLS');
    expect(r.reason).toMatch(/certificate refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
    await expectServerHealthy(t, { tls: clientTls });
  });

  it('refuses a TLS client without a certificate, and a plain TCP client', async () => {
    const t = await startServer({ tls: serverTls });
    const bare = tls.connect({ host: HOST, port: t.port, ca: certs.ca });
    bare.on('error', () => undefined);
    cleanups.push(() => {
      bare.destroy();
    });
    const r = await t.nextRejection();
    expect(r.error.code).toBe('ERR_LOCKSTEP_PROTOCOL_TLS');
    expect(r.reason).toMatch(/certificate/i);
    const plain = net.connect({ host: HOST, port: t.port });
    plain.on('error', () => undefined);
    cleanups.push(() => {
      plain.destroy();
    });
    plain.write(Buffer.alloc(64, 0x41));
    expect((await t.nextRejection()).error.code).toBe('ERR_LOCKSTEP_PROTOCOL_TLS');
    await expectServerHealthy(t, { tls: clientTls });
  });

  it('the client refuses a server whose certificate comes from another CA', async () => {
    const t = await startServer({ tls: { cert: certs.otherCert, key: certs.otherKey, ca: certs.ca } });
    const err = await rejection(connect(t.port, { tls: clientTls }));
    expect(err.code).toBe('ERR_LOCKSTEP_PROTOCOL_TLS');
    expect(err.message).toMatch(/certificate|verify/i);
  });

  it('a plain client cannot talk to a TLS server, nor a TLS client to a plain server', async () => {
    const t = await startServer({ tls: serverTls, handshakeTimeoutMs: 1000 });
    const err = await rejection(connect(t.port, { handshakeTimeoutMs: 1000 }));
    expect(['ERR_LOCKSTEP_PROTOCOL_CLOSED', 'ERR_LOCKSTEP_PROTOCOL_TIMEOUT', 'ERR_LOCKSTEP_PROTOCOL_MALFORMED']).toContain(err.code);
    const plain = await startServer({ handshakeTimeoutMs: 1000 });
    const err2 = await rejection(connect(plain.port, { tls: clientTls, handshakeTimeoutMs: 1000 }));
    expect(['ERR_LOCKSTEP_PROTOCOL_TLS', 'ERR_LOCKSTEP_PROTOCOL_CLOSED']).toContain(err2.code);
    expect((await plain.nextRejection()).error.code).toBe('ERR_LOCKSTEP_PROTOCOL_MALFORMED');
  });
});
