// DirStore: the ClusterStore contract on a directory, plus what only the directory store has —
// the cross-process lock (several writer processes, recovery from a holder killed mid-operation).
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DirStore } from '../../../src/cluster/store/dir-store.js';
import { StoreError } from '../../../src/cluster/store/store.js';
import { storeContract } from './contract.js';
import type { ChildConfig } from './child.js';
import { TsChild } from './ts-child.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'lockstep-dir-store-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('DirStore contract', () => {
  storeContract(() => ({
    open: () => DirStore.open({ dir: join(root, 'contract'), pollIntervalMs: 50 }),
    child: () => ({ kind: 'dir', dir: join(root, 'contract') }),
    exactWatch: false,
    ttlMs: 2_000,
  }));
});

describe('DirStore', () => {
  it('three processes incrementing one counter with get + compareAndSet lose no increment', async () => {
    const dir = join(root, 'counter');
    const cfg = (id: string): ChildConfig => ({ store: { kind: 'dir', dir }, role: 'count', name: 'counter', id, ttlMs: 1_000, times: 30 });
    const child = fileURLToPath(new URL('./child.ts', import.meta.url));
    const children = ['a', 'b', 'c'].map((id) => new TsChild(child, [JSON.stringify(cfg(id))]));
    try {
      await Promise.all(children.map((c) => c.next((m) => m.event === 'counted', 45_000)));
      const store = await DirStore.open({ dir });
      expect((await store.get('counter'))?.value).toBe(90);
      await store.close();
    } finally {
      await Promise.all(children.map((c) => c.kill()));
    }
  });

  it('recovers the lock from a holder that died holding it, and keeps old lock generations few', async () => {
    const dir = join(root, 'stale-lock');
    const store = await DirStore.open({ dir, timeoutMs: 3_000 });
    await store.put('k', 1);
    // A process that existed and is gone: its pid is free (or reused by a process started later).
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const pid = Number(dead.stdout.trim());
    const gens = (await readdir(join(dir, 'gen'))).filter((n) => /^\d+$/.test(n)).map(Number);
    const next = Math.max(...gens) + 1;
    await writeFile(join(dir, 'gen', String(next)), JSON.stringify({ pid, start: '1', boot: null, host: hostname() }));
    expect(await store.put('k', 2)).toBeGreaterThan(next);
    expect((await store.get('k'))?.value).toBe(2);
    for (let i = 0; i < 20; i++) await store.put('k', i);
    expect((await readdir(join(dir, 'gen'))).length).toBeLessThanOrEqual(6);
    await store.close();
  });

  it('a lock held by a live process that never releases it: ERR_LOCKSTEP_STORE_UNAVAILABLE at the time limit', async () => {
    const dir = join(root, 'stuck-lock');
    const store = await DirStore.open({ dir, timeoutMs: 300 });
    await store.put('k', 1);
    const gens = (await readdir(join(dir, 'gen'))).filter((n) => /^\d+$/.test(n)).map(Number);
    // This very process "holds" the next generation and never marks it done.
    await writeFile(join(dir, 'gen', String(Math.max(...gens) + 1)), JSON.stringify({ pid: process.pid, start: null, boot: null, host: hostname() }));
    await expect(store.put('k', 2)).rejects.toMatchObject({ code: 'ERR_LOCKSTEP_STORE_UNAVAILABLE' });
    // Reads need no lock.
    expect((await store.get('k'))?.value).toBe(1);
    await store.close();
  });

  it('a directory that cannot be used: ERR_LOCKSTEP_STORE_UNAVAILABLE; a foreign directory: ERR_LOCKSTEP_STORE_CORRUPT', async () => {
    const file = join(root, 'a-file');
    await writeFile(file, 'x');
    const err = await DirStore.open({ dir: file }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('ERR_LOCKSTEP_STORE_UNAVAILABLE');
    const foreign = join(root, 'foreign');
    await mkdir(foreign);
    await writeFile(join(foreign, 'lockstep-store.json'), '{"format":99}');
    await expect(DirStore.open({ dir: foreign })).rejects.toMatchObject({ code: 'ERR_LOCKSTEP_STORE_CORRUPT' });
  });

  it('long and unusual keys map to distinct files', async () => {
    const store = await DirStore.open({ dir: join(root, 'names') });
    const keys = ['a/b', 'a%2Fb', '.', '..', 'ü'.repeat(200), 'ü'.repeat(199) + 'v', '*(~)!'];
    for (const [i, k] of keys.entries()) await store.put(k, i);
    for (const [i, k] of keys.entries()) expect((await store.get(k))?.value).toBe(i);
    expect((await store.list('')).length).toBe(keys.length);
    await store.close();
  });
});
