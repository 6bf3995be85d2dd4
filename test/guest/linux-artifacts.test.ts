// Keeps the committed Linux guest honest: every file in guest/linux/bin (and the firmware) matches
// the SHA-256 manifest, the compressed files unpack to the recorded images, and, when asked with
// LOCKSTEP_LINUX_REBUILD, guest/linux/build.sh reproduces them byte for byte from Debian's
// linux-source-6.1 (`user`: user space and initramfs only, minutes; `1` or `all`: the kernel too,
// about half an hour on two cores).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { FIRMWARE_ELF, LINUX_BIN, LINUX_DIR, manifest, sha256 } from './linux.js';

describe('committed Linux guest', () => {
  const sums = manifest();

  it('lists exactly the committed files, the unpacked images and the firmware', () => {
    expect([...sums.keys()].sort()).toEqual(['Image', 'Image.gz', 'firmware.elf', 'rootfs.cpio', 'rootfs.cpio.gz', 'vmlinux.sym', 'vmlinux.sym.gz']);
    expect(readdirSync(LINUX_BIN).sort()).toEqual(['Image.gz', 'SHA256SUMS', 'rootfs.cpio.gz', 'vmlinux.sym.gz']);
  });

  for (const name of ['Image', 'rootfs.cpio', 'vmlinux.sym']) {
    it(`${name}.gz matches its digest and unpacks to the recorded ${name}`, () => {
      const packed = readFileSync(join(LINUX_BIN, `${name}.gz`));
      expect(sha256(packed)).toBe(sums.get(`${name}.gz`));
      expect(sha256(gunzipSync(packed))).toBe(sums.get(name));
    });
  }

  it('records the firmware the images were tested with', () => {
    expect(sha256(readFileSync(FIRMWARE_ELF))).toBe(sums.get('firmware.elf'));
  });

  it('holds an rv32 Linux Image and a newc initramfs with /init', () => {
    const image = gunzipSync(readFileSync(join(LINUX_BIN, 'Image.gz')));
    // The RISC-V Image header: magic "RISCV\0\0\0" at 48, "RSC\x05" at 56.
    expect(image.toString('latin1', 48, 53)).toBe('RISCV');
    expect(image.readUInt32LE(56)).toBe(0x05435352);
    const cpio = gunzipSync(readFileSync(join(LINUX_BIN, 'rootfs.cpio.gz')));
    expect(cpio.toString('latin1', 0, 6)).toBe('070701');
    expect(cpio.includes(Buffer.from('init\0'))).toBe(true);
    expect(cpio.includes(Buffer.from('TRAILER!!!\0'))).toBe(true);
  });

  it('holds the kernel symbols as an ELF32 RISC-V file that names the kernel functions and variables', () => {
    const sym = gunzipSync(readFileSync(join(LINUX_BIN, 'vmlinux.sym.gz')));
    expect(sym.toString('latin1', 0, 4)).toBe('\x7fELF');
    expect(sym[4]).toBe(1); // ELFCLASS32
    expect(sym.readUInt16LE(18)).toBe(243); // EM_RISCV
    // The string table merges suffixes ("start_kernel" ends "_start_kernel"): look for the names' ends.
    for (const name of ['start_kernel', 'kernel_execve', 'linux_banner', 'jiffies']) expect(sym.includes(Buffer.from(`${name}\0`)), name).toBe(true);
  });
});

const mode = process.env.LOCKSTEP_LINUX_REBUILD;
const toolchain = spawnSync('riscv64-linux-gnu-gcc', ['-dumpversion'], { encoding: 'utf8', timeout: 10_000 });
const skip =
  mode === undefined || mode === '' || mode === '0'
    ? 'set LOCKSTEP_LINUX_REBUILD=user (user space) or =1 (everything) to rebuild'
    : toolchain.status !== 0 || toolchain.stdout.trim() !== '12'
      ? 'needs riscv64-linux-gnu-gcc 12 (apt-get install gcc-riscv64-linux-gnu)'
      : !existsSync(process.env.LOCKSTEP_LINUX_SOURCE ?? '/usr/src/linux-source-6.1.tar.xz')
        ? 'needs /usr/src/linux-source-6.1.tar.xz (apt-get install linux-source-6.1)'
        : undefined;
if (skip !== undefined) console.warn(`test/guest/linux-artifacts.test.ts: rebuild skipped (${skip})`);

describe.skipIf(skip !== undefined)('Linux guest rebuild', () => {
  it(
    'guest/linux/build.sh reproduces the committed images byte for byte',
    () => {
      const stage = mode === 'user' ? 'check-user' : 'check';
      const r = spawnSync(join(LINUX_DIR, 'build.sh'), [stage], { encoding: 'utf8', timeout: 3 * 3600_000, maxBuffer: 256 << 20 });
      expect(r.status, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`).toBe(0);
      expect(r.stdout).not.toContain('DIFFERS');
    },
    3 * 3600_000,
  );
});
