// Keeps the committed guest ELFs honest: rebuilding guest/ from source with the Debian toolchain
// must reproduce every file in guest/bin byte for byte, so the binaries tests run are the sources.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN_DIR, GUEST_DIR, guestNames } from './guests.js';

const GCC = 'riscv64-unknown-elf-gcc';
/** The compiler the committed ELFs were built with; another version legitimately emits other code. */
const GCC_VERSION = '12.2.0';

function skipReason(): string | undefined {
  const v = spawnSync(GCC, ['-dumpversion'], { encoding: 'utf8', timeout: 10_000 });
  if (v.error !== undefined || v.status !== 0) return `${GCC} not found on PATH (apt-get install gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf)`;
  if (v.stdout.trim() !== GCC_VERSION) return `${GCC} is ${v.stdout.trim()}, the committed ELFs were built with ${GCC_VERSION}`;
  const m = spawnSync('make', ['--version'], { stdio: 'ignore', timeout: 10_000 });
  if (m.error !== undefined || m.status !== 0) return 'make not found on PATH';
  return undefined;
}

const reason = skipReason();
if (reason !== undefined) console.warn(`test/guest/build.test.ts skipped: ${reason}`);

/**
 * The klib-* guests are built around sources from Debian's linux-source-6.1 tarball (guest/Makefile's
 * LINUX_TARBALL). Without it the others are still checked, and the klib ones are reported as skipped.
 */
const LINUX_TARBALL = '/usr/src/linux-source-6.1.tar.xz';
const haveTarball = existsSync(LINUX_TARBALL);
const isKlib = (name: string): boolean => name.startsWith('klib-');
if (reason === undefined && !haveTarball) {
  console.warn(`test/guest/build.test.ts: ${LINUX_TARBALL} not found (apt-get install linux-source-6.1): the klib-* guests are not rebuilt`);
}
const checked = (): string[] => guestNames().filter((n) => haveTarball || !isKlib(n));

if (reason !== undefined) {
  it.skip(`guest rebuild: ${reason}`, () => {});
} else {
  describe('guest rebuild', () => {
    let dir = '';
    let out = '';

    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'lockstep-guest-'));
      out = join(dir, 'bin');
      // BUILD too, so objects from a previous `make` in guest/build are not reused.
      const args = ['-C', GUEST_DIR, `BIN=${out}`, `BUILD=${join(dir, 'build')}`, `LINUX_TARBALL=${LINUX_TARBALL}`, '-j2'];
      if (!haveTarball) args.push('KLIB_EXAMPLES=');
      const r = spawnSync('make', args, {
        encoding: 'utf8',
        timeout: 300_000,
      });
      if (r.status !== 0) throw new Error(`make -C guest failed (status ${String(r.status)}):\n${r.stdout}\n${r.stderr}`);
    }, 600_000);

    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('builds exactly the set of ELFs committed in guest/bin', () => {
      const built = readdirSync(out).filter((f) => f.endsWith('.elf')).sort();
      expect(built).toEqual(checked().map((n) => `${n}.elf`).sort()); // file names sort 'a-b.elf' before 'a.elf'
    });

    for (const name of guestNames()) {
      it.skipIf(!checked().includes(name))(`${name}.elf rebuilds byte for byte`, () => {
        const committed = readFileSync(join(BIN_DIR, `${name}.elf`));
        const rebuilt = readFileSync(join(out, `${name}.elf`));
        // Buffer.equals, not toEqual: a diff of two binary buffers is unreadable and slow.
        expect(rebuilt.equals(committed), `${name}.elf differs from guest/bin; run make -C guest and commit`).toBe(true);
      });
    }
  });
}
