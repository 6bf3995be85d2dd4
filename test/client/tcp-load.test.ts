// TcpLoad (the TCP client load of `lockstep demo --linux`): clean against Debian's memcached; a server
// killed under it shows as connections reset and writes lost (never silently reconnected); a server that
// forgets a write or applies an incr twice is caught by the read-back.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect, type AddressInfo, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TcpLoad } from '../../src/client/tcp-load.js';
import { MEMCACHED, memcachedMissing } from './memcached.js';
import { until } from '../helpers/wait.js';

const missing = memcachedMissing();
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function freeTcpPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** memcached on TCP only, once it accepts connections. */
async function memcachedTcp(port: number): Promise<ChildProcess> {
  const args = ['-p', String(port), '-U', '0', '-l', '127.0.0.1', '-t', '1', '-m', '16'];
  if (process.getuid?.() === 0) args.push('-u', 'nobody');
  const child = spawn(MEMCACHED, args, { stdio: 'ignore' });
  cleanups.push(() => child.kill('SIGKILL'));
  await until('memcached accepts TCP connections', () =>
    new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    }),
  );
  return child;
}

const progressed = (load: TcpLoad, by: number) => until(`every client acknowledges ${by} requests (${JSON.stringify(load.progress())})`, () => load.progress().every((n) => n >= by));

/** A minimal memcached (set, incr, get) with one fault: forgetting a write, applying an incr twice, or answering get with garbage. */
async function faultyServer(fault: 'forget' | 'incr-twice' | 'bad-get'): Promise<number> {
  const items = new Map<string, string>();
  let sets = 0;
  let incrs = 0;
  const server: Server = createServer((sock) => {
    let buf = '';
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n');
        if (end < 0) return;
        const [cmd, key, , , len] = buf.slice(0, end).split(' ');
        const names = buf.slice(0, end).split(' ').slice(1);
        if (cmd === 'set') {
          const size = Number(len);
          if (buf.length < end + 2 + size + 2) return;
          if (!(fault === 'forget' && ++sets === 50)) items.set(key!, buf.slice(end + 2, end + 2 + size));
          buf = buf.slice(end + 2 + size + 2);
          sock.write('STORED\r\n');
          continue;
        }
        buf = buf.slice(end + 2);
        if (cmd === 'incr') {
          const n = Number(items.get(key!) ?? 0) + (fault === 'incr-twice' && ++incrs === 50 ? 2 : 1);
          items.set(key!, String(n));
          sock.write(`${n}\r\n`);
        } else if (cmd === 'get' && fault === 'bad-get') {
          sock.write('VALUE but not a header\r\n');
        } else if (cmd === 'get') {
          let out = '';
          for (const k of names) if (items.has(k)) out += `VALUE ${k} 0 ${items.get(k)!.length}\r\n${items.get(k)!}\r\n`;
          sock.write(`${out}END\r\n`);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => server.close());
  return (server.address() as AddressInfo).port;
}

describe.skipIf(missing !== undefined)('TcpLoad against memcached', () => {
  it('a steady server: every write read back, incr 1..n, no connection reset', async () => {
    const port = await freeTcpPort();
    await memcachedTcp(port);
    const load = new TcpLoad({ host: '127.0.0.1', port, clients: 3 });
    await progressed(load, 200);
    const s = await load.finish();
    expect(s).toMatchObject({ lost: 0, appliedTwice: 0, reset: 0, errors: [] });
    expect(s.writes).toBeGreaterThanOrEqual(3 * 99);
    expect(s.incrs).toBe(s.writes);
    expect(s.acknowledged).toBe(s.requests);
  });

  it('a server killed and restarted under it: the connections count as reset, never reopened, and the writes as lost', async () => {
    const port = await freeTcpPort();
    const first = await memcachedTcp(port);
    const load = new TcpLoad({ host: '127.0.0.1', port, clients: 2 });
    await progressed(load, 100);
    first.kill('SIGKILL');
    await until('both connections are seen lost', () => load.resets() === 2);
    await memcachedTcp(port);
    const s = await load.finish();
    expect(s.reset).toBe(2);
    expect(s.errors.length).toBeGreaterThan(0);
    expect(s.lost).toBeGreaterThan(0);
  });
});

describe('TcpLoad catches a faulty server', () => {
  it('a forgotten write is lost', async () => {
    const load = new TcpLoad({ host: '127.0.0.1', port: await faultyServer('forget'), clients: 1 });
    await progressed(load, 300);
    const s = await load.finish();
    expect(s).toMatchObject({ lost: 1, appliedTwice: 0, reset: 0 });
  });

  it('an incr applied twice shows', async () => {
    const load = new TcpLoad({ host: '127.0.0.1', port: await faultyServer('incr-twice'), clients: 1 });
    await progressed(load, 300);
    const s = await load.finish();
    expect(s.lost).toBe(0);
    expect(s.appliedTwice).toBe(1);
    expect(s.errors).toEqual(['client 0: incr 50 returned 51']);
  });

  it('a reply that is not memcached ends the connection as a reset, and the unverifiable writes count as lost', async () => {
    const load = new TcpLoad({ host: '127.0.0.1', port: await faultyServer('bad-get'), clients: 1 });
    await progressed(load, 100);
    const s = await load.finish();
    expect(s.reset).toBe(1);
    expect(s.lost).toBe(s.writes);
    expect(s.errors.join('\n')).toContain('bad reply: unexpected reply to get');
  });
});
