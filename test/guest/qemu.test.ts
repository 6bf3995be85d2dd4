// Validates the example guests themselves on the oracle: each one, under QEMU, prints exactly its
// guest/examples/<name>.expected and exits 0. A failure here is a guest bug, not a lockstep bug.
import { describe, expect, it } from 'vitest';
import { qemuAvailable, QEMU, runUnderQemu } from '../helpers/qemu.js';
import { elfPath, expectedOutput, plainGuestNames, QEMU_OPTIONS } from './guests.js';

const skipReason = qemuAvailable() ? undefined : `${QEMU} not found on PATH (apt-get install qemu-system-misc)`;
if (skipReason) console.warn(`test/guest/qemu.test.ts skipped: ${skipReason}`);

if (skipReason !== undefined) {
  it.skip(`example guests under QEMU: ${skipReason}`, () => {});
} else {
describe('example guests under QEMU', () => {
  it('has an expected-output file for every device-less guest', () => {
    const missing = plainGuestNames().filter((n) => expectedOutput(n) === undefined);
    expect(missing).toEqual([]);
  });

  for (const name of plainGuestNames()) {
    it(`${name} prints its expected output and exits 0`, async () => {
      const r = await runUnderQemu(elfPath(name), QEMU_OPTIONS);
      expect(r.stdout).toBe(expectedOutput(name));
      expect(r.exitCode).toBe(0);
    });
  }

  it('hello runs on the plain -serial stdio configuration too', async () => {
    const r = await runUnderQemu(elfPath('hello'), { timeoutMs: QEMU_OPTIONS.timeoutMs });
    expect(r).toEqual({ stdout: 'Hello from lockstep!\n', exitCode: 0 });
  });

  it('kills QEMU and rejects when the timeout passes first', async () => {
    // hash retires ~476 M instructions: far longer than 1 ms on any host.
    await expect(runUnderQemu(elfPath('hash'), { timeoutMs: 1 })).rejects.toThrow(/killed after 1 ms/);
  });
});
}
