// Machine.loadLinux against QEMU 7.2's `-M virt` conventions: where the firmware, kernel, initrd and
// device tree land, what the generated tree says about the machine, how a given tree's /chosen is
// filled in, the entry registers, and a coded error (with nothing written) for every input it cannot
// boot. The boot itself, side by side with QEMU, is in test/guest/linux-lockstep.test.ts.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BootError,
  Machine,
  buildDeviceTree,
  checkLinuxIdentity,
  committedLinux,
  decodeDeviceTree,
  encodeDeviceTree,
  parseElf,
  virtBootLayout,
  type DeviceTree,
  type DeviceTreeNode,
  type LinuxBootOptions,
  type MachineOptions,
} from '../../src/index.js';
import { decodeLogHeader, encodeLogHeader, type LogMetadata } from '../../src/log/format.js';
import { prng } from '../cpu/prng.js';

const MIB = 1 << 20;
const FIRMWARE = readFileSync(new URL('../../guest/firmware/bin/firmware.elf', import.meta.url));
/** firmware.elf's highest segment ends here (guest/linux/README.md). */
const FIRMWARE_END = 0x8000_3010;

const machines: Machine[] = [];
afterEach(() => {
  for (const m of machines.splice(0)) m.close();
});
function machine(options: MachineOptions = {}): Machine {
  const m = new Machine({ memory: 64 * MIB, ...options });
  machines.push(m);
  return m;
}

function child(n: DeviceTreeNode | undefined, path: string): DeviceTreeNode | undefined {
  for (const part of path.split('/').filter(Boolean)) n = n?.children.find((c) => c.name === part);
  return n;
}
function prop(t: DeviceTree, path: string, name: string): Buffer | undefined {
  const v = child(t.root, path)?.props.find(([k]) => k === name)?.[1];
  return v === undefined ? undefined : Buffer.from(v);
}
const cells = (b: Buffer | undefined): number[] => (b === undefined ? [] : Array.from({ length: b.length / 4 }, (_, i) => b.readUInt32BE(i * 4)));
const text = (b: Buffer | undefined): string | undefined => b?.toString('utf8').replace(/\0$/, '');

/** A raw "kernel" of `size` bytes with a RISC-V Image header claiming `imageSize` (bss included). */
function fakeImage(size: number, imageSize = size): Uint8Array {
  const b = Buffer.alloc(size);
  b.writeUInt32LE(imageSize, 16);
  b.write('RISCV\0\0\0', 48, 'latin1');
  b.writeUInt32LE(0x05435352, 56);
  return b;
}

describe('Machine.loadLinux: QEMU 7.2 -M virt placement', () => {
  for (const memory of [64 * MIB, 256 * MIB]) {
    it(`puts every image where QEMU does with ${memory / MIB} MiB of RAM, and the entry registers of its reset vector`, () => {
      const { kernel, initrd, bios } = committedLinux();
      const m = machine({ memory });
      const info = m.loadLinux({ kernel, initrd, bios, append: 'console=ttyS0' });
      const want = virtBootLayout(memory, 0x8000_0000, FIRMWARE_END, initrd.length);
      expect(info.firmware).toEqual({ entry: 0x8000_0000, end: FIRMWARE_END });
      expect(info.kernel.address).toBe(want.kernel);
      expect(info.kernel.address).toBe(0x8040_0000);
      expect(info.initrd).toEqual(want.initrd);
      expect(info.initrd!.start).toBe(memory === 64 * MIB ? 0x8240_0000 : 0x8840_0000);
      expect(info.dtb.address).toBe(want.dtb);
      expect(Buffer.from(m.readMemory(info.kernel.address, kernel.length)).equals(Buffer.from(kernel))).toBe(true);
      expect(Buffer.from(m.readMemory(info.initrd!.start, initrd.length)).equals(Buffer.from(initrd))).toBe(true);
      for (const seg of parseElf(bios, { base: 0x8000_0000, size: memory }).segments) {
        expect(Buffer.from(m.readMemory(seg.addr, seg.data.length)).equals(Buffer.from(seg.data))).toBe(true);
      }
      // The kernel's header says how much it occupies once running (bss included): more than the file.
      expect(info.kernel.size).toBe(Buffer.from(kernel).readUInt32LE(16));
      expect(info.kernel.size).toBeGreaterThan(kernel.length);
      // QEMU's reset vector: a0 = hart 0, a1 = device tree, a2 = fw_dynamic_info, t0 = the firmware's entry.
      const r = m.registers();
      expect([r[10], r[11], r[12], r[5]]).toEqual([0, info.dtb.address, info.fwDynamicInfo, 0x8000_0000]);
      expect([...r].filter((_, i) => ![5, 10, 11, 12].includes(i)).every((v) => v === 0)).toBe(true);
      expect(m.pc).toBe(0x8000_0000);
      expect(m.privilege).toBe('M');
      const dyn = Buffer.from(m.readMemory(info.fwDynamicInfo, 24));
      expect([0, 4, 8, 12, 16, 20].map((o) => dyn.readUInt32LE(o))).toEqual([0x4942534f, 2, 0x8040_0000, 1, 0, 0]);
      // fw_dynamic_info and the 16 bytes the firmware adds to the tree stay inside the DTB's window, in RAM.
      expect(info.fwDynamicInfo).toBeGreaterThanOrEqual(info.dtb.address + info.dtb.size + 16);
      expect(info.fwDynamicInfo + 24).toBeLessThanOrEqual(0x8000_0000 + memory);
    });
  }

  it('generates the device tree from the machine: RAM size, the virtio devices present, bootargs, the initrd range', () => {
    const { kernel, initrd } = committedLinux();
    const m = machine({ memory: 128 * MIB, devices: { net: true, rng: true } });
    const info = m.loadLinux({ kernel, initrd, append: 'console=ttyS0 quiet' });
    const tree = decodeDeviceTree(m.readMemory(info.dtb.address, info.dtb.size));
    expect(cells(prop(tree, '/memory@80000000', 'reg'))).toEqual([0, 0x8000_0000, 0, 128 * MIB]);
    expect(child(tree.root, '/soc')!.children.filter((c) => c.name.startsWith('virtio_mmio')).map((c) => c.name).sort()).toEqual([
      'virtio_mmio@10001000',
      'virtio_mmio@10003000',
    ]);
    expect(text(prop(tree, '/chosen', 'bootargs'))).toBe('console=ttyS0 quiet');
    expect(info.bootargs).toBe('console=ttyS0 quiet');
    expect(cells(prop(tree, '/chosen', 'linux,initrd-start'))).toEqual([info.initrd!.start]);
    expect(cells(prop(tree, '/chosen', 'linux,initrd-end'))).toEqual([info.initrd!.end]);
    expect(prop(tree, '/chosen', 'rng-seed')).toBeUndefined(); // QEMU's is random: an unlogged input
    // Without an initrd or a command line, /chosen says neither (QEMU sets bootargs only for a non-empty -append).
    const bare = machine({ devices: { disk: undefined } });
    const binfo = bare.loadLinux({ kernel, append: '' });
    const btree = decodeDeviceTree(bare.readMemory(binfo.dtb.address, binfo.dtb.size));
    expect(child(btree.root, '/chosen')!.props.map(([k]) => k)).toEqual(['stdout-path']);
    expect(binfo.initrd).toBeUndefined();
    expect(binfo.identity.append).toBeUndefined();
  });

  it('fills in /chosen of a given device tree as QEMU does with -dtb, and places it by QEMU\'s (size + 10000) · 2 buffer', () => {
    const { kernel, initrd } = committedLinux();
    const given = buildDeviceTree({ memory: 64 * MIB, virtioSlots: [1], bootargs: 'from the file' });
    const m = machine({ memory: 64 * MIB });
    const info = m.loadLinux({ kernel, initrd, dtb: given, append: 'console=ttyS0' });
    expect(info.dtb.address).toBe(virtBootLayout(64 * MIB, 0x8000_0000, FIRMWARE_END, initrd.length, (given.length + 10_000) * 2).dtb);
    const tree = decodeDeviceTree(m.readMemory(info.dtb.address, info.dtb.size));
    expect(text(prop(tree, '/chosen', 'bootargs'))).toBe('console=ttyS0');
    expect(cells(prop(tree, '/chosen', 'linux,initrd-start'))).toEqual([info.initrd!.start]);
    // The rest is the given tree's: its virtio slot, not this machine's (which has none).
    expect(child(tree.root, '/soc/virtio_mmio@10002000')).toBeDefined();
    // No -append: the file's bootargs stay.
    const kept = machine({ memory: 64 * MIB });
    const kinfo = kept.loadLinux({ kernel, dtb: given });
    expect(kinfo.bootargs).toBe('from the file');
  });

  it('accepts a gzip-compressed kernel: the same Image reaches RAM, with the same identity', () => {
    const { kernel, initrd } = committedLinux();
    const a = machine();
    const b = machine();
    const ia = a.loadLinux({ kernel, initrd });
    const ib = b.loadLinux({ kernel: gzipSync(kernel), initrd });
    expect(ib.identity).toEqual(ia.identity);
    expect(b.stateHash()).toBe(a.stateHash());
  });
});

describe('Machine.loadLinux: inputs it cannot boot', () => {
  const { kernel, initrd } = committedLinux();
  const cases: { name: string; memory?: number; options: () => LinuxBootOptions; code: string; field: string; message: RegExp }[] = [
    { name: 'an empty kernel', options: () => ({ kernel: new Uint8Array(0) }), code: 'ERR_LOCKSTEP_BOOT_KERNEL_INVALID', field: 'kernel', message: /empty/ },
    { name: 'an ELF kernel (vmlinux)', options: () => ({ kernel: FIRMWARE }), code: 'ERR_LOCKSTEP_BOOT_KERNEL_INVALID', field: 'kernel', message: /ELF.*raw Image/ },
    { name: 'a gzip kernel that does not unpack', options: () => ({ kernel: Uint8Array.from([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5]) }), code: 'ERR_LOCKSTEP_BOOT_KERNEL_INVALID', field: 'kernel', message: /gzip/ },
    { name: 'a kernel that is not bytes', options: () => ({ kernel: 'Image' as unknown as Uint8Array }), code: 'ERR_LOCKSTEP_BOOT_KERNEL_INVALID', field: 'kernel', message: /Uint8Array/ },
    { name: 'an empty initrd', options: () => ({ kernel, initrd: new Uint8Array(0) }), code: 'ERR_LOCKSTEP_BOOT_INITRD_INVALID', field: 'initrd', message: /empty/ },
    { name: 'a bios that is not an ELF', options: () => ({ kernel, bios: Buffer.from(`#!/bin/sh\n${'echo firmware\n'.repeat(8)}`) }), code: 'ERR_LOCKSTEP_BOOT_BIOS_INVALID', field: 'bios', message: /not a firmware ELF.*bad magic/ },
    { name: 'a device tree with a bad magic', options: () => ({ kernel, dtb: Buffer.alloc(64, 0xee) }), code: 'ERR_LOCKSTEP_BOOT_DTB_INVALID', field: 'dtb', message: /bad magic/ },
    {
      name: 'a truncated device tree',
      options: () => ({ kernel, dtb: buildDeviceTree({ memory: 64 * MIB }).subarray(0, 300) }),
      code: 'ERR_LOCKSTEP_BOOT_DTB_INVALID',
      field: 'dtb',
      message: /totalsize/,
    },
    {
      name: 'a device tree without /chosen for the command line',
      options: () => ({ kernel, append: 'console=ttyS0', dtb: encodeDeviceTree({ root: { name: '', props: [], children: [] }, reservations: [] }) }),
      code: 'ERR_LOCKSTEP_BOOT_DTB_INVALID',
      field: 'dtb',
      message: /no \/chosen/,
    },
    { name: 'a command line with a NUL', options: () => ({ kernel, append: 'console=ttyS0\0root=/dev/vda' }), code: 'ERR_LOCKSTEP_BOOT_APPEND_INVALID', field: 'append', message: /NUL/ },
    { name: 'a command line longer than the kernel takes', options: () => ({ kernel, append: 'x'.repeat(1024) }), code: 'ERR_LOCKSTEP_BOOT_APPEND_INVALID', field: 'append', message: /1023 bytes/ },
    {
      name: 'a kernel too big for RAM',
      memory: 8 * MIB,
      options: () => ({ kernel: fakeImage(5 * MIB) }),
      code: 'ERR_LOCKSTEP_BOOT_NO_ROOM',
      field: 'kernel',
      message: /kernel.*\[0x80400000, 0x80900000\), outside RAM \[0x80000000, 0x80800000\).*more memory/,
    },
    {
      name: 'an initrd past the end of RAM',
      memory: 16 * MIB,
      options: () => ({ kernel, initrd: new Uint8Array(5 * MIB) }),
      code: 'ERR_LOCKSTEP_BOOT_NO_ROOM',
      field: 'initrd',
      message: /initrd would occupy \[0x80c00000, 0x81100000\)/,
    },
    {
      name: 'a kernel whose bss would cover the initrd',
      memory: 16 * MIB,
      options: () => ({ kernel: fakeImage(MIB, 9 * MIB), initrd: new Uint8Array(4096) }),
      code: 'ERR_LOCKSTEP_BOOT_OVERLAP',
      field: 'initrd',
      message: /initrd at \[0x80c00000, 0x80c01000\) would overlap the kernel \(bss included\) at \[0x80400000, 0x80d00000\)/,
    },
    {
      name: 'an initrd that would overlap the device tree',
      memory: 16 * MIB,
      options: () => ({ kernel, initrd: new Uint8Array(3 * MIB) }),
      code: 'ERR_LOCKSTEP_BOOT_OVERLAP',
      field: 'dtb',
      message: /device tree at \[0x80e00000, .*\) would overlap the initrd at \[0x80c00000, 0x80f00000\)/,
    },
  ];
  for (const c of cases) {
    it(`refuses ${c.name} with ${c.code}, and writes nothing`, () => {
      const m = machine(c.memory === undefined ? {} : { memory: c.memory });
      const before = m.stateHash();
      let error: unknown;
      try {
        m.loadLinux(c.options());
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(BootError);
      const e = error as BootError;
      expect(e.code).toBe(c.code);
      expect(e.field).toBe(c.field);
      expect(e.message).toMatch(c.message);
      expect(m.stateHash()).toBe(before);
      expect(m.pc).toBe(0x8000_0000);
    });
  }
});

describe('device tree decoder', () => {
  it('decodes what the generator writes and encodes it back to the same bytes', () => {
    const blob = buildDeviceTree({ memory: 64 * MIB, bootargs: 'a b c', initrd: { start: 0x8240_0000, end: 0x8241_0000 }, virtioSlots: [0, 1, 2], reservations: [{ address: 0x8000_0000, size: 0x1_0000 }] });
    const tree = decodeDeviceTree(blob);
    expect(tree.reservations).toEqual([{ address: 0x8000_0000, size: 0x1_0000 }]);
    expect(Buffer.from(encodeDeviceTree(tree)).equals(Buffer.from(blob))).toBe(true);
  });

  it('answers every truncation and 2000 seeded corruptions of a valid tree with a tree or a BootError, nothing else', () => {
    const blob = buildDeviceTree({ memory: 64 * MIB, bootargs: 'console=ttyS0', virtioSlots: [0, 2] });
    const tryDecode = (b: Uint8Array): void => {
      try {
        decodeDeviceTree(b);
      } catch (err) {
        if (!(err instanceof BootError) || err.code !== 'ERR_LOCKSTEP_BOOT_DTB_INVALID') throw err;
      }
    };
    for (let n = 0; n < blob.length; n += 3) tryDecode(blob.subarray(0, n));
    const rnd = prng(12);
    for (let i = 0; i < 2000; i++) {
      const b = Uint8Array.from(blob);
      for (let k = 1 + Math.floor(rnd() * 4); k > 0; k--) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      tryDecode(b);
    }
  });
});

describe('Linux boot identity', () => {
  const identity = { biosSha256: 'a'.repeat(64), kernelSha256: 'b'.repeat(64), initrdSha256: 'c'.repeat(64), dtbSha256: 'd'.repeat(64), append: 'console=ttyS0' };

  it('accepts the same images and names what differs otherwise', () => {
    expect(() => checkLinuxIdentity(identity, { ...identity }, 'run.log')).not.toThrow();
    const other = (change: Partial<typeof identity>): BootError => {
      try {
        checkLinuxIdentity(identity, { ...identity, ...change }, 'run.log');
      } catch (err) {
        return err as BootError;
      }
      throw new Error('no mismatch reported');
    };
    const kernel = other({ kernelSha256: 'e'.repeat(64), dtbSha256: 'f'.repeat(64) });
    expect(kernel.code).toBe('ERR_LOCKSTEP_BOOT_MISMATCH');
    expect(kernel.field).toBe('kernel');
    expect(kernel.message).toMatch(/run\.log was made with other boot images: the kernel: sha256 bbbbbbbbbbbbbbbb… there, eeeeeeeeeeeeeeee… here$/);
    expect(other({ append: 'quiet' }).message).toMatch(/the command line was "console=ttyS0", here it is "quiet"/);
    const dtb = other({ dtbSha256: 'f'.repeat(64) });
    expect([dtb.field, dtb.message]).toEqual(['dtb', expect.stringMatching(/the device tree .*memory size and devices/)]);
  });

  it('travels in a log header, checked field by field', () => {
    const meta: LogMetadata = { lockstep: '0.1.0', memory: 64 * MIB, clock: 'real', elfSha256: identity.biosSha256, hashInterval: 0, linux: identity };
    expect(decodeLogHeader(encodeLogHeader(meta)).meta).toEqual(meta);
    const bad = Buffer.from(encodeLogHeader(meta)).toString('latin1').replace('"kernelSha256":"bbbb', '"kernelSha256":"BBBB');
    expect(() => decodeLogHeader(Buffer.from(bad, 'latin1'))).toThrow(/linux\.kernelSha256 must be 64 lowercase hex digits/);
  });
});
