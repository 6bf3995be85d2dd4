// The differential test: every committed guest must produce the same console bytes and the same exit
// code under lockstep as under QEMU, the oracle. Any difference is a lockstep bug (qemu.test.ts has
// already checked the guest against its expected output).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Machine, type RunResult } from '../../src/index.js';
import { qemuAvailable, QEMU, runUnderQemu } from '../helpers/qemu.js';
import { elfPath, plainGuestNames, QEMU_OPTIONS } from './guests.js';

/** Far above the largest workload (~480 M instructions), so only a runaway guest reaches it. */
const MAX_INSTRUCTIONS = 5_000_000_000;
/** Interpreter time for the biggest guests at a pessimistic 20 MIPS, plus QEMU. */
const TEST_TIMEOUT_MS = 120_000;

interface Outcome {
  stdout: string;
  exitCode: number;
}

async function runUnderLockstep(path: string): Promise<{ outcome: Outcome | undefined; result: RunResult; stdout: string }> {
  const m = new Machine({ memory: 64 * 1024 * 1024, clock: 'virtual' });
  const chunks: Uint8Array[] = [];
  let result: RunResult;
  try {
    m.on('console', (chunk: Uint8Array) => chunks.push(chunk.slice()));
    m.load(new Uint8Array(readFileSync(path)));
    result = await m.run({ maxInstructions: MAX_INSTRUCTIONS });
  } finally {
    // close() drains whatever console output is still in the ring, so collect after it.
    m.close();
  }
  // latin1 maps each byte to one char, as runUnderQemu does: no UTF-8 repair hides a wrong byte.
  const stdout = Buffer.concat(chunks).toString('latin1');
  const outcome = result.kind === 'exit' ? { stdout, exitCode: result.code } : undefined;
  return { outcome, result, stdout };
}

function describeStop(r: RunResult): string {
  switch (r.kind) {
    case 'trap':
      return `unhandled trap: cause ${r.cause} at pc 0x${r.pc.toString(16)} (tval 0x${r.tval.toString(16)})`;
    case 'halted':
      return `halted: ${r.reason} at pc 0x${r.pc.toString(16)}`;
    case 'budget':
      return `instruction budget of ${MAX_INSTRUCTIONS} exhausted at pc 0x${r.pc.toString(16)}`;
    default:
      return `stopped with kind '${r.kind}' instead of exiting`;
  }
}

const skipReason = qemuAvailable() ? undefined : `${QEMU} not found on PATH (apt-get install qemu-system-misc)`;
if (skipReason) console.warn(`test/guest/differential.test.ts skipped: ${skipReason}`);

if (skipReason !== undefined) {
  it.skip(`lockstep against QEMU: ${skipReason}`, () => {});
} else {
  describe('lockstep against QEMU', () => {
    for (const name of plainGuestNames()) {
      it(`${name}: same console output and exit code as QEMU`, async () => {
        const path = elfPath(name);
        // Run both at once: QEMU is a separate process and lockstep runs on its own vCPU thread.
        const [qemu, lockstep] = await Promise.all([runUnderQemu(path, QEMU_OPTIONS), runUnderLockstep(path)]);
        // A guest that did not exit has no exit code to compare; say why, with the output so far.
        expect(lockstep.outcome, `${name} under lockstep: ${describeStop(lockstep.result)}; output: ${JSON.stringify(lockstep.stdout)}`).toBeDefined();
        expect(lockstep.outcome!.stdout).toBe(qemu.stdout);
        expect(lockstep.outcome!.exitCode).toBe(qemu.exitCode);
      }, TEST_TIMEOUT_MS);
    }
  });
}
