// kvserver under many clients, on lockstep's own machine: a retry is recognised however many other
// clients wrote since, a new request is never answered from the reply cache, and a burst of datagrams
// far beyond the guest's receive buffers is answered in full, without a single retry.
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { bootKvserver, type KvMachine } from '../helpers/kvserver.js';
import { KV_MARK, KvUdpClient } from './kv-script.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-kvcache-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function kvserver(): Promise<KvMachine> {
  const img = join(tmp, `kv-${cleanup.length}.img`);
  writeFileSync(img, Buffer.alloc(4 << 20));
  const k = await bootKvserver({ image: img });
  cleanup.push(() => k.stop());
  return k;
}

function datagram(id: number, text: string, reserved = KV_MARK): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(reserved, 6);
  return Buffer.concat([h, Buffer.from(text, 'latin1')]);
}

/** A raw socket that collects every reply, by request id. */
async function rawClient(): Promise<{ socket: Socket; replies: Map<number, string[]>; port: number }> {
  const socket = createSocket('udp4');
  const replies = new Map<number, string[]>();
  socket.on('message', (m) => {
    const id = m.readUInt16BE(0);
    replies.set(id, [...(replies.get(id) ?? []), m.subarray(8).toString('latin1')]);
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  cleanup.push(() => new Promise<void>((r) => socket.close(() => r())));
  return { socket, replies, port: socket.address().port };
}

/** Polls (every 5 ms, at most `ms`) until `done`; fails naming `what`. */
async function until(what: () => string | undefined, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; ; ) {
    const missing = what();
    if (missing === undefined) return;
    if (Date.now() > end) throw new Error(missing);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('kvserver reply cache and receive path', () => {
  it('recognises a retry after 200 writes of 40 other clients came in between: the increment applies once', async () => {
    const k = await kvserver();
    const setup = new KvUdpClient(k.port);
    cleanup.push(() => setup.close());
    expect((await setup.request('set n 0 0 1\r\n0\r\n')).text).toBe('STORED\r\n');
    const a = await rawClient();
    const incr = datagram(4242, 'incr n 1\r\n');
    a.socket.send(incr, k.port, '127.0.0.1');
    await until(() => (a.replies.get(4242)?.length === 1 ? undefined : 'no reply to the first incr'));
    // The reply is "lost" (ignored); meanwhile 40 clients write 5 times each.
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const c = new KvUdpClient(k.port);
        cleanup.push(() => c.close());
        for (let j = 0; j < 5; j++) expect((await c.request(`set c${i}-${j} 0 0 1\r\nx\r\n`)).text).toBe('STORED\r\n');
      }),
    );
    a.socket.send(incr, k.port, '127.0.0.1');
    await until(() => (a.replies.get(4242)?.length === 2 ? undefined : 'no reply to the retried incr'));
    expect(a.replies.get(4242)).toEqual(['1\r\n', '1\r\n']);
    expect((await setup.request('get n\r\n')).text).toBe('VALUE n 0 1\r\n1\r\nEND\r\n');
  });

  it('never answers a new request from the cache: another port, another id, or a stock client with the same id and text', async () => {
    const k = await kvserver();
    const setup = new KvUdpClient(k.port);
    cleanup.push(() => setup.close());
    expect((await setup.request('set n 0 0 1\r\n0\r\n')).text).toBe('STORED\r\n');
    const a = await rawClient();
    const b = await rawClient();
    const send = async (c: Awaited<ReturnType<typeof rawClient>>, id: number, reserved: number, n: number) => {
      c.socket.send(datagram(id, 'incr n 1\r\n', reserved), k.port, '127.0.0.1');
      await until(() => ((c.replies.get(id)?.length ?? 0) >= n ? undefined : `no reply to id ${id}`));
      return c.replies.get(id)!.at(-1);
    };
    expect(await send(a, 7, KV_MARK, 1)).toBe('1\r\n');
    expect(await send(b, 7, KV_MARK, 1)).toBe('2\r\n'); // same id and text, another port
    expect(await send(a, 7, KV_MARK | 1, 2)).toBe('3\r\n'); // same 16 bits, another 31-bit id
    expect(await send(a, 7, KV_MARK, 3)).toBe('1\r\n'); // the retry of the first
    expect(await send(a, 9, 0, 1)).toBe('4\r\n'); // stock: runs every time
    expect(await send(a, 9, 0, 2)).toBe('5\r\n');
  });

  it('answers a burst of 200 datagrams from 40 clients in full, without a retry: the host queues what the guest has no buffer for', async () => {
    const k = await kvserver();
    const clients = await Promise.all(Array.from({ length: 40 }, () => rawClient()));
    // All at once: every write waits for the disk, so the guest falls far behind its 64 buffers.
    clients.forEach((c, i) => {
      for (let j = 0; j < 5; j++) c.socket.send(datagram(j, `set b${i}-${j} 0 0 1\r\nx\r\n`), k.port, '127.0.0.1');
    });
    const answered = () => clients.reduce((n, c) => n + [...c.replies.values()].filter((r) => r[0] === 'STORED\r\n').length, 0);
    await until(() => (answered() === 200 ? undefined : `${answered()} of 200 burst datagrams answered (net ${JSON.stringify(k.machine.netStats)})`));
    expect(k.machine.netStats).toMatchObject({ queued: 0, dropped: 0 });
    expect(k.machine.netStats.delivered).toBeGreaterThanOrEqual(200);
    // Whole frames: Ethernet, IPv4 and UDP headers, memcached's frame header, the command.
    expect(k.machine.netStats.deliveredBytes).toBeGreaterThanOrEqual(200 * (14 + 20 + 8 + 8 + 'set b0-0 0 0 1\r\nx\r\n'.length));
  });
});
