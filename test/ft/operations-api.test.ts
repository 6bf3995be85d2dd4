// The operations API (`lockstep ft`) as an attacker on the host meets it: a captured request is good
// once, a stale, altered or re-addressed one is refused, the old fixed bearer token is refused, the
// nonces it remembers stay bounded, and connections cannot be parked on it or pile up.
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileArbiter, FtPrimary, Machine } from '../../src/index.js';
import { CONTROL_AUTH_WINDOW_MS, ControlAuthError, ControlAuthenticator, signControlRequest } from '../../src/ft/control-auth.js';
import { ControlUnreachableError, callControl } from '../../src/ft/control-client.js';
import { startControlServer, type ControlServer } from '../../src/ft/control-server.js';
import { until } from '../helpers/wait.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-ops-api-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const echo = readFileSync(new URL('../../guest/bin/echo.elf', import.meta.url));

/** A primary running echo alone, with its operations API. */
async function primaryWithApi(limits?: Parameters<typeof startControlServer>[2]) {
  const key = randomBytes(32);
  const machine = new Machine({ clock: 'real' });
  machine.load(echo);
  const primary = new FtPrimary({ machine, vmId: 'ops-api', key, arbiter: new FileArbiter({ dir: mkdtempSync(join(tmp, 'arb-')) }) });
  await primary.start();
  const control = await startControlServer(() => primary, key, limits);
  return {
    key,
    primary,
    control,
    host: new URL(control.url).host,
    async close() {
      await control.close();
      await primary.stop();
      machine.close();
    },
  };
}

/** Sends exactly these headers (a captured request, say). */
async function send(control: ControlServer, method: string, path: string, authorization: string | undefined) {
  const res = await fetch(`${control.url}${path}`, { method, headers: authorization === undefined ? {} : { authorization } });
  return { status: res.status, body: (await res.json()) as { problem?: string; error?: string; status?: string } };
}

describe('operations API authentication', () => {
  it('a captured request works once: replayed, status and migrate-secondary are refused', async () => {
    const api = await primaryWithApi();
    try {
      const status = signControlRequest(api.key, { method: 'GET', host: api.host, path: '/ft/status' });
      expect((await send(api.control, 'GET', '/ft/status', status)).status).toBe(200);
      const replayed = await send(api.control, 'GET', '/ft/status', status);
      expect(replayed.status).toBe(401);
      expect(replayed.body.problem).toBe('replayed');
      // An operation gets past authentication once (then the primary refuses it: it has no secondary)…
      const migrate = signControlRequest(api.key, { method: 'POST', host: api.host, path: '/ft/migrate-secondary' });
      expect((await send(api.control, 'POST', '/ft/migrate-secondary', migrate)).status).toBe(409);
      // …and never twice.
      const again = await send(api.control, 'POST', '/ft/migrate-secondary', migrate);
      expect([again.status, again.body.problem]).toEqual([401, 'replayed']);
      expect(api.control.refused).toBe(2);
    } finally {
      await api.close();
    }
  });

  it('refuses the old fixed bearer token, a missing header, another key, a stale timestamp, and a request re-aimed at another path or host', async () => {
    const api = await primaryWithApi();
    try {
      const problem = async (method: string, path: string, auth: string | undefined) => {
        const r = await send(api.control, method, path, auth);
        expect(r.status).toBe(401);
        return r.body.problem;
      };
      // What the API used to take: HMAC-SHA-256(key, "lockstep control") — the same on every request.
      const oldToken = createHmac('sha256', api.key).update('lockstep control').digest('hex');
      expect(await problem('GET', '/ft/status', `Bearer ${oldToken}`)).toBe('malformed');
      expect(await problem('GET', '/ft/status', undefined)).toBe('missing');
      expect(await problem('GET', '/ft/status', signControlRequest(randomBytes(32), { method: 'GET', host: api.host, path: '/ft/status' }))).toBe('signature');
      const old = signControlRequest(api.key, { method: 'GET', host: api.host, path: '/ft/status' }, Date.now() - CONTROL_AUTH_WINDOW_MS - 5_000);
      expect(await problem('GET', '/ft/status', old)).toBe('stale');
      const statusSig = signControlRequest(api.key, { method: 'GET', host: api.host, path: '/ft/status' });
      expect(await problem('POST', '/ft/disable', statusSig)).toBe('signature');
      const elsewhere = signControlRequest(api.key, { method: 'POST', host: '127.0.0.1:1', path: '/ft/disable' });
      expect(await problem('POST', '/ft/disable', elsewhere)).toBe('signature');
      expect(api.primary.status).toEqual({ protected: false, reason: 'needs-secondary' }); // nothing was done
      expect((await callControl(api.control.url, api.key, 'GET', '/ft/status')).status).toBe(200);
    } finally {
      await api.close();
    }
  });

  it('remembers a bounded number of nonces: beyond it new requests are refused (never an old nonce forgotten early); expired ones are dropped', () => {
    const key = randomBytes(32);
    let wall = 1_000_000;
    let mono = 0;
    const auth = new ControlAuthenticator(key, { windowMs: 1000, maxNonces: 3, wallClock: () => wall, monotonic: () => mono });
    const req = { method: 'GET', host: 'h:1', path: '/ft/status' };
    const sign = () => signControlRequest(key, req, wall);
    const headers = [sign(), sign(), sign()];
    for (const h of headers) auth.verify(h, req);
    expect(auth.nonces).toBe(3);
    const refusal = (h: string) => {
      try {
        auth.verify(h, req);
        return 'accepted';
      } catch (err) {
        return (err as ControlAuthError).problem;
      }
    };
    expect(refusal(sign())).toBe('busy');
    expect(refusal(headers[0]!)).toBe('replayed');
    expect(auth.nonces).toBe(3);
    // Two windows later every kept nonce's timestamp is stale anyway: they are dropped, room again.
    mono += 2000;
    wall += 500;
    expect(refusal(sign())).toBe('accepted');
    expect(auth.nonces).toBe(1);
    wall += 2000;
    expect(refusal(headers[1]!)).toBe('stale');
  });

  it('ft against a port where nothing listens: an error naming the address', async () => {
    const api = await primaryWithApi();
    const url = api.control.url;
    await api.close();
    const err = await callControl(url, api.key, 'GET', '/ft/status').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlUnreachableError);
    expect((err as ControlUnreachableError).code).toBe('ERR_LOCKSTEP_CONTROL_UNREACHABLE');
    expect((err as Error).message).toContain(new URL(url).host);
    expect((err as Error).message).toMatch(/connection refused/);
  });
});

describe('operations API connections', () => {
  it('closes a connection that sends nothing, and refuses connections over its cap (counted)', async () => {
    const api = await primaryWithApi({ limits: { idleTimeoutMs: 200, maxConnections: 3 } });
    const sockets: Socket[] = [];
    try {
      const open = () =>
        new Promise<Socket>((resolve, reject) => {
          const s = connect(Number(new URL(api.control.url).port), '127.0.0.1', () => resolve(s));
          s.on('error', reject);
          sockets.push(s);
        });
      const parked = await open();
      const closed = new Promise<void>((r) => parked.once('close', () => r()));
      await closed; // before the limits, it stayed open forever
      // Over the cap: the server drops what it cannot take.
      await Promise.all(Array.from({ length: 8 }, () => open()));
      await until('the connections over the cap to be refused', () => api.control.refused >= 5);
      for (const s of sockets) s.destroy();
      // Serving again once the flood is gone (the server notices the closed sockets in its own time).
      let answer: Awaited<ReturnType<typeof callControl>> | undefined;
      for (let i = 0; i < 500 && answer === undefined; i++) {
        answer = await callControl(api.control.url, api.key, 'GET', '/ft/status').catch((e: unknown) => {
          if (!(e instanceof ControlUnreachableError)) throw e;
          return new Promise<undefined>((r) => setTimeout(() => r(undefined), 10));
        });
      }
      expect(answer?.status).toBe(200);
    } finally {
      for (const s of sockets) s.destroy();
      await api.close();
    }
  });
});
