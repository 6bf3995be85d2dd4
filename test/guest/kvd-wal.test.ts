// kvd's write-ahead log under a live set larger than the log: compactions leave room (a snapshot takes at
// most 3/4 of a log half, the least recently used items beyond are evicted and counted), so their number
// stays within the bound the design gives for the bytes written; what survives reads back its last
// acknowledged value, before and after a restart that replays the log. Root needed (network namespace).
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PYTHON, ROOT, kvdUnavailable, startKvdGuest, type KvdGuest } from '../helpers/kvd-guest.js';

const reason = kvdUnavailable();
if (reason) console.log(`test/guest/kvd-wal.test.ts skipped: ${reason}`);

const CLIENT = join(ROOT, 'test', 'guest', 'kvd-wal-client.py');
const DISK_BYTES = 4 << 20; // two log halves of 2 MiB - 4 KiB
const HALVES_WRITTEN = 6; // record bytes written, in log halves

interface Summary {
  keys: number;
  expected: number;
  present: number;
  missing: number;
  wrong: string[];
  wrong_count: number;
  oldest_present_rank: number;
  newest_missing_rank: number;
  digest: string;
  stats: Record<string, number | string>;
  class_evicted: number;
  wal: Record<string, number>;
}

let guest: KvdGuest | undefined;
let dir = '';

function client<T>(request: object): T {
  const r = guest!.inNs(PYTHON, [CLIENT], JSON.stringify({ host: '10.0.2.15', port: 11211, ...request }), 1_800_000);
  if (r.status !== 0) throw new Error(`${CLIENT} failed (${r.status}): ${r.stderr}\nconsole: ${guest!.console().slice(-1500)}`);
  return JSON.parse(r.stdout) as T;
}

beforeAll(async () => {
  if (reason) return;
  dir = mkdtempSync(join(tmpdir(), 'lockstep-kvdwal-'));
  const disk = join(dir, 'wal.img');
  const fd = openSync(disk, 'w');
  ftruncateSync(fd, DISK_BYTES);
  closeSync(fd);
  guest = await startKvdGuest(String(process.pid % 100000), { disk, memory: '64M', kvdArgs: ['-m', '16'] });
});

afterAll(async () => {
  await guest?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(reason !== undefined)("kvd's write-ahead log with more data than it holds", () => {
  it('compacts within its bound, evicts the least recent items and counts them, and replays what it keeps', async () => {
    // The half's size as kvd computes it (guest/linux/user/kvd.c, wal_open), to size the load.
    const half = ((DISK_BYTES - 4096) / 2) & ~4095;
    const load = client<{ last: Record<string, string | null>; order: string[] }>({ mode: 'load', bytes: HALVES_WRITTEN * half });
    const before = client<Summary>({ mode: 'check', ...load });
    const { wal, stats } = before;
    console.log(
      `kvd wal: ${before.keys} keys written (${wal.wal_bytes} record bytes in ${wal.wal_writes} rounds, half ${wal.wal_half_bytes}), ` +
        `${wal.wal_compactions} compactions of ${wal.wal_compaction_bytes} bytes, last snapshot ${wal.wal_live_bytes}; ` +
        `${before.present} of ${before.expected} kept, ${stats.evictions} evicted (${wal.wal_evictions} by compaction)`,
    );
    expect(wal.wal_half_bytes).toBe(half);
    const keep = (half / 4) * 3; // a snapshot (with its round's records) fills at most 3/4 of a half
    expect(wal.wal_bytes).toBeGreaterThan((HALVES_WRITTEN - 1) * half);
    // Each compaction is followed by more than half - keep bytes of records before the next one.
    expect(wal.wal_compactions).toBeGreaterThanOrEqual(2);
    expect(wal.wal_compactions).toBeLessThanOrEqual(Math.floor(wal.wal_bytes! / (half - keep)) + 1);
    expect(wal.wal_compaction_bytes).toBeLessThanOrEqual(wal.wal_compactions! * keep);
    expect(wal.wal_live_bytes).toBeGreaterThan(0);
    expect(wal.wal_live_bytes).toBeLessThanOrEqual(keep);
    expect(wal.wal_used_bytes).toBeLessThanOrEqual(half);

    // Every key still there has its last acknowledged value; deleted keys stay deleted.
    expect(before.wrong).toEqual([]);
    expect(before.wrong_count).toBe(0);
    // The cache could not keep everything: the missing items are evictions, counted as memcached counts
    // them (no key is written again after it could have been evicted, so each missing key is one).
    expect(before.missing).toBeGreaterThan(0);
    expect(stats.evictions).toBe(before.missing);
    expect(before.class_evicted).toBe(stats.evictions);
    expect(wal.wal_evictions).toBeGreaterThan(0);
    expect(wal.wal_evictions).toBeLessThanOrEqual(stats.evictions as number);
    expect(stats.curr_items).toBe(before.present);
    // Least recently used first: every kept key was written after every evicted one.
    expect(before.newest_missing_rank).toBeLessThan(before.oldest_present_rank);

    // A kill and a restart on the same disk: the log replays to the same keys and values.
    await guest!.restart();
    const replayed = /kvd: write-ahead log on \/dev\/vda: replayed (\d+) records, (\d+) items/.exec(guest!.console());
    expect(Number(replayed?.[2])).toBe(before.present);
    const after = client<Summary>({ mode: 'check', ...load });
    expect(after.wrong).toEqual([]);
    expect(after.present).toBe(before.present);
    expect(after.digest).toBe(before.digest);
    expect(after.wal.wal_used_bytes).toBe(wal.wal_used_bytes);
  }, 1_800_000);

  it('splits a pipelined burst larger than a log half into bounded rounds: kvd stays up and keeps the newest keys', () => {
    // 1.5 halves of noreply sets sent at once: one round of it could not be logged (the old kvd exited)
    // or, beside a snapshot, would leave room for almost nothing.
    const half = ((DISK_BYTES - 4096) / 2) & ~4095;
    const keep = (half / 4) * 3;
    const b = client<{ sets: number; present: number; oldest_present: number; newest_missing: number; wrong: number; pid_before: number; stats: Record<string, number>; wal: Record<string, number> }>({ mode: 'burst', bytes: 1.5 * half });
    console.log(`kvd wal burst: ${b.sets} noreply sets, ${b.present} kept, ${b.wal.wal_writes} rounds, ${b.wal.wal_compactions} compactions, ${b.stats.evictions} evictions`);
    expect(b.stats.pid).toBe(b.pid_before);
    expect(b.wrong).toBe(-1);
    // The newest keys stay (each record is 16 + 26 + 7 + 200 bytes; a round is at most half/16 plus one
    // command, so a snapshot holds at least keep - half/16 - 2 records of the burst's newest keys).
    expect(b.present).toBeGreaterThanOrEqual(Math.floor((keep - half / 16) / 249) - 2);
    expect(b.newest_missing).toBeLessThan(b.oldest_present);
    expect(b.stats.evictions).toBeGreaterThanOrEqual(b.sets - b.present);
    expect(b.wal.wal_writes).toBeGreaterThanOrEqual(Math.floor(b.wal.wal_bytes! / (half / 16 + 249)));
    expect(b.wal.wal_compactions).toBeGreaterThanOrEqual(1);
    expect(b.wal.wal_compactions).toBeLessThanOrEqual(Math.floor(b.wal.wal_bytes! / (half - keep)) + 1);
    expect(b.wal.wal_live_bytes).toBeLessThanOrEqual(keep);
  }, 1_800_000);
});
