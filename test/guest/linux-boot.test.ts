// The committed Linux guest on the oracle: QEMU 7.2 boots our firmware, the Image and the initramfs
// to the user-space marker, checks the rv32 system-call stand-ins (lsystest), runs the CPU workloads
// as Linux processes (their output must be the bare-metal examples' .expected, byte for byte), takes
// shell commands on the console, and powers off
// through reboot(2) → SBI SRST → the test finisher, so QEMU exits 0. Also boots with the device tree
// from src/machine/device-tree.ts instead of QEMU's. Waits are event-based and bounded; the time to
// the marker is printed, never asserted.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDeviceTree, virtBootLayout } from '../../src/machine/device-tree.js';
import { qemuAvailable, QEMU } from '../helpers/qemu.js';
import { expectedOutput } from './guests.js';
import { LINUX_DIR, MARKER, QemuConsole, unpackArtifacts, type LinuxArtifacts } from './linux.js';

/** Bounds for a loaded two-core machine (QEMU reaches the marker in well under a second when idle). */
const BOOT_MS = 120_000;
const STEP_MS = 60_000;
const WORKLOADS = ['hash', 'sort', 'crc32', 'recurse', 'mixed'];
/** lsystest checks guest/linux/user/lsys.h's stand-ins for the calls rv32 Linux lacks. */
const LSYSTEST_EXPECTED = readFileSync(join(LINUX_DIR, 'user', 'lsystest.expected'), 'latin1');

const noQemu = !qemuAvailable();
if (noQemu) console.warn(`test/guest/linux-boot.test.ts skipped: ${QEMU} not found`);

describe.skipIf(noQemu)('Linux guest under QEMU', () => {
  let art: LinuxArtifacts;
  const consoles: QemuConsole[] = [];
  const start = (o: Omit<ConstructorParameters<typeof QemuConsole>[0], 'image' | 'initrd'>): QemuConsole => {
    const c = new QemuConsole({ image: art.image, initrd: art.initrd, ...o });
    consoles.push(c);
    return c;
  };

  beforeAll(() => {
    art = unpackArtifacts();
  });
  afterAll(async () => {
    for (const c of consoles) await c.kill();
    art?.cleanup();
  });

  it(
    'boots to the marker, runs the workloads as processes with the bare-metal output, and powers off',
    async () => {
      const qemu = start({ append: `console=ttyS0 lockstep.run=lsystest,${WORKLOADS.join(',')}`, net: true });
      const marker = await qemu.waitFor(`${MARKER}\n`, BOOT_MS);
      console.log(`linux-boot: user-space marker after ${marker.ms.toFixed(0)} ms (QEMU ${qemu.args.join(' ')})`);
      expect(qemu.output).toContain('lockstep-sbi: SBI 2.0, hart 0, next 0x80400000 (S-mode), device tree 0x83e00000\n');
      expect(qemu.output).toContain('lockstep-linux: eth0 10.0.2.15/24 via 10.0.2.2\n');
      let from = marker.end;
      for (const name of ['lsystest', ...WORKLOADS]) {
        const begin = await qemu.waitFor(`lockstep-linux: run ${name}\n`, STEP_MS, from);
        const done = await qemu.waitFor(`lockstep-linux: ${name} exited 0\n`, STEP_MS, begin.end);
        const printed = qemu.output.slice(begin.end, done.end - `lockstep-linux: ${name} exited 0\n`.length);
        expect(printed, name).toBe(name === 'lsystest' ? LSYSTEST_EXPECTED : expectedOutput(name));
        from = done.end;
      }
      await qemu.waitFor('lockstep-linux: powering off\n', STEP_MS, from);
      expect(await qemu.exitCode(STEP_MS)).toBe(0);
    },
    BOOT_MS + 8 * STEP_MS,
  );

  it(
    'runs a shell on the console: builtins, /proc, the network, a program, poweroff',
    async () => {
      const qemu = start({ append: 'console=ttyS0', net: true });
      let at = (await qemu.waitFor(`${MARKER}\n`, BOOT_MS)).end;
      at = (await qemu.waitFor('# ', STEP_MS, at)).end;
      const command = async (line: string, reply: string | RegExp): Promise<string> => {
        qemu.type(line);
        const echoed = await qemu.waitFor(`${line}\n`, STEP_MS, at);
        const prompt = await qemu.waitFor(/\n# $/m, STEP_MS, echoed.end);
        const text = qemu.output.slice(echoed.end, prompt.end - 2);
        expect(text).toMatch(reply);
        at = prompt.end;
        return text;
      };
      await command('echo hello lockstep', /^hello lockstep\n$/);
      await command('cat /proc/cmdline', /^console=ttyS0\n$/);
      await command('ls /bin', /^crc32\ndisk\nhash\nkvd\nlsystest\nmixed\nrecurse\nsort\nudpecho\n$/);
      await command('mounts', /proc \/proc proc[\s\S]*sysfs \/sys sysfs[\s\S]*devtmpfs \/dev devtmpfs/);
      await command('ps', /^ {2}PID {2}PPID S COMMAND\n {4}1 {5}0 [RS] init\n/);
      await command('net', /^lo: up inet 127\.0\.0\.1\neth0: up inet 10\.0\.2\.15\n$/);
      await command('uname', /^Linux 6\.1\.\d+ #1 .* riscv32\n$/);
      const recurse = await command('run recurse', /^recurse: /);
      expect(recurse).toBe(expectedOutput('recurse'));
      await command('nosuchprogram', /^nosuchprogram: not found\n$/);
      qemu.type('poweroff');
      await qemu.waitFor('lockstep-linux: powering off', STEP_MS, at);
      expect(await qemu.exitCode(STEP_MS)).toBe(0);
    },
    BOOT_MS + 16 * STEP_MS,
  );

  it(
    'boots with the device tree generated by src/machine/device-tree.ts, its virtio devices in lockstep’s slots',
    async () => {
      const append = 'console=ttyS0';
      const initrdSize = readFileSync(art.initrd).length;
      const layout = virtBootLayout(64 << 20, 0x8000_0000, 0x8000_3010, initrdSize);
      const dtb = join(art.dir, 'lockstep.dtb');
      const disk = join(art.dir, 'disk.img');
      writeFileSync(disk, Buffer.alloc(1 << 20));
      // net, disk and rng in slots 0, 1 and 2, as lockstep places them; only those slots are described.
      writeFileSync(dtb, buildDeviceTree({ memory: 64 << 20, bootargs: append, initrd: layout.initrd, virtioSlots: [0, 1, 2] }));
      const qemu = start({ append, dtb, net: true, disk, rng: true });
      let at = (await qemu.waitFor(`${MARKER}\n`, BOOT_MS)).end;
      const log = qemu.output.slice(0, at);
      // Our tree says 95 PLIC sources where QEMU's says 96: proof that the kernel read ours.
      expect(log).toContain('plic: plic@c000000: mapped 95 interrupts');
      expect(log).toContain('virtio_blk virtio1: [vda] 2048 512-byte logical blocks');
      expect(log).toContain('lockstep-linux: eth0 10.0.2.15/24 via 10.0.2.2\n');
      at = (await qemu.waitFor('# ', STEP_MS, at)).end;
      qemu.type('ls /dev');
      const listing = await qemu.waitFor(/\n# $/, STEP_MS, at);
      expect(qemu.output.slice(at, listing.end)).toMatch(/\nhwrng\n[\s\S]*\nvda\n/);
      at = listing.end;
      qemu.type('crc32');
      const done = await qemu.waitFor(/\n# $/, STEP_MS, at);
      expect(qemu.output.slice(at, done.end)).toBe(`crc32\n${expectedOutput('crc32')!}# `);
      qemu.type('poweroff');
      expect(await qemu.exitCode(STEP_MS)).toBe(0);
    },
    BOOT_MS + 4 * STEP_MS,
  );
});
