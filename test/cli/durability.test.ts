// Durability through a crash: `lockstep run` serving kvserver on a disk image is killed with SIGKILL
// in the middle of a write load; restarted on the same image, every acknowledged write is there.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { KvClient } from '../../src/index.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'dist', 'cli', 'main.js');
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-durability-'));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Starts kvserver under `lockstep run`; resolves with the process and its host UDP port once it listens. */
function serve(image: string, extra: string[] = []): Promise<{ child: ChildProcess; port: number; out: () => string }> {
  const child = spawn(process.execPath, [bin, 'run', 'guest/bin/kvserver.elf', '--clock', 'real', '--disk', image, '--net', 'udp:0:11211', ...extra], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    let port = 0;
    const timer = setTimeout(() => reject(new Error(`kvserver did not start: ${out} ${err}`)), 120_000);
    const check = () => {
      if (port && out.includes('listening')) {
        clearTimeout(timer);
        resolve({ child, port, out: () => out });
      }
    };
    child.stdout!.on('data', (d: Buffer) => ((out += d.toString()), check()));
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /udp 127\.0\.0\.1:(\d+) ->/.exec(err);
      if (m) port = Number(m[1]);
      check();
    });
    child.on('exit', (code) => reject(new Error(`lockstep exited ${code}: ${err}`)));
  });
}

describe('durability', () => {
  it('every acknowledged write survives SIGKILL of the process running kvserver', async () => {
    const image = join(tmp, 'kv.img');
    writeFileSync(image, Buffer.alloc(4 << 20));
    const first = await serve(image);
    const client = new KvClient({ endpoints: [{ host: '127.0.0.1', port: first.port }], timeoutMs: 300, retries: 2 });
    const acked = new Map<string, string>();
    let next = 0;
    const writers = Array.from({ length: 4 }, async () => {
      while (next < 180) {
        const i = next++;
        const key = `key-${i}`;
        const value = `value-${i}-${'x'.repeat(i % 50)}`;
        try {
          if ((await client.set(key, value)) === 'stored') acked.set(key, value);
        } catch {
          return; // the server is gone
        }
      }
    });
    // Kill mid-load: once some writes are acknowledged, with more in flight.
    const deadline = Date.now() + 120_000;
    while (acked.size < 40 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    const firstGone = new Promise((resolve) => first.child.once('exit', resolve));
    first.child.kill('SIGKILL');
    await Promise.all(writers);
    await firstGone; // its lock on the image goes with the process
    await client.close();
    expect(acked.size).toBeGreaterThanOrEqual(40);

    const second = await serve(image);
    const check = new KvClient({ endpoints: [{ host: '127.0.0.1', port: second.port }], timeoutMs: 500, retries: 4 });
    try {
      for (const [key, value] of acked) {
        const item = await check.get(key);
        expect(item?.value.toString(), key).toBe(value);
      }
    } finally {
      await check.close();
    }
  });

  it('a second lockstep run on the image another one serves is refused before it runs (exit 64, the image named)', async () => {
    const image = join(tmp, 'busy.img');
    writeFileSync(image, Buffer.alloc(4 << 20));
    const first = await serve(image);
    const second = spawn(process.execPath, [bin, 'run', 'guest/bin/kvserver.elf', '--clock', 'real', '--disk', image], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(second);
    let err = '';
    second.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => second.once('exit', resolve));
    expect(code).toBe(64);
    expect(err).toContain(`devices.disk.path: disk image ${image} is in use by another writer`);
    expect(first.child.exitCode).toBeNull();
  });

  it('a disk too small for a log refuses writes; --append kvserver.storage=memory is the operator asking for memory only', async () => {
    const image = join(tmp, 'tiny.img');
    writeFileSync(image, Buffer.alloc(4096));
    const refusing = await serve(image);
    expect(refusing.out()).toMatch(/no usable disk \(the disk is too small/);
    const c1 = new KvClient({ endpoints: [{ host: '127.0.0.1', port: refusing.port }], timeoutMs: 500, retries: 4 });
    await expect(c1.set('k', 'v')).rejects.toMatchObject({ code: 'ERR_LOCKSTEP_CLIENT_SERVER', serverReply: 'SERVER_ERROR writes refused: no usable disk' });
    await c1.close();
    const refusingGone = new Promise((resolve) => refusing.child.once('exit', resolve));
    refusing.child.kill('SIGKILL');
    await refusingGone; // its lock on the image goes with the process
    const memory = await serve(image, ['--append', 'kvserver.storage=memory']);
    expect(memory.out()).toMatch(/^kvserver: memory-only \(kvserver.storage=memory\)/);
    const c2 = new KvClient({ endpoints: [{ host: '127.0.0.1', port: memory.port }], timeoutMs: 500, retries: 4 });
    expect(await c2.set('k', 'v')).toBe('stored');
    await c2.close();
  });
});
