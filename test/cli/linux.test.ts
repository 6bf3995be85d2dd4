// `lockstep run|record|replay` booting Linux with QEMU's flags: --linux boots the committed guest with
// one flag, a recording's log names its images so a replay with another initrd or command line is
// refused before anything runs, and flags that cannot go together are usage errors.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'dist', 'cli', 'main.js');
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-cli-linux-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Bounds for a loaded two-core machine (a boot plus `hash` takes about two seconds when idle). */
const RUN_MS = 180_000;
const MARKER = 'lockstep-linux: init ready\n';
const APPEND = 'console=ttyS0 quiet lockstep.run=hash';

function lockstep(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: 'utf8', timeout: RUN_MS });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The kernel's console writes line ends as CR LF. */
const lines = (console: string): string => console.replaceAll('\r\n', '\n');

describe('lockstep with Linux', () => {
  const log = join(tmp, 'linux.log');

  it('run --linux boots the committed guest, runs a program as a process and powers off (exit 0)', () => {
    const r = lockstep('run', '--linux', '--append', APPEND);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(lines(r.stdout)).toContain('lockstep-sbi: SBI 2.0, hart 0, next 0x80400000 (S-mode), device tree 0x83e00000\n');
    expect(lines(r.stdout)).toContain(MARKER);
    expect(lines(r.stdout)).toContain(`lockstep-linux: run hash\n${readFileSync(join(root, 'guest', 'examples', 'hash.expected'), 'latin1')}lockstep-linux: hash exited 0\n`);
    expect(lines(r.stdout)).toContain('lockstep-linux: powering off\n');
  }, RUN_MS);

  it('records a real-clock boot; replay --linux reproduces its console and state hash; other images are refused by name', () => {
    const rec = lockstep('record', '--linux', '--append', APPEND, '-o', log);
    expect(rec.status).toBe(0);
    expect(lines(rec.stdout)).toContain('lockstep-linux: hash exited 0\n');
    // The command line comes from the log: --linux alone replays it.
    const rep = lockstep('replay', log, '--linux');
    expect(rep.status).toBe(0);
    expect(rep.stdout).toBe(rec.stdout);
    expect(rep.stderr).toMatch(/state hash 0x[0-9a-f]{16}/);

    // The same images given as files: a gzip'd kernel is unpacked before placing, so it is the same kernel.
    const initrdFile = join(tmp, 'rootfs.cpio');
    writeFileSync(initrdFile, gunzipSync(readFileSync(join(root, 'guest', 'linux', 'bin', 'rootfs.cpio.gz'))));
    const explicit = lockstep('replay', log, '--kernel', 'guest/linux/bin/Image.gz', '--initrd', initrdFile, '--bios', 'guest/firmware/bin/firmware.elf');
    expect(explicit.status, explicit.stderr).toBe(0);
    expect(explicit.stdout).toBe(rec.stdout);

    // A gzip'd initrd goes into RAM as given (the kernel unpacks it): other bytes, refused before anything runs.
    const initrd = lockstep('replay', log, '--linux', '--initrd', 'guest/linux/bin/rootfs.cpio.gz');
    expect(initrd.status).toBe(65);
    expect(initrd.stderr).toMatch(/^lockstep replay: initrd: .* was made with other boot images: the initrd: sha256 [0-9a-f]+… there, [0-9a-f]+… here\n$/);
    expect(initrd.stdout).toBe('');
    const append = lockstep('replay', log, '--linux', '--append', 'console=ttyS0');
    expect(append.status).toBe(65);
    expect(append.stderr).toContain(`the command line was "${APPEND}", here it is "console=ttyS0"`);
    const elf = lockstep('replay', log, 'guest/bin/hello.elf');
    expect(elf.status).toBe(64);
    expect(elf.stderr).toContain('is a recording of Linux');
  }, 4 * RUN_MS);

  it('refuses Linux flags without a kernel, an ELF together with a kernel, and a missing kernel file', () => {
    const initrd = lockstep('run', '--initrd', 'rootfs.cpio');
    expect(initrd.status).toBe(64);
    expect(initrd.stderr).toContain('--initrd is part of a Linux boot: give --kernel (or --linux) too');
    const both = lockstep('run', 'guest/bin/hello.elf', '--linux');
    expect(both.status).toBe(64);
    expect(both.stderr).toContain('are exclusive');
    const missing = lockstep('record', '--kernel', join(tmp, 'no-such-Image'), '-o', join(tmp, 'x.log'));
    expect(missing.status).toBe(66);
    const notElf = lockstep('run', '--linux', '--bios', 'guest/linux/bin/SHA256SUMS');
    expect(notElf.status).toBe(65);
    expect(notElf.stderr).toMatch(/^lockstep run: .*bios/);
  });

  it('documents the Linux flags in every verb that boots', () => {
    for (const verb of ['run', 'record', 'replay']) {
      const h = lockstep(verb, '--help');
      expect(h.status).toBe(0);
      for (const flag of ['--kernel', '--initrd', '--bios', '--linux']) expect(h.stdout, `${verb} --help`).toContain(flag);
    }
    expect(lockstep('--help').stdout).toContain('run --linux');
  });
});
