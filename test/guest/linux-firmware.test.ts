// lockstep's SBI firmware on the oracle: the S-mode test payload (guest/firmware/sbitest) calls every
// SBI function and provokes the traps the firmware forwards, and must print exactly its .expected
// under QEMU, both on a hart like lockstep's and on QEMU's default one (Sstc, where the timer path
// differs). The committed ELFs must rebuild byte for byte.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { qemuAvailable, QEMU } from '../helpers/qemu.js';
import { FIRMWARE_DIR, FIRMWARE_ELF, QEMU_CPU, SBITEST_ELF } from './linux.js';

const EXPECTED = readFileSync(join(FIRMWARE_DIR, 'sbitest', 'sbitest.expected'), 'latin1');

/** Runs the payload on the firmware; resolves with the console and QEMU's exit status. */
function runSbiTest(cpu: string | undefined): Promise<{ stdout: string; code: number | null }> {
  const args = ['-M', 'virt', '-m', '64M', '-nographic', '-monitor', 'none', '-serial', 'stdio', '-bios', FIRMWARE_ELF, '-kernel', SBITEST_ELF];
  if (cpu !== undefined) args.push('-cpu', cpu);
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString('latin1')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${QEMU} ${args.join(' ')}: still running after 60 s; output:\n${stdout}`));
    }, 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ stdout, code });
    });
  });
}

const noQemu = !qemuAvailable();
if (noQemu) console.warn(`test/guest/linux-firmware.test.ts: QEMU runs skipped (${QEMU} not found)`);

describe.skipIf(noQemu)('SBI firmware under QEMU', () => {
  it('answers every SBI call of the test payload as expected on a hart like lockstep’s', async () => {
    const r = await runSbiTest(QEMU_CPU);
    expect(r.stdout).toBe(EXPECTED);
    expect(r.code).toBe(0);
  });

  it('gives the same answers on QEMU’s default hart, whose timer goes through Sstc', async () => {
    const r = await runSbiTest(undefined);
    expect(r.stdout).toBe(EXPECTED);
    expect(r.code).toBe(0);
  });
});

const gcc = spawnSync('riscv64-unknown-elf-gcc', ['-dumpversion'], { encoding: 'utf8', timeout: 10_000 });
const noGcc = gcc.status !== 0 || gcc.stdout.trim() !== '12.2.0';
if (noGcc) console.warn('test/guest/linux-firmware.test.ts: rebuild skipped (needs riscv64-unknown-elf-gcc 12.2.0)');

describe.skipIf(noGcc)('SBI firmware rebuild', () => {
  it('reproduces bin/firmware.elf and bin/sbitest.elf byte for byte', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-fw-'));
    try {
      const r = spawnSync('make', ['-C', FIRMWARE_DIR, `BIN=${join(dir, 'bin')}`, `BUILD=${join(dir, 'build')}`], { encoding: 'utf8', timeout: 120_000 });
      expect(r.status, r.stderr).toBe(0);
      for (const name of ['firmware.elf', 'sbitest.elf']) {
        const rebuilt = readFileSync(join(dir, 'bin', name));
        expect(rebuilt.equals(readFileSync(join(FIRMWARE_DIR, 'bin', name))), `${name} differs; run make -C guest/firmware and commit`).toBe(true);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
