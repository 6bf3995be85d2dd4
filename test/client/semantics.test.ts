// Command semantics of KvClient against the in-test fake server and, when installed, a real
// memcached: the same expectations hold for both (the fake is checked against the real thing).
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ClientError, KvClient, MAX_DATAGRAM_SIZE } from '../../src/client/index.js';
import { FakeMemcached } from './fake-server.js';
import { memcachedMissing, startMemcached } from './memcached.js';

interface Target {
  name: string;
  skip: string | undefined;
  start: () => Promise<{ port: number; stop: () => Promise<void> }>;
}

const missing = memcachedMissing();
if (missing !== undefined) console.log(`skipping the real-memcached tests: ${missing}`);

const targets: Target[] = [
  {
    name: 'fake memcached',
    skip: undefined,
    start: async () => {
      const s = await FakeMemcached.start();
      return { port: s.port, stop: () => s.close() };
    },
  },
  { name: 'real memcached', skip: missing, start: startMemcached },
];

async function rejection(p: Promise<unknown>): Promise<ClientError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ClientError);
  return err as ClientError;
}

for (const target of targets) {
  describe.skipIf(target.skip !== undefined)(`KvClient against ${target.name}`, () => {
    let server: { port: number; stop: () => Promise<void> };
    let client: KvClient;
    let n = 0;
    let k: (name: string) => string;

    beforeAll(async () => {
      server = await target.start();
    });
    afterAll(async () => {
      await server?.stop();
    });
    beforeEach(() => {
      const prefix = `t${process.pid}.${n++}.`;
      k = (name) => prefix + name;
      client = new KvClient({ endpoints: [{ host: '127.0.0.1', port: server.port }], timeoutMs: 500, retries: 2 });
    });
    afterEach(async () => {
      await client.close();
    });

    it('set then get round-trips text, binary bytes and flags; a missing key reads as null', async () => {
      expect(await client.get(k('absent'))).toBeNull();
      expect(await client.set(k('text'), 'hello world')).toBe('stored');
      const text = await client.get(k('text'));
      expect(text?.value.toString()).toBe('hello world');
      expect(text?.flags).toBe(0);
      const binary = Uint8Array.from({ length: 256 }, (_, i) => i); // includes \r\n and NUL
      expect(await client.set(k('bin'), binary, { flags: 0xdeadbeef })).toBe('stored');
      const got = await client.get(k('bin'));
      expect(got?.flags).toBe(0xdeadbeef);
      expect(Buffer.compare(got!.value, binary)).toBe(0);
      expect(await client.set(k('empty'), '')).toBe('stored');
      expect((await client.get(k('empty')))?.value.length).toBe(0);
      expect(client.counters.malformed).toBe(0);
    });

    it('a value that fills the 1400-byte datagram round-trips; one byte more is refused naming the field', async () => {
      const key = k('big');
      const overhead = 8 + Buffer.byteLength(`set ${key} 0 0 1300\r\n\r\n`);
      const value = Buffer.alloc(MAX_DATAGRAM_SIZE - overhead, 0x61);
      expect(await client.set(key, value)).toBe('stored');
      expect((await client.get(key))?.value.length).toBe(value.length);
      const err = await rejection(client.set(key, Buffer.alloc(value.length + 1)));
      expect(err.code).toBe('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID');
      expect(err.field).toBe('value');
      expect(err.message).toMatch(/1400-byte/);
    });

    it('gets returns values with cas uniques, and cas stores only with the current unique', async () => {
      await client.set(k('a'), 'A');
      await client.set(k('b'), 'B');
      const items = await client.gets([k('a'), k('b'), k('missing')]);
      expect([...items.keys()].sort()).toEqual([k('a'), k('b')]);
      const a = items.get(k('a'))!;
      expect(a.value.toString()).toBe('A');
      expect(typeof a.cas).toBe('bigint');
      expect(await client.cas(k('a'), 'A2', a.cas)).toBe('stored');
      expect(await client.cas(k('a'), 'A3', a.cas)).toBe('exists');
      expect((await client.get(k('a')))?.value.toString()).toBe('A2');
      expect(await client.cas(k('missing'), 'x', 1n)).toBe('not_found');
    });

    it('add stores only a new key and replace only an existing one', async () => {
      expect(await client.replace(k('r'), 'no')).toBe('not_stored');
      expect(await client.get(k('r'))).toBeNull();
      expect(await client.add(k('r'), 'first')).toBe('stored');
      expect(await client.add(k('r'), 'second')).toBe('not_stored');
      expect((await client.get(k('r')))?.value.toString()).toBe('first');
      expect(await client.replace(k('r'), 'third')).toBe('stored');
      expect((await client.get(k('r')))?.value.toString()).toBe('third');
    });

    it('incr and decr do unsigned 64-bit arithmetic, null on a missing key, a server error on text', async () => {
      expect(await client.incr(k('n'), 1)).toBeNull();
      await client.set(k('n'), '10');
      expect(await client.incr(k('n'), 5)).toBe(15n);
      expect(await client.decr(k('n'), 20)).toBe(0n);
      await client.set(k('n'), '18446744073709551615');
      expect(await client.incr(k('n'))).toBe(0n);
      await client.set(k('t'), 'text');
      const err = await rejection(client.incr(k('t')));
      expect(err.code).toBe('ERR_LOCKSTEP_CLIENT_SERVER');
      expect(err.serverReply).toMatch(/^CLIENT_ERROR/);
    });

    it('delete removes a key and reports a missing one', async () => {
      await client.set(k('d'), 'x');
      expect(await client.delete(k('d'))).toBe('deleted');
      expect(await client.get(k('d'))).toBeNull();
      expect(await client.delete(k('d'))).toBe('not_found');
    });

    it('version and stats parse', async () => {
      const version = await client.version();
      expect(version).toMatch(/^\d+\.\d+/);
      const stats = await client.stats();
      expect(stats.get('pid')).toMatch(/^\d+$/);
      expect(stats.get('version')).toBe(version);
      expect(stats.has('curr_items')).toBe(true);
    });

    it('noreply requests are sent once and take effect', async () => {
      expect(await client.set(k('q'), 'quiet', { noreply: true })).toBe('sent');
      expect((await client.get(k('q')))?.value.toString()).toBe('quiet');
      expect(await client.delete(k('q'), { noreply: true })).toBe('sent');
      expect(await client.get(k('q'))).toBeNull();
      expect(client.counters.unexpected).toBe(0);
    });
  });
}
