// The `lockstep` executable as a user meets it: help, exit statuses, stats, and clear usage errors.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { minimalElf } from '../helpers/tiny-elf.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
// package.json's bin (dist/cli/lockstep.cjs: `run` bundled into it, the other verbs handed to the ES modules).
const bin = join(root, (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: { lockstep: string } }).bin.lockstep);
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function lockstep(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', timeout: 240_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('lockstep CLI', () => {
  it('prints general help naming the run command', () => {
    const r = lockstep('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Usage: lockstep <command>/);
    expect(r.stdout).toMatch(/run <guest\.elf>/);
  });

  it("every command's --help lists its exit statuses", () => {
    for (const verb of ['run', 'record', 'replay', 'primary', 'secondary', 'ft', 'agent', 'manager', 'cluster', 'demo']) {
      const r = lockstep(verb, '--help');
      expect(r.status, verb).toBe(0);
      expect(r.stdout, verb).toMatch(/Exit status/);
    }
  });

  it('a cluster store that does not answer is 69 (unavailable), one that does not exist 64 (configuration)', () => {
    const token = join(tmp, 'token');
    writeFileSync(token, 'a-token-of-twenty-four-ch');
    // Port 1 on loopback: nothing listens there, so the etcd client's connection is refused at once.
    for (const verb of ['manager', 'agent']) {
      const dead = lockstep(verb, '--store', 'etcd:http://127.0.0.1:1', '--token-file', token, ...(verb === 'agent' ? ['--id', 'h1'] : []));
      expect(dead.status, `${verb}: ${dead.stderr}`).toBe(69);
      expect(dead.stderr).toContain('etcd is up');
    }
    const missing = lockstep('cluster', 'status', '--store', `dir:${join(tmp, 'no-such-store')}`);
    expect(missing.status).toBe(64);
    expect(missing.stderr).toContain('lockstep cluster init');
  });

  it('prints per-command help', () => {
    const r = lockstep('run', '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/--max-instructions/);
    expect(r.stdout).toMatch(/--clock <virtual\|real>/);
  });

  it('runs hello: console on stdout, exit status 0', () => {
    const r = lockstep('run', 'guest/bin/hello.elf');
    expect(r.stdout).toBe('Hello from lockstep!\n');
    expect(r.status).toBe(0);
  });

  it('prints instructions, branches, seconds and MIPS with --stats', () => {
    const r = lockstep('run', 'guest/bin/hello.elf', '--stats');
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^lockstep: \d+ instructions, \d+ branches, [\d.]+ s, [\d.]+ MIPS$/m);
  });

  it('exits 75 when the instruction budget runs out', () => {
    const r = lockstep('run', 'guest/bin/hash.elf', '--max-instructions', '1000');
    expect(r.status).toBe(75);
    expect(r.stderr).toMatch(/budget reached .*\(1000 instructions\)/);
  });

  it('passes the guest exit code through as the exit status', () => {
    // A guest that writes (7 << 16) | 0x3333 to the test finisher: exit code 7.
    // lui a0, 0x100; lui a1, 0x73; addi a1, a1, 0x333; sw a1, 0(a0)
    const code = [0x00100537, 0x000735b7, 0x33358593, 0x00b52023];
    const elf = minimalElf(code);
    const path = join(tmp, 'exit7.elf');
    writeFileSync(path, elf);
    const r = lockstep('run', path);
    expect(r.status).toBe(7);
  });

  it('exits 65 with the reason for an invalid ELF', () => {
    const path = join(tmp, 'bad.elf');
    writeFileSync(path, 'not an elf, just some text that is long enough to have a header');
    const r = lockstep('run', path);
    expect(r.status).toBe(65);
    expect(r.stderr).toMatch(/invalid ELF: not an ELF file/);
  });

  it('exits 66 for a missing file and 64 for bad options', () => {
    expect(lockstep('run', join(tmp, 'missing.elf')).status).toBe(66);
    const bad = lockstep('run', 'guest/bin/hello.elf', '--memory', 'lots');
    expect(bad.status).toBe(64);
    expect(bad.stderr).toMatch(/--memory: 'lots' is not a size/);
    expect(lockstep('run', 'guest/bin/hello.elf', '--clock', 'wall').stderr).toMatch(/--clock/);
    expect(lockstep('frobnicate').status).toBe(64);
  });

  it('accepts sizes with units for --memory', () => {
    expect(lockstep('run', 'guest/bin/hello.elf', '--memory', '2M').status).toBe(0);
    const tooSmall = lockstep('run', 'guest/bin/hello.elf', '--memory', '4K');
    expect(tooSmall.status).toBe(65);
    expect(tooSmall.stderr).toMatch(/outside guest RAM/);
  });
});
