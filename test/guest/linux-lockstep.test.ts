// The committed Linux guest on lockstep: the same boot as QEMU's (the console up to the user-space
// marker, line for line, timestamps aside), a real-clock recording of a boot and a shell session with
// UART input that replays to the same state hash, and a snapshot of the running system that restores
// and goes on. One virtual-clock boot serves the comparison and the snapshot. Waits are event-based
// and bounded; no time is asserted.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMITTED_LINUX_APPEND, Machine, Recorder, Replayer, committedLinux, type MachineOptions } from '../../src/index.js';
import { qemuAvailable, QEMU } from '../helpers/qemu.js';
import { expectedOutput } from './guests.js';
import { until } from '../helpers/wait.js';
import { MARKER, MachineConsole, linuxQemuArgs, unpackArtifacts, withoutTimestamps, type LinuxArtifacts } from './linux.js';

/** Bounds for a loaded two-core machine (lockstep reaches the marker in well under a second when idle). */
const BOOT_MS = 120_000;
const STEP_MS = 60_000;
const PROMPT = /\n# $/;
/**
 * Lines printed by background work (the initramfs is unpacked asynchronously): where they fall among the
 * others depends on the host's timing on QEMU (found on a loaded machine), so they are compared as present,
 * not in place.
 */
const ASYNC_LINE = /^(Unpacking initramfs\.\.\.|Freeing initrd memory: )/;
/** virtio-net in slot 0, as the QEMU command line puts it (eth0 comes up; frames go nowhere). */
const OPTIONS: MachineOptions = { memory: 64 << 20, clock: 'virtual', devices: { net: true } };

const noQemu = !qemuAvailable();
if (noQemu) console.warn(`test/guest/linux-lockstep.test.ts: the QEMU comparison is skipped: ${QEMU} not found`);

/** Types `line` at the prompt that ends at `at`; resolves with the reply and where the next prompt ends. */
async function command(c: MachineConsole, at: number, line: string): Promise<{ reply: string; at: number }> {
  c.machine.input(`${line}\n`);
  const echoed = await c.waitFor(`${line}\n`, STEP_MS, at);
  const prompt = await c.waitFor(PROMPT, STEP_MS, echoed.end);
  return { reply: c.output.slice(echoed.end, prompt.end - 2), at: prompt.end };
}

describe('Linux on lockstep', () => {
  let art: LinuxArtifacts;
  /** The virtual-clock boot the first test makes: its console at the first prompt and a snapshot there. */
  let booted: { console: string; snapshot: Uint8Array } | undefined;

  beforeAll(() => {
    art = unpackArtifacts();
  });
  afterAll(() => art?.cleanup());

  it(
    'boots to the user-space marker with the console QEMU prints for the same images and device tree',
    async () => {
      const m = new Machine(OPTIONS);
      const c = new MachineConsole(m);
      let qemu: ChildProcess | undefined;
      const serial = join(art.dir, 'qemu-serial.txt');
      try {
        const info = m.loadLinux({ ...committedLinux(), append: COMMITTED_LINUX_APPEND });
        // QEMU boots with the very tree lockstep generated (its /chosen filled in again from -append and
        // -initrd), so the kernel sees the same machine on both.
        const dtb = join(art.dir, 'lockstep.dtb');
        writeFileSync(dtb, m.readMemory(info.dtb.address, info.dtb.size));
        if (!noQemu) {
          // The console to a file, not a pipe: on a loaded host QEMU's UART drops bytes it cannot write
          // at once (its stdio back-end gave up on 5 bytes of a line once), which a file never refuses.
          const args = linuxQemuArgs({ image: art.image, initrd: art.initrd, append: COMMITTED_LINUX_APPEND, dtb, net: true });
          args[args.indexOf('-serial') + 1] = `file:${serial}`;
          qemu = spawn(QEMU, args, { stdio: 'ignore' });
        }
        const running = c.run();
        const marker = await c.waitFor(`${MARKER}\n`, BOOT_MS);
        const prompt = await c.waitFor(PROMPT, STEP_MS, marker.end);
        m.stop();
        expect((await running).kind).toBe('stopped');
        const ours = c.output.slice(0, marker.end);
        expect(ours).toContain('lockstep-sbi: SBI 2.0, hart 0, next 0x80400000 (S-mode), device tree 0x83e00000\n');
        expect(ours).toContain('lockstep-linux: eth0 10.0.2.15/24 via 10.0.2.2\n');
        booted = { console: c.output.slice(0, prompt.end), snapshot: m.snapshot() };
        if (qemu) {
          const text = (): string => (existsSync(serial) ? readFileSync(serial, 'latin1').replaceAll('\r\n', '\n') : '');
          await until(`QEMU's console to show ${MARKER}`, () => text().includes(`${MARKER}\n`) || qemu!.exitCode !== null, { timeoutMs: BOOT_MS, everyMs: 50 });
          const theirs = text();
          expect(theirs, `QEMU (${QEMU} ${qemu.spawnargs.join(' ')}) ended before the marker`).toContain(`${MARKER}\n`);
          const [a, b] = [ours, theirs.slice(0, theirs.indexOf(`${MARKER}\n`) + MARKER.length + 1)].map((t) => withoutTimestamps(t).split('\n'));
          // Every line, as often; and in the same order, but for what background work prints whenever it is done.
          expect([...a!].sort()).toEqual([...b!].sort());
          expect(a!.filter((l) => !ASYNC_LINE.test(l))).toEqual(b!.filter((l) => !ASYNC_LINE.test(l)));
        }
      } finally {
        m.close();
        if (qemu && qemu.exitCode === null) {
          const gone = new Promise((r) => qemu!.once('exit', r));
          qemu.kill('SIGKILL');
          await gone;
        }
      }
    },
    BOOT_MS + 2 * STEP_MS,
  );

  it(
    'restores a snapshot of the running system, which then takes commands and runs programs',
    async () => {
      expect(booted, 'the boot test made the snapshot').toBeDefined();
      const run = async (lines: string[]): Promise<string[]> => {
        const m = new Machine(OPTIONS);
        const c = new MachineConsole(m);
        try {
          m.restore(booted!.snapshot);
          const running = c.run();
          const replies: string[] = [];
          let at = 0;
          for (const line of lines) {
            const r = await command(c, at, line);
            replies.push(r.reply);
            at = r.at;
          }
          m.input('poweroff\n');
          await c.waitFor('lockstep-linux: powering off\n', STEP_MS, at);
          expect(await running).toMatchObject({ kind: 'exit', code: 0 });
          return replies;
        } finally {
          m.close();
        }
      };
      const lines = ['echo restored', 'crc32', 'cat /proc/cmdline'];
      const first = await run(lines);
      expect(first).toEqual(['restored\n', expectedOutput('crc32'), `${COMMITTED_LINUX_APPEND}\n`]);
      // The virtual clock makes the restored system deterministic: a second restore does the same.
      expect(await run(lines)).toEqual(first);
    },
    4 * STEP_MS,
  );

  it(
    'a boot and a shell session recorded with the real clock and UART input replay to the same state hash',
    async () => {
      const options: MachineOptions = { ...OPTIONS, clock: 'real' };
      const recorded = new Machine(options);
      const batches: Uint8Array[] = [];
      let rec: { console: string; hash: bigint; instret: bigint };
      try {
        const c = new MachineConsole(recorded);
        recorded.loadLinux({ ...committedLinux(), append: COMMITTED_LINUX_APPEND });
        const recorder = new Recorder(recorded, { hashInterval: 50_000_000 });
        recorder.on('batch', (b) => batches.push(b.slice()));
        const running = c.run();
        let at = (await c.waitFor(PROMPT, BOOT_MS, (await c.waitFor(`${MARKER}\n`, BOOT_MS)).end)).end;
        at = (await command(c, at, 'hash')).at;
        at = (await command(c, at, 'time sort')).at;
        recorded.input('poweroff\n');
        await c.waitFor('lockstep-linux: powering off\n', STEP_MS, at);
        const result = await running;
        expect(result).toMatchObject({ kind: 'exit', code: 0 });
        recorder.finish(result);
        expect(c.output).toContain(expectedOutput('hash'));
        rec = { console: c.output, hash: recorded.stateHash(), instret: result.instret };
      } finally {
        recorded.close();
      }
      const replayed = new Machine(options);
      try {
        const c = new MachineConsole(replayed);
        replayed.loadLinux({ ...committedLinux(), append: COMMITTED_LINUX_APPEND });
        const replayer = new Replayer(replayed);
        for (const b of batches) replayer.feed(b);
        replayer.end();
        const result = await c.run();
        expect(result).toMatchObject({ kind: 'exit', code: 0 });
        expect(result.instret).toBe(rec.instret);
        expect(c.output).toBe(rec.console);
        expect(replayed.stateHash()).toBe(rec.hash);
      } finally {
        replayed.close();
      }
    },
    BOOT_MS + 6 * STEP_MS,
  );
});
