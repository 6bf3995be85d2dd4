// `lockstep record` / `lockstep replay` as a user runs them: a real-clock run with input replays to the
// same console and state hash; a damaged log and a different ELF are refused with the reason.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

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

  it('prints help for both commands', () => {
    expect(lockstep('record', '--help').stdout).toMatch(/--hash-interval/);
    expect(lockstep('replay', '--help').stdout).toMatch(/Exit status: 0 the replay reproduced/);
    expect(lockstep('record', 'guest/bin/echo.elf').status).toBe(64); // no -o
  });
});
