// The committed example guests, shared by the guest tests: where the ELFs and expected outputs live,
// and the one QEMU configuration (semihosting on) that matches lockstep's platform.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const GUEST_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../guest');
export const BIN_DIR = join(GUEST_DIR, 'bin');

/**
 * Bound for one guest under QEMU (the CPU workloads take well under a second; memtouch a few on a quiet
 * machine, and over 30 s on a loaded one).
 */
export const QEMU_TIMEOUT_MS = 240_000;

/**
 * lockstep always answers semihosting calls, so QEMU runs every guest with semihosting enabled too;
 * otherwise the marked ebreak would be a breakpoint exception on one machine and a call on the other.
 */
export const QEMU_OPTIONS = { timeoutMs: QEMU_TIMEOUT_MS, semihosting: true } as const;

/** Names of the committed guests (guest/bin/<name>.elf), sorted. */
export function guestNames(): string[] {
  return readdirSync(BIN_DIR)
    .filter((f) => f.endsWith('.elf'))
    .map((f) => f.slice(0, -'.elf'.length))
    .sort();
}

/**
 * Guests that need virtio devices (guest/Makefile's DEVICE_EXAMPLES): they fail without them, and
 * kvserver never exits, so test/guest/devices.test.ts runs them with their devices and the
 * device-less tests (qemu.test.ts, differential.test.ts) leave them out. build.test.ts covers all.
 */
export const DEVICE_GUESTS: readonly string[] = ['rng', 'disk', 'kvserver'];

/** The committed guests that run on the bare board (no virtio devices) and exit: guestNames() minus DEVICE_GUESTS. */
export function plainGuestNames(): string[] {
  return guestNames().filter((n) => !DEVICE_GUESTS.includes(n));
}

export function elfPath(name: string): string {
  return join(BIN_DIR, `${name}.elf`);
}

/** The guest's expected console output, or undefined when guest/examples/<name>.expected is missing. */
export function expectedOutput(name: string): string | undefined {
  const p = join(GUEST_DIR, 'examples', `${name}.expected`);
  return existsSync(p) ? readFileSync(p, 'latin1') : undefined;
}
