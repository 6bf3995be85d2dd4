// The generated device tree: well-formed for dtc, faithful to its configuration, and equal to what
// QEMU 7.2 emits for `-M virt` on every node and property the kernel reads (the differences are
// listed and explained); plus QEMU's image placement as virtBootLayout computes it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { OptionError } from '../../src/index.js';
import { buildDeviceTree, DEFAULT_PLIC_SOURCES, virtBootLayout } from '../../src/machine/device-tree.js';
import { qemuAvailable, QEMU } from '../helpers/qemu.js';

const FIRMWARE = new URL('../../guest/firmware/bin/firmware.elf', import.meta.url).pathname;
const SBITEST = new URL('../../guest/firmware/bin/sbitest.elf', import.meta.url).pathname;
/** QEMU's CPU trimmed to lockstep's hart (rv32imac_zicsr_zifencei), as the Linux tests run it. */
const QEMU_CPU = 'rv32,f=off,d=off,h=off,zba=off,zbb=off,zbc=off,zbs=off,sstc=off,Zihintpause=off';

// ---- an independent FDT decoder (the generator's encoder is not reused) ------------------------------

interface DtNode {
  props: Map<string, Buffer>;
  children: Map<string, DtNode>;
}

interface Dtb {
  root: DtNode;
  reservations: { address: bigint; size: bigint }[];
  version: number;
  totalSize: number;
}

function decode(blob: Uint8Array): Dtb {
  const b = Buffer.from(blob);
  expect(b.readUInt32BE(0), 'FDT magic').toBe(0xd00dfeed);
  const total = b.readUInt32BE(4);
  const offStruct = b.readUInt32BE(8);
  const offStrings = b.readUInt32BE(12);
  const offRsv = b.readUInt32BE(16);
  const reservations: { address: bigint; size: bigint }[] = [];
  for (let o = offRsv; ; o += 16) {
    const address = b.readBigUInt64BE(o);
    const size = b.readBigUInt64BE(o + 8);
    if (address === 0n && size === 0n) break;
    reservations.push({ address, size });
  }
  const stack: DtNode[] = [];
  let root: DtNode | undefined;
  let p = offStruct;
  for (;;) {
    const token = b.readUInt32BE(p);
    p += 4;
    if (token === 1) {
      const end = b.indexOf(0, p);
      const name = b.toString('utf8', p, end);
      p = (end + 4) & ~3;
      const n: DtNode = { props: new Map(), children: new Map() };
      if (stack.length === 0) root = n;
      else stack[stack.length - 1]!.children.set(name, n);
      stack.push(n);
    } else if (token === 2) {
      stack.pop();
    } else if (token === 3) {
      const len = b.readUInt32BE(p);
      const nameOff = b.readUInt32BE(p + 4);
      const name = b.toString('utf8', offStrings + nameOff, b.indexOf(0, offStrings + nameOff));
      stack[stack.length - 1]!.props.set(name, b.subarray(p + 8, p + 8 + len));
      p = (p + 8 + len + 3) & ~3;
    } else if (token === 4) {
      continue;
    } else if (token === 9) {
      break;
    } else {
      throw new Error(`unknown FDT token ${token} at ${p - 4}`);
    }
  }
  return { root: root!, reservations, version: b.readUInt32BE(20), totalSize: total };
}

function at(dtb: Dtb, path: string): DtNode | undefined {
  let n: DtNode | undefined = dtb.root;
  for (const part of path.split('/').filter(Boolean)) n = n?.children.get(part);
  return n;
}

function prop(dtb: Dtb, path: string, name: string): Buffer {
  const v = at(dtb, path)?.props.get(name);
  if (v === undefined) throw new Error(`${path} has no property ${name}`);
  return v;
}

const cells = (b: Buffer): number[] => Array.from({ length: b.length / 4 }, (_, i) => b.readUInt32BE(i * 4));
const strings = (b: Buffer): string[] => b.toString('utf8').split('\0').slice(0, -1);

/** Every node path in the tree, depth first. */
function paths(n: DtNode, prefix = ''): string[] {
  return [...n.children].flatMap(([name, c]) => [`${prefix}/${name}`, ...paths(c, `${prefix}/${name}`)]);
}

// ---- tests ---------------------------------------------------------------------------------------------

const MIB = 1 << 20;
const base = {
  memory: 64 * MIB,
  bootargs: 'console=ttyS0 lockstep.run=hash',
  initrd: { start: 0x8240_0000, end: 0x8240_0000 + 123_456 },
  virtioSlots: [0, 2],
};

describe('device tree generator', () => {
  it('writes an FDT v17 blob whose nodes and properties follow the configuration', () => {
    const dtb = decode(buildDeviceTree(base));
    expect(dtb.version).toBe(17);
    expect(cells(prop(dtb, '/memory@80000000', 'reg'))).toEqual([0, 0x8000_0000, 0, 64 * MIB]);
    expect(strings(prop(dtb, '/chosen', 'bootargs'))).toEqual([base.bootargs]);
    expect(strings(prop(dtb, '/chosen', 'stdout-path'))).toEqual(['/soc/serial@10000000']);
    expect(cells(prop(dtb, '/chosen', 'linux,initrd-start'))).toEqual([base.initrd.start]);
    expect(cells(prop(dtb, '/chosen', 'linux,initrd-end'))).toEqual([base.initrd.end]);
    expect(strings(prop(dtb, '/cpus/cpu@0', 'riscv,isa'))).toEqual(['rv32imac_zicsr_zifencei']);
    expect(strings(prop(dtb, '/cpus/cpu@0', 'mmu-type'))).toEqual(['riscv,sv32']);
    expect(cells(prop(dtb, '/cpus', 'timebase-frequency'))).toEqual([10_000_000]);
    expect(cells(prop(dtb, '/soc/plic@c000000', 'riscv,ndev'))).toEqual([DEFAULT_PLIC_SOURCES]);
    expect(cells(prop(dtb, '/soc/serial@10000000', 'clock-frequency'))).toEqual([3_686_400]);
    expect(cells(prop(dtb, '/soc/serial@10000000', 'interrupts'))).toEqual([10]);
    const virtio = paths(dtb.root).filter((p) => p.includes('virtio_mmio'));
    expect(virtio.sort()).toEqual(['/soc/virtio_mmio@10001000', '/soc/virtio_mmio@10003000']);
    expect(cells(prop(dtb, '/soc/virtio_mmio@10003000', 'reg'))).toEqual([0, 0x1000_3000, 0, 0x1000]);
    expect(cells(prop(dtb, '/soc/virtio_mmio@10003000', 'interrupts'))).toEqual([3]);
    expect(dtb.reservations).toEqual([]);
  });

  it('leaves out what is not configured: no initrd, no bootargs, no virtio slots', () => {
    const dtb = decode(buildDeviceTree({ memory: 16 * MIB }));
    expect([...at(dtb, '/chosen')!.props.keys()]).toEqual(['stdout-path']);
    expect(paths(dtb.root).filter((p) => p.includes('virtio'))).toEqual([]);
  });

  it('carries memory reservations, a custom ISA string, PLIC size and rng-seed when asked', () => {
    const dtb = decode(
      buildDeviceTree({
        memory: 128 * MIB,
        reservations: [{ address: 0x8000_0000, size: 0x1_0000 }],
        isa: 'rv32imac',
        plicSources: 53,
        rngSeed: new Uint8Array([1, 2, 3, 4]),
      }),
    );
    expect(dtb.reservations).toEqual([{ address: 0x8000_0000n, size: 0x1_0000n }]);
    expect(strings(prop(dtb, '/cpus/cpu@0', 'riscv,isa'))).toEqual(['rv32imac']);
    expect(cells(prop(dtb, '/soc/plic@c000000', 'riscv,ndev'))).toEqual([53]);
    expect([...prop(dtb, '/chosen', 'rng-seed')]).toEqual([1, 2, 3, 4]);
  });

  it('is a pure function of its configuration (byte-identical on every call)', () => {
    expect(Buffer.from(buildDeviceTree(base)).equals(Buffer.from(buildDeviceTree({ ...base })))).toBe(true);
  });

  it('rejects configurations it cannot describe with OptionError naming the field', () => {
    const bad: [Parameters<typeof buildDeviceTree>[0], string][] = [
      [{ memory: 64 * MIB + 1 }, 'deviceTree.memory'],
      [{ memory: 4096 }, 'deviceTree.memory'],
      [{ memory: 4 * 1024 * MIB }, 'deviceTree.memory'],
      [{ memory: 64 * MIB, initrd: { start: 0x8400_0000, end: 0x8400_1000 } }, 'deviceTree.initrd'],
      [{ memory: 64 * MIB, initrd: { start: 0x8100_0000, end: 0x8000_0000 } }, 'deviceTree.initrd'],
      [{ memory: 64 * MIB, virtioSlots: [8] }, 'deviceTree.virtioSlots'],
      [{ memory: 64 * MIB, virtioSlots: [1, 1] }, 'deviceTree.virtioSlots'],
      [{ memory: 64 * MIB, bootargs: 'a\0b' }, 'deviceTree.bootargs'],
      [{ memory: 64 * MIB, isa: 'rv64imac' }, 'deviceTree.isa'],
      [{ memory: 64 * MIB, plicSources: 0 }, 'deviceTree.plicSources'],
      [{ memory: 64 * MIB, reservations: [{ address: 0x8000_0000, size: 0 }] }, 'deviceTree.reservations'],
    ];
    for (const [config, field] of bad) {
      let caught: unknown;
      try {
        buildDeviceTree(config);
      } catch (e) {
        caught = e;
      }
      expect(caught, JSON.stringify(config)).toBeInstanceOf(OptionError);
      expect((caught as OptionError).code).toBe('ERR_LOCKSTEP_OPTION_INVALID');
      expect((caught as OptionError).field).toBe(field);
    }
  });
});

const dtcMissing = spawnSync('dtc', ['--version'], { stdio: 'ignore', timeout: 10_000 }).status !== 0;
if (dtcMissing) console.warn('test/machine/device-tree.test.ts: dtc checks skipped (apt-get install device-tree-compiler)');

describe.skipIf(dtcMissing)('device tree under dtc', () => {
  it('decompiles without errors or warnings', () => {
    const r = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', '-o', '-', '-'], { input: buildDeviceTree(base), encoding: 'utf8', timeout: 10_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('compatible = "sifive,plic-1.0.0\\0riscv,plic0";');
  });
});

const qemuMissing = !qemuAvailable();
if (qemuMissing) console.warn(`test/machine/device-tree.test.ts: QEMU comparison skipped (${QEMU} not found)`);

describe.skipIf(qemuMissing)('device tree against QEMU 7.2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-dt-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** QEMU's own tree for `-M virt` with this RAM size, command line and an initrd of `initrdSize` bytes. */
  function qemuDtb(memoryMib: number, append: string, initrdSize: number): Dtb {
    const kernel = join(dir, 'kernel.bin');
    const initrd = join(dir, 'initrd.bin');
    const out = join(dir, `qemu-${memoryMib}.dtb`);
    writeFileSync(kernel, Buffer.alloc(4096));
    writeFileSync(initrd, Buffer.alloc(initrdSize, 0x5a));
    const r = spawnSync(
      QEMU,
      ['-M', `virt,dumpdtb=${out}`, '-cpu', QEMU_CPU, '-m', `${memoryMib}M`, '-nographic', '-bios', FIRMWARE, '-kernel', kernel, '-initrd', initrd, '-append', append],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    return decode(readFileSync(out));
  }

  it('has the same nodes and properties as QEMU, apart from the listed differences', () => {
    const qemu = qemuDtb(64, base.bootargs, 123_456);
    const ours = decode(buildDeviceTree({ ...base, virtioSlots: [0, 1, 2, 3, 4, 5, 6, 7] }));
    // QEMU devices lockstep does not have; its random rng-seed; the intc's #address-cells (ours only).
    const absent = ['/pmu', '/fw-cfg@10100000', '/flash@20000000', '/platform-bus@4000000', '/soc/rtc@101000', '/soc/pci@30000000'];
    expect(paths(qemu.root).filter((p) => !absent.includes(p)).sort()).toEqual(paths(ours.root).sort());
    for (const path of ['', ...paths(ours.root)]) {
      const q = at(qemu, path)!;
      const o = at(ours, path)!;
      const names = new Set([...q.props.keys(), ...o.props.keys()]);
      for (const name of names) {
        if (path === '/chosen' && name === 'rng-seed') continue;
        if (path === '/cpus/cpu@0/interrupt-controller' && name === '#address-cells') continue;
        if (path === '/soc/plic@c000000' && name === 'riscv,ndev') {
          expect(cells(q.props.get(name)!)).toEqual([96]);
          expect(cells(o.props.get(name)!)).toEqual([95]);
          continue;
        }
        expect(o.props.get(name), `${path || '/'} ${name}`).toEqual(q.props.get(name));
      }
    }
  });

  it('places the initrd and the DTB where virtBootLayout says, for small and large RAM', () => {
    const elf = readFileSync(FIRMWARE);
    // End of the firmware's highest PT_LOAD segment (what QEMU's ELF loader reports).
    const phoff = elf.readUInt32LE(28);
    let end = 0;
    for (let i = 0; i < elf.readUInt16LE(44); i++) {
      const ph = phoff + i * elf.readUInt16LE(42);
      if (elf.readUInt32LE(ph) === 1) end = Math.max(end, elf.readUInt32LE(ph + 12) + elf.readUInt32LE(ph + 20));
    }
    for (const memoryMib of [64, 256, 1024]) {
      const qemu = qemuDtb(memoryMib, 'x', 5000);
      const layout = virtBootLayout(memoryMib * MIB, 0x8000_0000, end, 5000);
      expect(layout.kernel).toBe(0x8040_0000);
      expect(cells(prop(qemu, '/chosen', 'linux,initrd-start'))).toEqual([layout.initrd!.start]);
      expect(cells(prop(qemu, '/chosen', 'linux,initrd-end'))).toEqual([layout.initrd!.end]);
    }
    // QEMU's DTB address, as the firmware's banner reports the a1 it was given.
    for (const kib of [64 * 1024, 64 * 1024 + 512, 65 * 1024, 1024 * 1024]) {
      const r = spawnSync(QEMU, ['-M', 'virt', '-cpu', QEMU_CPU, '-m', `${kib}K`, '-nographic', '-monitor', 'none', '-serial', 'stdio', '-bios', FIRMWARE, '-kernel', SBITEST], {
        encoding: 'latin1',
        timeout: 60_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const banner = /device tree 0x([0-9a-f]{8})/.exec(r.stdout);
      expect(banner, r.stdout.slice(0, 300)).not.toBeNull();
      expect(parseInt(banner![1]!, 16), `${kib} KiB`).toBe(virtBootLayout(kib * 1024, 0x8000_0000, end, undefined).dtb);
    }
    expect(virtBootLayout(64 * MIB, 0x8000_0000, end, undefined).dtb).toBe(0x83e0_0000);
    // RAM that does not end on 2 MiB: QEMU's 1 MiB buffer size matters, not the packed tree's.
    expect(virtBootLayout(64 * MIB + 512 * 1024, 0x8000_0000, end, undefined).dtb).toBe(0x83e0_0000);
    expect(virtBootLayout(2047 * MIB, 0x8000_0000, end, undefined).dtb).toBe(0xbfe0_0000);
  }, 300_000);
});
