// Flattened device tree (DTB, FDT version 17) of lockstep's virt board, generated from the machine's
// configuration, plus where QEMU 7.2's loader puts firmware, kernel, initrd and DTB. Pure: a config in,
// bytes out; no I/O, no clock, no randomness (QEMU's random /chosen/rng-seed is left out on purpose).
//
// The nodes and properties are those QEMU 7.2 emits for `-M virt` (`-machine dumpdtb=`), minus the
// devices lockstep does not have (PCIe, fw-cfg, flash, RTC, PMU, platform bus) and minus virtio-mmio
// slots that hold no device. Phandles are numbered as QEMU numbers them (cpu 1, its interrupt
// controller 2, PLIC 3, test finisher 4).
import { BootError, OptionError } from '../errors.js';

/** Guest RAM starts here (QEMU virt). */
export const DT_RAM_BASE = 0x8000_0000;
/** `/cpus/timebase-frequency`: mtime ticks at 10 MHz. */
export const TIMEBASE_FREQUENCY = 10_000_000;
/** The NS16550A's input clock, as QEMU declares it. */
export const UART_CLOCK_FREQUENCY = 3_686_400;
/** What the hart implements, in the form Linux 6.1 parses (QEMU with F, D, H, Zb*, Sstc off says the same). */
export const DEFAULT_RISCV_ISA = 'rv32imac_zicsr_zifencei';
/**
 * Interrupt sources lockstep's PLIC implements (1..95). QEMU 7.2 declares 96; Linux enables only the
 * sources declared, so declaring more than exist would make it touch registers that are not there.
 */
export const DEFAULT_PLIC_SOURCES = 95;
/** virtio-mmio transports: slot n at 0x1000_1000 + n·0x1000 with PLIC source 1 + n. */
export const VIRTIO_SLOTS = 8;

const MAX_MEMORY = 0x8000_0000 - 0x1000;

/** The machine a device tree describes. */
export interface DeviceTreeConfig {
  /** RAM in bytes at 0x8000_0000: a whole number of 4 KiB pages, at least 1 MiB, at most 2 GiB - 4 KiB. */
  memory: number;
  /** Kernel command line (`/chosen/bootargs`); omitted when undefined. */
  bootargs?: string;
  /** Where the initrd was loaded: physical [start, end) (`/chosen/linux,initrd-start` and `-end`). */
  initrd?: { start: number; end: number };
  /** virtio-mmio slots (0-7) that hold a device; only these get a node. */
  virtioSlots?: readonly number[];
  /** `riscv,isa` of the hart (default {@link DEFAULT_RISCV_ISA}). */
  isa?: string;
  /** `riscv,ndev` of the PLIC (default {@link DEFAULT_PLIC_SOURCES}). */
  plicSources?: number;
  /** Memory reservation block entries (`/memreserve/`); the SBI firmware adds its own if missing. */
  reservations?: readonly { address: number; size: number }[];
  /** Bytes for `/chosen/rng-seed` (seeds the kernel's entropy pool); omitted when undefined. */
  rngSeed?: Uint8Array;
}

// ---- encoding --------------------------------------------------------------------------------------

const FDT_MAGIC = 0xd00dfeed;
const FDT_BEGIN_NODE = 1;
const FDT_END_NODE = 2;
const FDT_PROP = 3;
const FDT_END = 9;
const FDT_VERSION = 17;
const FDT_LAST_COMP_VERSION = 16;
const HEADER_SIZE = 40;

type PropValue = Uint8Array;

/** One node of a device tree: its name (`''` for the root), properties in order, children in order. */
export interface DeviceTreeNode {
  name: string;
  props: [string, PropValue][];
  children: DeviceTreeNode[];
}
type Node = DeviceTreeNode;

/** A whole device tree: the structure and the memory reservation block. */
export interface DeviceTree {
  root: DeviceTreeNode;
  reservations: { address: number; size: number }[];
}

function node(name: string, props: [string, PropValue][], children: Node[] = []): Node {
  return { name, props, children };
}

function u32(...cells: number[]): PropValue {
  const b = new Uint8Array(cells.length * 4);
  const dv = new DataView(b.buffer);
  cells.forEach((c, i) => dv.setUint32(i * 4, c >>> 0, false));
  return b;
}

/** A 64-bit number as two cells (the root has #address-cells = #size-cells = 2). */
function cells64(v: number): number[] {
  return [Math.floor(v / 0x1_0000_0000), v >>> 0];
}

function str(...values: string[]): PropValue {
  return new TextEncoder().encode(values.map((v) => `${v}\0`).join(''));
}

const EMPTY: PropValue = new Uint8Array(0);

/** Serialises a tree as FDT v17: header, memory reservations, structure block, strings block. */
function encode(root: Node, reservations: readonly { address: number; size: number }[]): Uint8Array {
  const strings: number[] = [];
  const stringOffsets = new Map<string, number>();
  const struct: number[] = [];
  const enc = new TextEncoder();

  const word = (v: number): void => {
    struct.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  };
  const bytes = (b: Uint8Array): void => {
    for (const x of b) struct.push(x);
    while (struct.length % 4) struct.push(0);
  };
  const nameOffset = (name: string): number => {
    let off = stringOffsets.get(name);
    if (off === undefined) {
      off = strings.length;
      stringOffsets.set(name, off);
      for (const x of enc.encode(name)) strings.push(x);
      strings.push(0);
    }
    return off;
  };
  const walk = (n: Node): void => {
    word(FDT_BEGIN_NODE);
    bytes(enc.encode(`${n.name}\0`));
    for (const [name, value] of n.props) {
      word(FDT_PROP);
      word(value.length);
      word(nameOffset(name));
      bytes(value);
    }
    for (const c of n.children) walk(c);
    word(FDT_END_NODE);
  };
  walk(root);
  word(FDT_END);

  const rsvOffset = HEADER_SIZE; // 8-byte aligned, as the reservation block must be
  const rsvSize = (reservations.length + 1) * 16;
  const structOffset = rsvOffset + rsvSize;
  const stringsOffset = structOffset + struct.length;
  const total = stringsOffset + strings.length;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, FDT_MAGIC);
  dv.setUint32(4, total);
  dv.setUint32(8, structOffset);
  dv.setUint32(12, stringsOffset);
  dv.setUint32(16, rsvOffset);
  dv.setUint32(20, FDT_VERSION);
  dv.setUint32(24, FDT_LAST_COMP_VERSION);
  dv.setUint32(28, 0); // boot_cpuid_phys
  dv.setUint32(32, strings.length);
  dv.setUint32(36, struct.length);
  reservations.forEach((r, i) => {
    const [ah, al] = cells64(r.address);
    const [sh, sl] = cells64(r.size);
    dv.setUint32(rsvOffset + i * 16, ah!);
    dv.setUint32(rsvOffset + i * 16 + 4, al!);
    dv.setUint32(rsvOffset + i * 16 + 8, sh!);
    dv.setUint32(rsvOffset + i * 16 + 12, sl!);
  });
  out.set(struct, structOffset);
  out.set(strings, stringsOffset);
  return out;
}

/** Serialises a device tree (FDT v17); the inverse of {@link decodeDeviceTree} up to layout. */
export function encodeDeviceTree(tree: DeviceTree): Uint8Array {
  return encode(tree.root, tree.reservations);
}

// ---- decoding (a device tree someone else built) ----------------------------------------------------

const FDT_NOP = 4;
const MAX_DEPTH = 64;

/**
 * Decodes a flattened device tree (versions 16 and 17, as libfdt accepts), checking every offset and
 * length against the blob. Throws {@link BootError} `ERR_LOCKSTEP_BOOT_DTB_INVALID` naming the first
 * problem and where it is.
 */
export function decodeDeviceTree(blob: Uint8Array): DeviceTree {
  const bad = (message: string): never => {
    throw new BootError('ERR_LOCKSTEP_BOOT_DTB_INVALID', 'dtb', `${message}; not a valid flattened device tree`);
  };
  if (blob.length < HEADER_SIZE) bad(`${blob.length} bytes is shorter than the 40-byte header`);
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (dv.getUint32(0) !== FDT_MAGIC) bad(`bad magic 0x${dv.getUint32(0).toString(16)} at offset 0 (expected 0xd00dfeed)`);
  const total = dv.getUint32(4);
  const offStruct = dv.getUint32(8);
  const offStrings = dv.getUint32(12);
  const offRsv = dv.getUint32(16);
  const version = dv.getUint32(20);
  const lastComp = dv.getUint32(24);
  const sizeStrings = dv.getUint32(32);
  if (total < HEADER_SIZE || total > blob.length) bad(`totalsize ${total} (offset 4) is outside [40, ${blob.length}]`);
  if (version < 16 || lastComp > FDT_VERSION) bad(`version ${version} (last compatible ${lastComp}) is not one of 16..17`);
  const sizeStruct = version >= 17 ? dv.getUint32(36) : total - offStruct;
  if (offStruct < HEADER_SIZE || offStruct % 4 !== 0 || offStruct + sizeStruct > total) bad(`structure block [${offStruct}, +${sizeStruct}) is outside the blob`);
  if (offStrings < HEADER_SIZE || offStrings + sizeStrings > total) bad(`strings block [${offStrings}, +${sizeStrings}) is outside the blob`);
  if (offRsv < HEADER_SIZE || offRsv % 8 !== 0 || offRsv >= total) bad(`memory reservation block at ${offRsv} is misplaced`);

  const reservations: { address: number; size: number }[] = [];
  for (let o = offRsv; ; o += 16) {
    if (o + 16 > total) bad(`memory reservation block at ${offRsv} has no terminating entry`);
    const address = dv.getUint32(o) * 0x1_0000_0000 + dv.getUint32(o + 4);
    const size = dv.getUint32(o + 8) * 0x1_0000_0000 + dv.getUint32(o + 12);
    if (address === 0 && size === 0) break;
    if (!Number.isSafeInteger(address + size)) bad(`memory reservation at offset ${o} ends beyond 2^53`);
    reservations.push({ address, size });
  }

  const dec = new TextDecoder('utf-8', { fatal: true });
  const end = offStruct + sizeStruct;
  const cString = (from: number, limit: number, what: string): string => {
    let z = from;
    while (z < limit && blob[z] !== 0) z++;
    if (z >= limit) bad(`${what} at offset ${from} is not NUL-terminated`);
    try {
      return dec.decode(blob.subarray(from, z));
    } catch {
      return bad(`${what} at offset ${from} is not UTF-8`);
    }
  };
  const stack: DeviceTreeNode[] = [];
  let root: DeviceTreeNode | undefined;
  let p = offStruct;
  for (;;) {
    if (p + 4 > end) bad(`structure block ends at offset ${end} without FDT_END`);
    const token = dv.getUint32(p);
    const at = p;
    p += 4;
    if (token === FDT_BEGIN_NODE) {
      const name = cString(p, end, 'node name');
      p = (p + new TextEncoder().encode(name).length + 1 + 3) & ~3;
      if (root !== undefined && stack.length === 0) bad(`a second root node at offset ${at}`);
      if (stack.length >= MAX_DEPTH) bad(`nodes nest deeper than ${MAX_DEPTH} at offset ${at}`);
      const n: DeviceTreeNode = { name, props: [], children: [] };
      if (stack.length === 0) {
        if (name !== '') bad(`the root node is named ${JSON.stringify(name)} (offset ${at})`);
        root = n;
      } else stack[stack.length - 1]!.children.push(n);
      stack.push(n);
    } else if (token === FDT_END_NODE) {
      if (stack.length === 0) bad(`FDT_END_NODE without a node at offset ${at}`);
      stack.pop();
    } else if (token === FDT_PROP) {
      if (stack.length === 0) bad(`a property outside any node at offset ${at}`);
      if (p + 8 > end) bad(`property header at offset ${at} runs past the structure block`);
      const len = dv.getUint32(p);
      const nameOff = dv.getUint32(p + 4);
      if (p + 8 + len > end) bad(`property at offset ${at} (${len} bytes) runs past the structure block`);
      if (nameOff >= sizeStrings) bad(`property name offset ${nameOff} (at ${at}) is outside the strings block`);
      const name = cString(offStrings + nameOff, offStrings + sizeStrings, 'property name');
      stack[stack.length - 1]!.props.push([name, blob.slice(p + 8, p + 8 + len)]);
      p = (p + 8 + len + 3) & ~3;
    } else if (token === FDT_NOP) {
      continue;
    } else if (token === FDT_END) {
      if (stack.length !== 0 || root === undefined) bad(`FDT_END at offset ${at} inside an open node`);
      break;
    } else {
      bad(`unknown token 0x${token.toString(16)} at offset ${at}`);
    }
  }
  return { root: root!, reservations };
}

// ---- validation ------------------------------------------------------------------------------------

function checkConfig(c: DeviceTreeConfig): void {
  const field = (name: string, message: string): never => {
    throw new OptionError(`deviceTree.${name}`, message);
  };
  if (!Number.isSafeInteger(c.memory) || c.memory < 1 << 20 || c.memory > MAX_MEMORY || c.memory % 4096 !== 0) {
    field('memory', `${String(c.memory)} is not a whole number of 4 KiB pages between 1 MiB and 2 GiB - 4 KiB`);
  }
  const ramEnd = DT_RAM_BASE + c.memory;
  if (c.bootargs !== undefined && (typeof c.bootargs !== 'string' || c.bootargs.includes('\0'))) {
    field('bootargs', 'must be a string without NUL characters');
  }
  if (c.initrd !== undefined) {
    const { start, end } = c.initrd;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < DT_RAM_BASE || end < start || end > ramEnd) {
      field('initrd', `[0x${start.toString(16)}, 0x${end.toString(16)}) is not inside RAM [0x80000000, 0x${ramEnd.toString(16)})`);
    }
  }
  const slots = c.virtioSlots ?? [];
  for (const s of slots) {
    if (!Number.isInteger(s) || s < 0 || s >= VIRTIO_SLOTS) field('virtioSlots', `slot ${String(s)} is not one of 0-${VIRTIO_SLOTS - 1}`);
  }
  if (new Set(slots).size !== slots.length) field('virtioSlots', 'a slot is listed twice');
  if (c.isa !== undefined && !/^rv32[a-z0-9_]*$/.test(c.isa)) field('isa', `${JSON.stringify(c.isa)} is not an rv32 ISA string`);
  if (c.plicSources !== undefined && (!Number.isInteger(c.plicSources) || c.plicSources < 1 || c.plicSources > 1023)) {
    field('plicSources', `${String(c.plicSources)} is not between 1 and 1023`);
  }
  for (const r of c.reservations ?? []) {
    if (!Number.isSafeInteger(r.address) || !Number.isSafeInteger(r.size) || r.address < 0 || r.size <= 0) {
      field('reservations', `entry {address: ${String(r.address)}, size: ${String(r.size)}} is not a positive range`);
    }
  }
  if (c.rngSeed !== undefined && !(c.rngSeed instanceof Uint8Array)) field('rngSeed', 'must be a Uint8Array');
}

// ---- the board -------------------------------------------------------------------------------------

const PHANDLE_CPU = 1;
const PHANDLE_INTC = 2;
const PHANDLE_PLIC = 3;
const PHANDLE_TEST = 4;
const IRQ_M_SOFT = 3;
const IRQ_M_TIMER = 7;
const IRQ_S_EXT = 9;
const IRQ_M_EXT = 11;
const UART_BASE = 0x1000_0000;
const UART_IRQ = 10;
const TEST_BASE = 0x10_0000;
const CLINT_BASE = 0x200_0000;
const PLIC_BASE = 0xc00_0000;
const VIRTIO_BASE = 0x1000_1000;

const hex = (v: number): string => v.toString(16);
const reg = (base: number, size: number): PropValue => u32(...cells64(base), ...cells64(size));

/**
 * Builds the DTB for a machine configuration. Throws {@link OptionError} (`deviceTree.<field>`) for
 * a configuration it cannot describe.
 */
export function buildDeviceTree(config: DeviceTreeConfig): Uint8Array {
  checkConfig(config);
  const chosen: [string, PropValue][] = [];
  if (config.initrd !== undefined) {
    chosen.push(['linux,initrd-end', u32(config.initrd.end)], ['linux,initrd-start', u32(config.initrd.start)]);
  }
  if (config.rngSeed !== undefined) chosen.push(['rng-seed', config.rngSeed]);
  if (config.bootargs !== undefined) chosen.push(['bootargs', str(config.bootargs)]);
  chosen.push(['stdout-path', str(`/soc/serial@${hex(UART_BASE)}`)]);

  // Descending, as QEMU adds them (it fills the slots from the top, so its device tree lists them so).
  const slots = [...(config.virtioSlots ?? [])].sort((a, b) => b - a);
  const virtio = slots.map((n) =>
    node(`virtio_mmio@${hex(VIRTIO_BASE + n * 0x1000)}`, [
      ['interrupts', u32(1 + n)],
      ['interrupt-parent', u32(PHANDLE_PLIC)],
      ['reg', reg(VIRTIO_BASE + n * 0x1000, 0x1000)],
      ['compatible', str('virtio,mmio')],
    ]),
  );

  const root = node(
    '',
    [
      ['#address-cells', u32(2)],
      ['#size-cells', u32(2)],
      ['compatible', str('riscv-virtio')],
      ['model', str('riscv-virtio,qemu')],
    ],
    [
      node('chosen', chosen),
      node('poweroff', [
        ['value', u32(0x5555)],
        ['offset', u32(0)],
        ['regmap', u32(PHANDLE_TEST)],
        ['compatible', str('syscon-poweroff')],
      ]),
      node('reboot', [
        ['value', u32(0x7777)],
        ['offset', u32(0)],
        ['regmap', u32(PHANDLE_TEST)],
        ['compatible', str('syscon-reboot')],
      ]),
      node(`memory@${hex(DT_RAM_BASE)}`, [
        ['device_type', str('memory')],
        ['reg', reg(DT_RAM_BASE, config.memory)],
      ]),
      node(
        'cpus',
        [
          ['#address-cells', u32(1)],
          ['#size-cells', u32(0)],
          ['timebase-frequency', u32(TIMEBASE_FREQUENCY)],
        ],
        [
          node(
            'cpu@0',
            [
              ['phandle', u32(PHANDLE_CPU)],
              ['device_type', str('cpu')],
              ['reg', u32(0)],
              ['status', str('okay')],
              ['compatible', str('riscv')],
              ['riscv,isa', str(config.isa ?? DEFAULT_RISCV_ISA)],
              ['mmu-type', str('riscv,sv32')],
            ],
            [
              // #address-cells = 0 is not in QEMU 7.2's tree; dtc warns without it (newer QEMU adds it).
              node('interrupt-controller', [
                ['#address-cells', u32(0)],
                ['#interrupt-cells', u32(1)],
                ['interrupt-controller', EMPTY],
                ['compatible', str('riscv,cpu-intc')],
                ['phandle', u32(PHANDLE_INTC)],
              ]),
            ],
          ),
          node('cpu-map', [], [node('cluster0', [], [node('core0', [['cpu', u32(PHANDLE_CPU)]])])]),
        ],
      ),
      node(
        'soc',
        [
          ['#address-cells', u32(2)],
          ['#size-cells', u32(2)],
          ['compatible', str('simple-bus')],
          ['ranges', EMPTY],
        ],
        [
          node(`serial@${hex(UART_BASE)}`, [
            ['interrupts', u32(UART_IRQ)],
            ['interrupt-parent', u32(PHANDLE_PLIC)],
            ['clock-frequency', u32(UART_CLOCK_FREQUENCY)],
            ['reg', reg(UART_BASE, 0x100)],
            ['compatible', str('ns16550a')],
          ]),
          node(`test@${hex(TEST_BASE)}`, [
            ['phandle', u32(PHANDLE_TEST)],
            ['reg', reg(TEST_BASE, 0x1000)],
            ['compatible', str('sifive,test1', 'sifive,test0', 'syscon')],
          ]),
          ...virtio,
          node(`plic@${hex(PLIC_BASE)}`, [
            ['phandle', u32(PHANDLE_PLIC)],
            ['riscv,ndev', u32(config.plicSources ?? DEFAULT_PLIC_SOURCES)],
            ['reg', reg(PLIC_BASE, 0x60_0000)],
            ['interrupts-extended', u32(PHANDLE_INTC, IRQ_M_EXT, PHANDLE_INTC, IRQ_S_EXT)],
            ['interrupt-controller', EMPTY],
            ['compatible', str('sifive,plic-1.0.0', 'riscv,plic0')],
            ['#address-cells', u32(0)],
            ['#interrupt-cells', u32(1)],
          ]),
          node(`clint@${hex(CLINT_BASE)}`, [
            ['interrupts-extended', u32(PHANDLE_INTC, IRQ_M_SOFT, PHANDLE_INTC, IRQ_M_TIMER)],
            ['reg', reg(CLINT_BASE, 0x1_0000)],
            ['compatible', str('sifive,clint0', 'riscv,clint0')],
          ]),
        ],
      ),
    ],
  );
  return encode(root, config.reservations ?? []);
}

// ---- QEMU's boot layout ----------------------------------------------------------------------------

/** Where QEMU 7.2's `-M virt` loader puts each image (all physical addresses). */
export interface BootLayout {
  /** `-bios` ELF: loaded at its own addresses; entered at its entry point. */
  firmwareEntry: number;
  /** `-kernel` raw Image: the first 4 MiB boundary at or above the firmware's end (rv32). */
  kernel: number;
  /** `-initrd`: kernel + min(RAM / 2, 128 MiB); `undefined` without an initrd. */
  initrd: { start: number; end: number } | undefined;
  /** The DTB: the last 2 MiB boundary at least `dtbSize` below min(RAM end, 3 GiB). */
  dtb: number;
}

const MIB = 1 << 20;
/**
 * The size QEMU 7.2 places the DTB by: the buffer it builds the tree in (1 MiB), not the packed
 * tree. It writes that much at the DTB address, so the packed tree has free bytes after it.
 */
export const QEMU_FDT_BUFFER = MIB;

/**
 * Computes QEMU 7.2's placement (hw/riscv/boot.c for an rv32 hart) so a loader can do the same:
 * `firmwareEnd` is the end of the firmware ELF's highest loaded segment, `initrdSize` the initrd's
 * length (or undefined); `dtbSize` defaults to {@link QEMU_FDT_BUFFER}, as QEMU computes it.
 */
export function virtBootLayout(
  memory: number,
  firmwareEntry: number,
  firmwareEnd: number,
  initrdSize: number | undefined,
  dtbSize: number = QEMU_FDT_BUFFER,
): BootLayout {
  const kernel = Math.ceil(firmwareEnd / (4 * MIB)) * 4 * MIB;
  const initrdStart = kernel + Math.min(memory / 2, 128 * MIB);
  const initrd = initrdSize === undefined ? undefined : { start: initrdStart, end: initrdStart + initrdSize };
  const top = Math.min(DT_RAM_BASE + memory, 3072 * MIB);
  const dtb = Math.floor((top - dtbSize) / (2 * MIB)) * 2 * MIB;
  return { firmwareEntry, kernel, initrd, dtb };
}
