// The debugger's CLI surface: help texts, usage errors, and an address that is taken.
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from '../helpers/ft-pair.js';

const bin = join(root, 'dist', 'cli', 'main.js');
function lockstep(...args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', timeout: 240_000 });
}

describe('lockstep debug and run --gdb (CLI)', () => {
  it('documents --gdb in the help of run and debug, and debug in the general help', () => {
    expect(lockstep('run', '--help').stdout).toMatch(/--gdb <host:port>/);
    const d = lockstep('debug', '--help');
    expect(d.status).toBe(0);
    expect(d.stdout).toMatch(/reverse-continue/);
    expect(d.stdout).toMatch(/Exit status:/);
    expect(lockstep('--help').stdout).toMatch(/debug <log> <guest\.elf> --gdb/);
  });

  it('refuses a missing --gdb, a malformed address, and a zero checkpoint interval with status 64', () => {
    const missing = lockstep('debug', 'x.log', 'guest/bin/hello.elf');
    expect(missing.status).toBe(64);
    expect(missing.stderr).toMatch(/missing --gdb/);
    const bad = lockstep('run', 'guest/bin/hello.elf', '--gdb', 'nowhere');
    expect(bad.status).toBe(64);
    expect(bad.stderr).toMatch(/--gdb: 'nowhere' must be <host>:<port>/);
    expect(lockstep('debug', 'x.log', 'guest/bin/hello.elf', '--gdb', '127.0.0.1:0', '--checkpoint-interval', '0').status).toBe(64);
  });

  it('exits 69 naming the address when the gdb port is taken', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const r = lockstep('run', 'guest/bin/hello.elf', '--gdb', `127.0.0.1:${port}`);
      expect(r.status).toBe(69);
      expect(r.stderr).toContain(`127.0.0.1:${port}`);
    } finally {
      server.close();
    }
  });
});
