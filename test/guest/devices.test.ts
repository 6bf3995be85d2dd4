// The virtio guests (rng, disk, kvserver) on the oracle: QEMU `virt` with modern virtio-mmio devices.
// Validates the guest SDK's drivers and IPv4 stack; test/guest/kv-script.ts holds the kvserver request
// script so the same answers can be demanded of lockstep's devices.
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { qemuArgs, qemuAvailable, QEMU } from '../helpers/qemu.js';
import { elfPath, expectedOutput, QEMU_TIMEOUT_MS } from './guests.js';

/** QEMU 7.2's virtio-mmio is legacy (version 1) unless told otherwise; lockstep's devices are version 2. */
const MODERN = ['-global', 'virtio-mmio.force-legacy=false'];

interface Running {
  child: ChildProcess;
  args: string[];
  output(): string;
  /** Resolves with the output once it matches, rejects when QEMU exits or the timeout passes first. */
  waitFor(re: RegExp, timeoutMs: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const spawned: ChildProcess[] = [];

/** Starts `guest` under QEMU with the plain `-serial stdio` console plus `deviceArgs`. */
function startQemu(guest: string, deviceArgs: string[]): Running {
  const args = [...qemuArgs(elfPath(guest), false), ...MODERN, ...deviceArgs];
  const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.push(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (b: Buffer) => {
    out.push(b);
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      resolve({ code, signal });
      for (const l of listeners) l();
    });
  });
  const output = (): string => Buffer.concat(out).toString('latin1');
  const describeRun = (): string =>
    `${QEMU} ${args.join(' ')}\n  output: ${JSON.stringify(output().slice(-500))}\n  stderr: ${Buffer.concat(err).toString('utf8').trim()}`;
  const waitFor = (re: RegExp, timeoutMs: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (re.test(output())) {
          done();
          resolve(output());
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done();
          reject(new Error(`QEMU exited before printing ${String(re)}: ${describeRun()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${String(re)} after ${timeoutMs} ms: ${describeRun()}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });
  return { child, args, output, waitFor, exited };
}

/** Runs `guest` to its exit (bounded by QEMU_TIMEOUT_MS) and returns console output and exit code. */
async function runToExit(guest: string, deviceArgs: string[]): Promise<{ stdout: string; exitCode: number | null }> {
  const q = startQemu(guest, deviceArgs);
  const timer = setTimeout(() => q.child.kill('SIGKILL'), QEMU_TIMEOUT_MS);
  const { code } = await q.exited;
  clearTimeout(timer);
  return { stdout: q.output(), exitCode: code };
}

/** guest/examples/disk.c's fill(): xorshift32 seeded from the sector number. */
function diskPattern(sector: number): Buffer {
  const b = Buffer.alloc(512);
  let x = Math.imul(0x9e3779b9, sector + 1) >>> 0;
  for (let i = 0; i < 512; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    b[i] = x & 0xff;
  }
  return b;
}

function killAll(): Promise<void> {
  const waits = spawned.splice(0).map(
    (c) =>
      new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve();
        c.once('close', () => resolve());
        c.kill('SIGKILL');
      }),
  );
  return Promise.all(waits).then(() => undefined);
}

const skipReason = qemuAvailable() ? undefined : `${QEMU} not found on PATH (apt-get install qemu-system-misc)`;
if (skipReason) console.warn(`test/guest/devices.test.ts skipped: ${skipReason}`);

if (skipReason !== undefined) {
  it.skip(`virtio guests under QEMU: ${skipReason}`, () => {});
} else {
  describe('virtio guests under QEMU', () => {
    let dir = '';
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'lockstep-devices-'));
    });
    afterEach(killAll);
    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('rng reads 64 bytes from virtio-rng', async () => {
      const r = await runToExit('rng', ['-device', 'virtio-rng-device']);
      expect(r.stdout).toBe(expectedOutput('rng'));
      expect(r.exitCode).toBe(0);
    });

    it('disk writes, flushes, reads back and verifies 4 sectors of a 1 MiB image', async () => {
      const img = join(dir, 'disk.img');
      writeFileSync(img, Buffer.alloc(1 << 20));
      const r = await runToExit('disk', ['-drive', `file=${img},if=none,format=raw,id=d0`, '-device', 'virtio-blk-device,drive=d0']);
      expect(r.stdout).toBe(expectedOutput('disk'));
      expect(r.exitCode).toBe(0);
      // The pattern really reached the image file, in the right sectors; the rest is still zero.
      const data = readFileSync(img);
      const written = new Set([1, 2, 1024, 2047]);
      for (let s = 0; s < 2048; s++) {
        const got = data.subarray(s * 512, (s + 1) * 512);
        const want = written.has(s) ? diskPattern(s) : Buffer.alloc(512);
        expect(got.equals(want), `sector ${s}`).toBe(true);
      }
    });

    it('rng reports a legacy device instead of driving it', async () => {
      const q = startQemu('rng', ['-global', 'virtio-mmio.force-legacy=true', '-device', 'virtio-rng-device']);
      const { code } = await q.exited;
      expect(q.output()).toMatch(/rng: init failed: legacy virtio-mmio/);
      expect(code).toBe(1);
    });
  });
}
