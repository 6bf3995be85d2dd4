// `lockstep record` / `lockstep replay` as a user runs them: a real-clock run with input replays to the
// same console and state hash; a damaged log and a different ELF are refused with the reason.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { EventKind, LogReader, decodeRecords, encodeBatch, type LogEvent } from '../../src/index.js';
import { encodeLogHeader } from '../../src/log/format.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'dist', 'cli', 'main.js');
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-record-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function lockstep(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'latin1', timeout: 240_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('lockstep record / replay', () => {
  const log = join(tmp, 'echo.log');
  const input = join(tmp, 'input');
  writeFileSync(input, 'first line\nsecond\nq');

  it('records a real-clock run with UART input and replays it to the same output and state hash', () => {
    const rec = lockstep('record', 'guest/bin/echo.elf', '-o', log, '--input', input, '--stats', '--hash-interval', '1000');
    expect(rec.status).toBe(0);
    expect(rec.stdout).toMatch(/FIRST LINE/);
    expect(rec.stderr).toMatch(/log \d+ bytes in \d+ batches, .* of the 1 Gbit\/s budget/);
    const rep = lockstep('replay', log, 'guest/bin/echo.elf');
    expect(rep.status).toBe(0);
    expect(rep.stdout).toBe(rec.stdout);
    const m = /state hash (0x[0-9a-f]{16})/.exec(rep.stderr);
    expect(m).not.toBeNull();
    // record --stats prints the hash a replay must reach.
    expect(/state hash (0x[0-9a-f]{16})/.exec(rec.stderr)?.[1]).toBe(m![1]);
    const again = lockstep('replay', log, 'guest/bin/echo.elf');
    expect(again.stderr).toContain(m![1]);
  });

  it('refuses to replay on a different program', () => {
    const r = lockstep('replay', log, 'guest/bin/hello.elf');
    expect(r.status).toBe(65);
    expect(r.stderr).toMatch(/not the program .* was recorded from/);
  });

  it('reports a damaged log with the batch and offset, before running anything', () => {
    const bytes = readFileSync(log);
    const bad = Buffer.from(bytes);
    bad[bad.length - 5]! ^= 0x55;
    const path = join(tmp, 'bad.log');
    writeFileSync(path, bad);
    const r = lockstep('replay', path, 'guest/bin/echo.elf');
    expect(r.status).toBe(65);
    expect(r.stderr).toMatch(/batch \d+ at offset \d+: CRC32C mismatch/);
    expect(r.stdout).toBe('');
  });

  it('reports a truncated log', () => {
    const bytes = readFileSync(log);
    const path = join(tmp, 'short.log');
    writeFileSync(path, bytes.subarray(0, bytes.length - 7));
    const r = lockstep('replay', path, 'guest/bin/echo.elf');
    expect(r.status).toBe(65);
    expect(r.stderr).toMatch(/truncated batch \d+ at offset \d+/);
  });

  /** Writes a copy of `from` whose records went through `edit` (CRCs recomputed: only content changes). */
  function rewriteLog(from: string, name: string, edit: (events: LogEvent[]) => LogEvent[][] | LogEvent[]): string {
    const reader = LogReader.fromBytes(readFileSync(from));
    const views = [...reader.batches()];
    const perBatch = views.map((b) => decodeRecords(b));
    const edited = edit(perBatch.flat());
    // A flat list is split back into the original batches' sizes (as far as it goes); a nested one is used as is.
    let groups: LogEvent[][];
    if (edited.length > 0 && Array.isArray(edited[0])) {
      groups = edited as LogEvent[][];
    } else {
      const flat = edited as LogEvent[];
      groups = [];
      let at = 0;
      for (const b of perBatch) {
        groups.push(flat.slice(at, at + b.length));
        at += b.length;
      }
      if (at < flat.length) groups[groups.length - 1]!.push(...flat.slice(at));
    }
    const parts: Uint8Array[] = [encodeLogHeader(reader.meta)];
    groups.forEach((evs, i) => {
      const v = views[i]!;
      parts.push(encodeBatch(BigInt(i), { instret: v.baseInstret, branches: v.baseBranches, pc: v.basePc, clock: v.baseClock }, evs));
    });
    const path = join(tmp, name);
    writeFileSync(path, Buffer.concat(parts));
    return path;
  }

  it('refuses, before running, a log with a record after its end record (a valid end record moved into the middle)', () => {
    const path = rewriteLog(log, 'end-in-middle.log', (evs) => {
      const end = evs.at(-1)!;
      const i = Math.floor(evs.length / 3);
      return [...evs.slice(0, i), { ...evs[i]!, kind: EventKind.End, reason: end.reason!, code: 0n, value: undefined }, ...evs.slice(i)];
    });
    const r = lockstep('replay', path, 'guest/bin/echo.elf');
    expect(r.status).toBe(65);
    expect(r.stderr).toMatch(/follows the end record .* a recording ends once/);
    expect(r.stdout).toBe('');
  });

  it('reports a log without an end record as unverifiable (exit 3), after replaying what it has', () => {
    const path = rewriteLog(log, 'no-end.log', (evs) => evs.filter((e) => e.kind !== EventKind.End));
    const r = lockstep('replay', path, 'guest/bin/echo.elf');
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/UNVERIFIED: the log ends at instret \d+ without an end record/);
  });

  it('reports a log cut short before the guest ended as unverifiable at once, never waiting for more', () => {
    const path = rewriteLog(log, 'cut.log', (evs) => [evs.slice(0, Math.floor(evs.length / 2))]);
    const r = lockstep('replay', path, 'guest/bin/echo.elf');
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/UNVERIFIED: the log ends at instret \d+ without an end record/);
  });

  it('reports a log whose final state hash was removed as unverifiable', () => {
    const path = rewriteLog(log, 'no-final-hash.log', (evs) => evs.filter((e, i) => !(e.kind === EventKind.StateHash && evs[i + 1]?.kind === EventKind.End)));
    const r = lockstep('replay', path, 'guest/bin/echo.elf');
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/UNVERIFIED: the end record has no state hash before it/);
  });

  it('refuses a log stripped of its state hashes, with an input edited', () => {
    const path = rewriteLog(log, 'stripped.log', (evs) =>
      evs
        .filter((e) => e.kind !== EventKind.StateHash)
        .map((e) => (e.kind === EventKind.UartRx ? { ...e, data: Uint8Array.from(e.data!, (x) => (x === 0x66 ? 0x67 : x)) } : e)),
    );
    const r = lockstep('replay', path, 'guest/bin/echo.elf');
    expect(r.status).toBe(65);
    expect(r.stderr).toMatch(/no state hash at instret 0, though the log records one every 1000 instructions/);
  });

  it('prints help for both commands', () => {
    expect(lockstep('record', '--help').stdout).toMatch(/--hash-interval/);
    expect(lockstep('replay', '--help').stdout).toMatch(/Exit status: 0 the replay reproduced/);
    expect(lockstep('replay', '--help').stdout).toMatch(/3 unverifiable/);
    expect(lockstep('record', 'guest/bin/echo.elf').status).toBe(64); // no -o
  });
});
