// Booting Linux as QEMU 7.2 does for `-M virt -bios <fw> -kernel <Image> -initrd <f> -append <s> [-dtb <f>]`:
// where each image goes, the device tree, the entry registers. Planning is pure (bytes in, a plan out);
// Machine.loadLinux applies a plan. Also the committed guest (guest/linux/bin, guest/firmware/bin).
import { readFileSync } from 'node:fs';
import { BootError, ElfError } from '../errors.js';
import {
  QEMU_FDT_BUFFER,
  buildDeviceTree,
  decodeDeviceTree,
  encodeDeviceTree,
  virtBootLayout,
  type DeviceTreeNode,
} from './device-tree.js';
import { parseElf } from './elf.js';

const RAM_BASE = 0x8000_0000;
/** Longest kernel command line (RISC-V's COMMAND_LINE_SIZE is 1024; QEMU does not check). */
export const MAX_BOOTARGS_BYTES = 1023;
/** The SBI firmware inserts a 16-byte `/memreserve/` entry into the DTB in place: room it needs after it. */
const DTB_GROWTH = 16;
/** `fw_dynamic_info` (OpenSBI's, version 2): magic, version, next_addr, next_mode, options, boot_hart. */
const FW_DYNAMIC_MAGIC = 0x4942534f;
const FW_DYNAMIC_VERSION = 2;
const FW_DYNAMIC_SIZE = 24;
const PRV_S = 1;
/** RISC-V Image header (Documentation/riscv/boot-image-header.rst): image_size at 16, magic2 "RSC\x05" at 56. */
const IMAGE_SIZE_OFFSET = 16;
const IMAGE_MAGIC2_OFFSET = 56;
const IMAGE_MAGIC2 = 0x05435352;
/** QEMU 7.2's load_device_tree(): a `-dtb` file gets a buffer of (size + 10000) · 2, which places it. */
const QEMU_DTB_SLACK = 10_000;

/** The images of a Linux boot, as QEMU's options take them. */
export interface LinuxBootOptions {
  /** The kernel: a raw RISC-V `Image` (`-kernel`); gzip-compressed is unpacked first. */
  kernel: Uint8Array;
  /** The initial RAM disk (`-initrd`), placed as given (the kernel itself unpacks a gzip'd cpio). */
  initrd?: Uint8Array;
  /** The kernel command line (`-append`; `/chosen/bootargs`). */
  append?: string;
  /** The M-mode firmware ELF (`-bios`); default: lockstep's SBI firmware, guest/firmware/bin/firmware.elf. */
  bios?: Uint8Array;
  /**
   * A device tree to boot with (`-dtb`) instead of the one generated from the machine's configuration.
   * As QEMU does, its `/chosen` gets `bootargs` (when `append` is not empty) and the initrd's range.
   */
  dtb?: Uint8Array;
}

/**
 * What identifies a Linux boot: the SHA-256 of every image as placed in RAM (the kernel unpacked), and
 * the command line. A log or a replay carries it, so a replay with other images is refused up front.
 */
export interface LinuxIdentity {
  biosSha256: string;
  kernelSha256: string;
  initrdSha256?: string;
  /** The device tree as placed (generated or given, with its `/chosen` filled in). */
  dtbSha256: string;
  /** The kernel command line, when not empty. */
  append?: string;
}

/** Where {@link Machine.loadLinux} put everything (physical addresses). */
export interface LinuxBootInfo {
  /** The firmware ELF: its entry point (where the hart starts, in M-mode) and the end of its highest segment. */
  firmware: { entry: number; end: number };
  /** The kernel Image: its address and the memory it needs (the header's `image_size`, bss included, when larger than the file). */
  kernel: { address: number; size: number };
  /** The initrd's range, as `/chosen/linux,initrd-start` and `-end` say. */
  initrd?: { start: number; end: number };
  /** The device tree (a1 at entry) and its length. */
  dtb: { address: number; size: number };
  /** The `fw_dynamic_info` the firmware reads (a2 at entry): next_addr = the kernel, next_mode = S. */
  fwDynamicInfo: number;
  /** The device tree's `/chosen/bootargs`, when set. */
  bootargs?: string;
  identity: LinuxIdentity;
}

/** What a machine is made of, as far as the boot plan cares. */
export interface LinuxBootTarget {
  /** RAM bytes at 0x8000_0000. */
  memory: number;
  /** virtio-mmio slots that hold a device (the generated tree describes those only). */
  virtioSlots: readonly number[];
}

/** A boot plan: bytes to write, then the hart's registers. */
export interface LinuxBootPlan {
  info: LinuxBootInfo;
  /** Each write's bytes go to its address (BSS as explicit zeros). */
  writes: { address: number; bytes: Uint8Array }[];
  /** Integer registers to set (all others zero), and the pc. */
  registers: { index: number; value: number }[];
  pc: number;
}

// node:crypto and node:zlib are loaded on first use: every Machine imports this module, and a bare-metal
// run (`lockstep run hello.elf`) needs neither; the two cost several ms of a CLI's start.
const gunzipSync: typeof import('node:zlib').gunzipSync = (...args) => process.getBuiltinModule('node:zlib').gunzipSync(...args);

export function sha256(bytes: Uint8Array): string {
  return process.getBuiltinModule('node:crypto').createHash('sha256').update(bytes).digest('hex');
}

const hex = (v: number): string => `0x${v.toString(16)}`;
const range = (start: number, end: number): string => `[${hex(start)}, ${hex(end)})`;
const mib = (bytes: number): string => `${Math.ceil(bytes / (1 << 20))} MiB`;

function isGzip(b: Uint8Array): boolean {
  return b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
}

function bytesOf(field: string, value: unknown, code: 'ERR_LOCKSTEP_BOOT_KERNEL_INVALID' | 'ERR_LOCKSTEP_BOOT_INITRD_INVALID' | 'ERR_LOCKSTEP_BOOT_BIOS_INVALID' | 'ERR_LOCKSTEP_BOOT_DTB_INVALID'): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new BootError(code, field, `must be a Uint8Array (the file's bytes), got ${value === null ? 'null' : typeof value}`);
  if (value.length === 0) throw new BootError(code, field, 'is empty');
  return value;
}

/** The kernel as it goes into RAM, and the memory it needs there. */
function kernelImage(given: Uint8Array, memory: number): { image: Uint8Array; footprint: number } {
  let image = given;
  if (isGzip(given)) {
    try {
      // Bounded: nothing larger than RAM could be loaded anyway, and a gzip bomb must not take the host down.
      image = gunzipSync(given, { maxOutputLength: memory });
    } catch (err) {
      throw new BootError('ERR_LOCKSTEP_BOOT_KERNEL_INVALID', 'kernel', `a gzip stream that does not unpack within ${mib(memory)} (${(err as Error).message})`, { cause: err });
    }
    if (image.length === 0) throw new BootError('ERR_LOCKSTEP_BOOT_KERNEL_INVALID', 'kernel', 'unpacks to nothing');
  }
  if (image.length >= 4 && image[0] === 0x7f && image[1] === 0x45 && image[2] === 0x4c && image[3] === 0x46) {
    throw new BootError(
      'ERR_LOCKSTEP_BOOT_KERNEL_INVALID',
      'kernel',
      'is an ELF file (vmlinux); lockstep boots the raw Image (arch/riscv/boot/Image, or Image.gz), as QEMU places it',
    );
  }
  let footprint = image.length;
  if (image.length >= 64) {
    const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
    if (dv.getUint32(IMAGE_MAGIC2_OFFSET, true) === IMAGE_MAGIC2) {
      // image_size: what the kernel occupies once running (bss included); it clears that much.
      const size = dv.getUint32(IMAGE_SIZE_OFFSET, true) + dv.getUint32(IMAGE_SIZE_OFFSET + 4, true) * 0x1_0000_0000;
      if (size > footprint) footprint = size;
    }
  }
  return { image, footprint };
}

function setProp(n: DeviceTreeNode, name: string, value: Uint8Array): void {
  const i = n.props.findIndex(([k]) => k === name);
  if (i >= 0) n.props[i] = [name, value];
  else n.props.push([name, value]);
}

function cell(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0);
  return b;
}

/**
 * A given device tree with `/chosen` updated as QEMU 7.2 updates a `-dtb`: `bootargs` when the command
 * line is not empty, `linux,initrd-start`/`-end` (one cell each) with an initrd. QEMU exits when the
 * tree has no `/chosen`; so does this (a coded error).
 */
function patchChosen(dtb: Uint8Array, bootargs: string | undefined, initrd: { start: number; end: number } | undefined): Uint8Array {
  const tree = decodeDeviceTree(dtb);
  if (bootargs === undefined && initrd === undefined) return encodeDeviceTree(tree);
  const chosen = tree.root.children.find((c) => c.name === 'chosen');
  if (!chosen) throw new BootError('ERR_LOCKSTEP_BOOT_DTB_INVALID', 'dtb', 'has no /chosen node to take the command line and the initrd (QEMU refuses it too)');
  if (bootargs !== undefined) setProp(chosen, 'bootargs', new TextEncoder().encode(`${bootargs}\0`));
  if (initrd !== undefined) {
    setProp(chosen, 'linux,initrd-start', cell(initrd.start));
    setProp(chosen, 'linux,initrd-end', cell(initrd.end));
  }
  return encodeDeviceTree(tree);
}

/**
 * Plans a Linux boot on a machine: the firmware ELF at its own addresses, the kernel Image on the first
 * 4 MiB boundary after it, the initrd at kernel + min(RAM / 2, 128 MiB), the device tree on the last
 * 2 MiB boundary that leaves QEMU's tree buffer below the top of RAM (see `virtBootLayout`), and the
 * registers QEMU's reset vector hands the firmware (a0 = hart 0, a1 = DTB, a2 = `fw_dynamic_info`,
 * t0 = the entry). The generated device tree describes the machine's RAM and the virtio slots in use.
 *
 * @throws {BootError} an invalid image, one that does not fit in RAM (`ERR_LOCKSTEP_BOOT_NO_ROOM`), or
 *   two that would overlap (`ERR_LOCKSTEP_BOOT_OVERLAP`), each naming the image and the addresses
 */
export function planLinuxBoot(target: LinuxBootTarget, options: LinuxBootOptions): LinuxBootPlan {
  if (typeof options !== 'object' || options === null) throw new BootError('ERR_LOCKSTEP_BOOT_KERNEL_INVALID', 'kernel', 'no boot options given');
  const { memory } = target;
  const ramEnd = RAM_BASE + memory;
  const kernel = kernelImage(bytesOf('kernel', options.kernel, 'ERR_LOCKSTEP_BOOT_KERNEL_INVALID'), memory);
  const initrd = options.initrd === undefined ? undefined : bytesOf('initrd', options.initrd, 'ERR_LOCKSTEP_BOOT_INITRD_INVALID');
  const givenDtb = options.dtb === undefined ? undefined : bytesOf('dtb', options.dtb, 'ERR_LOCKSTEP_BOOT_DTB_INVALID');
  const bios = options.bios === undefined ? committedFirmware() : bytesOf('bios', options.bios, 'ERR_LOCKSTEP_BOOT_BIOS_INVALID');
  let append = options.append;
  if (append !== undefined) {
    if (typeof append !== 'string' || append.includes('\0') || Buffer.byteLength(append) > MAX_BOOTARGS_BYTES) {
      throw new BootError('ERR_LOCKSTEP_BOOT_APPEND_INVALID', 'append', `must be a string of at most ${MAX_BOOTARGS_BYTES} bytes without NUL (the kernel's COMMAND_LINE_SIZE)`);
    }
    if (append === '') append = undefined; // QEMU sets bootargs only for a non-empty -append
  }

  let elf;
  try {
    elf = parseElf(bios, { base: RAM_BASE, size: memory });
  } catch (err) {
    if (!(err instanceof ElfError)) throw err;
    throw new BootError('ERR_LOCKSTEP_BOOT_BIOS_INVALID', 'bios', `not a firmware ELF this machine can load: ${err.message}`, { cause: err });
  }
  const fwStart = Math.min(...elf.segments.map((s) => s.addr));
  const fwEnd = Math.max(...elf.segments.map((s) => s.addr + s.memsz));
  const dtbWindow = givenDtb === undefined ? QEMU_FDT_BUFFER : (givenDtb.length + QEMU_DTB_SLACK) * 2;
  const layout = virtBootLayout(memory, elf.entry, fwEnd, initrd?.length, dtbWindow);
  // fw_dynamic_info at the top of the DTB's window (QEMU keeps it in ROM at 0x1028; lockstep has no ROM).
  const fwInfo = Math.floor((layout.dtb + dtbWindow - FW_DYNAMIC_SIZE) / 8) * 8;
  type Region = { what: string; field: string; start: number; end: number };
  const regions: Region[] = [
    { what: 'the firmware', field: 'bios', start: fwStart, end: fwEnd },
    { what: 'the kernel (bss included)', field: 'kernel', start: layout.kernel, end: layout.kernel + kernel.footprint },
    ...(layout.initrd === undefined ? [] : [{ what: 'the initrd', field: 'initrd', start: layout.initrd.start, end: layout.initrd.end }]),
    { what: 'fw_dynamic_info', field: 'dtb', start: fwInfo, end: fwInfo + FW_DYNAMIC_SIZE },
  ];
  const inRam = (r: Region): void => {
    if (r.start < RAM_BASE || r.end > ramEnd) {
      throw new BootError(
        'ERR_LOCKSTEP_BOOT_NO_ROOM',
        r.field,
        `${r.what} would occupy ${range(r.start, r.end)}, outside RAM ${range(RAM_BASE, ramEnd)} (${mib(memory)}): give the machine more memory`,
      );
    }
  };
  regions.forEach(inRam);
  // The tree names the initrd's range, so it is built once that range is known to be in RAM.
  const dtb = givenDtb === undefined
    ? buildDeviceTree({
        memory,
        ...(append === undefined ? {} : { bootargs: append }),
        ...(layout.initrd === undefined ? {} : { initrd: layout.initrd }),
        virtioSlots: target.virtioSlots,
      })
    : patchChosen(givenDtb, append, layout.initrd);
  const dtbRegion: Region = { what: 'the device tree', field: 'dtb', start: layout.dtb, end: layout.dtb + dtb.length + DTB_GROWTH };
  inRam(dtbRegion);
  regions.splice(regions.length - 1, 0, dtbRegion);
  for (let i = 0; i < regions.length; i++) {
    for (let j = i + 1; j < regions.length; j++) {
      const a = regions[i]!;
      const b = regions[j]!;
      if (a.start < b.end && b.start < a.end) {
        throw new BootError(
          'ERR_LOCKSTEP_BOOT_OVERLAP',
          b.field,
          `${b.what} at ${range(b.start, b.end)} would overlap ${a.what} at ${range(a.start, a.end)} in QEMU's layout for ${mib(memory)} of RAM ` +
            '(kernel on the 4 MiB boundary after the firmware, initrd at kernel + min(RAM/2, 128 MiB), device tree below the top of RAM): give the machine more memory or use smaller images',
        );
      }
    }
  }

  const writes: LinuxBootPlan['writes'] = [];
  for (const s of elf.segments) {
    writes.push({ address: s.addr, bytes: s.data });
    if (s.memsz > s.data.length) writes.push({ address: s.addr + s.data.length, bytes: new Uint8Array(s.memsz - s.data.length) });
  }
  writes.push({ address: layout.kernel, bytes: kernel.image });
  if (initrd !== undefined && layout.initrd !== undefined) writes.push({ address: layout.initrd.start, bytes: initrd });
  writes.push({ address: layout.dtb, bytes: dtb });
  const info = new Uint8Array(FW_DYNAMIC_SIZE);
  const dv = new DataView(info.buffer);
  [FW_DYNAMIC_MAGIC, FW_DYNAMIC_VERSION, layout.kernel, PRV_S, 0, 0].forEach((v, i) => dv.setUint32(i * 4, v, true));
  writes.push({ address: fwInfo, bytes: info });

  const identity: LinuxIdentity = { biosSha256: sha256(bios), kernelSha256: sha256(kernel.image), dtbSha256: sha256(dtb) };
  if (initrd !== undefined) identity.initrdSha256 = sha256(initrd);
  if (append !== undefined) identity.append = append;
  const bootInfo: LinuxBootInfo = {
    firmware: { entry: elf.entry, end: fwEnd },
    kernel: { address: layout.kernel, size: kernel.footprint },
    dtb: { address: layout.dtb, size: dtb.length },
    fwDynamicInfo: fwInfo,
    identity,
  };
  if (layout.initrd !== undefined) bootInfo.initrd = layout.initrd;
  const bootargs = givenDtb === undefined ? append : chosenBootargs(dtb);
  if (bootargs !== undefined) bootInfo.bootargs = bootargs;
  return {
    info: bootInfo,
    writes,
    registers: [
      { index: 5, value: elf.entry }, // t0, as QEMU's reset vector leaves it
      { index: 10, value: 0 }, // a0: hart id
      { index: 11, value: layout.dtb }, // a1: device tree
      { index: 12, value: fwInfo }, // a2: fw_dynamic_info
    ],
    pc: elf.entry,
  };
}

function chosenBootargs(dtb: Uint8Array): string | undefined {
  const chosen = decodeDeviceTree(dtb).root.children.find((c) => c.name === 'chosen');
  const v = chosen?.props.find(([k]) => k === 'bootargs')?.[1];
  if (v === undefined) return undefined;
  const text = new TextDecoder().decode(v);
  return text.endsWith('\0') ? text.slice(0, -1) : text;
}

/**
 * Compares the identity a log (or anything else) was made with against the boot now: throws
 * {@link BootError} `ERR_LOCKSTEP_BOOT_MISMATCH` naming every field that differs.
 */
export function checkLinuxIdentity(recorded: LinuxIdentity, actual: LinuxIdentity, source: string): void {
  const fields: [keyof LinuxIdentity, string, string][] = [
    ['biosSha256', 'bios', 'the firmware'],
    ['kernelSha256', 'kernel', 'the kernel'],
    ['initrdSha256', 'initrd', 'the initrd'],
    ['append', 'append', 'the command line'],
    ['dtbSha256', 'dtb', 'the device tree (generated from the memory size and devices, or given)'],
  ];
  const diffs: { field: string; text: string }[] = [];
  for (const [k, field, what] of fields) {
    const a = recorded[k];
    const b = actual[k];
    if (a === b) continue;
    if (k === 'append') diffs.push({ field, text: `${what} was ${JSON.stringify(a ?? '')}, here it is ${JSON.stringify(b ?? '')}` });
    else if (a === undefined || b === undefined) diffs.push({ field, text: `${what}: ${a === undefined ? 'none there, one here' : 'one there, none here'}` });
    else diffs.push({ field, text: `${what}: sha256 ${a.slice(0, 16)}… there, ${b.slice(0, 16)}… here` });
  }
  if (diffs.length === 0) return;
  // The device tree follows from the rest (bootargs, initrd range): name it only when nothing else differs.
  const shown = diffs.length > 1 ? diffs.filter((d) => d.field !== 'dtb') : diffs;
  throw new BootError('ERR_LOCKSTEP_BOOT_MISMATCH', shown[0]!.field, `${source} was made with other boot images: ${shown.map((d) => d.text).join('; ')}`);
}

// ---- the committed guest ---------------------------------------------------------------------------

const GUEST_DIR = new URL('../../guest/', import.meta.url);

/** Paths of the committed Linux guest's files (compressed kernel and initramfs, their digests, the firmware). */
export const COMMITTED_LINUX = {
  kernel: new URL('linux/bin/Image.gz', GUEST_DIR),
  initrd: new URL('linux/bin/rootfs.cpio.gz', GUEST_DIR),
  sums: new URL('linux/bin/SHA256SUMS', GUEST_DIR),
  bios: new URL('firmware/bin/firmware.elf', GUEST_DIR),
} as const;

/** The command line the committed guest boots with by default. */
export const COMMITTED_LINUX_APPEND = 'console=ttyS0';

let firmwareCache: Uint8Array | undefined;
let guestCache: { kernel: Uint8Array; initrd: Uint8Array; bios: Uint8Array } | undefined;

function readCommitted(url: URL, what: string): Uint8Array {
  try {
    return readFileSync(url);
  } catch (err) {
    throw new BootError('ERR_LOCKSTEP_BOOT_IMAGES_MISSING', what, `cannot read ${url.pathname}: ${(err as Error).message}`, { cause: err });
  }
}

function committedFirmware(): Uint8Array {
  firmwareCache ??= readCommitted(COMMITTED_LINUX.bios, 'bios');
  return firmwareCache;
}

/**
 * The committed Linux guest, unpacked and checked against guest/linux/bin/SHA256SUMS: the kernel Image,
 * the initramfs (cpio) and lockstep's SBI firmware. Boot it with `machine.loadLinux({ ...committedLinux(),
 * append: COMMITTED_LINUX_APPEND })`.
 *
 * @throws {BootError} `ERR_LOCKSTEP_BOOT_IMAGES_MISSING` when a file is missing or differs from its digest
 */
export function committedLinux(): { kernel: Uint8Array; initrd: Uint8Array; bios: Uint8Array } {
  if (guestCache) return guestCache;
  const sums = new Map<string, string>();
  for (const line of new TextDecoder().decode(readCommitted(COMMITTED_LINUX.sums, 'kernel')).split('\n')) {
    const m = /^([0-9a-f]{64}) {2}(\S+)$/.exec(line);
    if (m) sums.set(m[2]!, m[1]!);
  }
  const check = (name: string, field: string, bytes: Uint8Array): Uint8Array => {
    const want = sums.get(name);
    const got = sha256(bytes);
    if (want !== got) {
      throw new BootError('ERR_LOCKSTEP_BOOT_IMAGES_MISSING', field, `${name} has sha256 ${got}, guest/linux/bin/SHA256SUMS says ${want ?? 'nothing'}: the committed guest is damaged (git checkout guest/)`);
    }
    return bytes;
  };
  const unpack = (url: URL, field: string): Uint8Array => {
    try {
      return gunzipSync(readCommitted(url, field));
    } catch (err) {
      if (err instanceof BootError) throw err;
      throw new BootError('ERR_LOCKSTEP_BOOT_IMAGES_MISSING', field, `${url.pathname} does not unpack: ${(err as Error).message}`, { cause: err });
    }
  };
  guestCache = {
    kernel: check('Image', 'kernel', unpack(COMMITTED_LINUX.kernel, 'kernel')),
    initrd: check('rootfs.cpio', 'initrd', unpack(COMMITTED_LINUX.initrd, 'initrd')),
    bios: check('firmware.elf', 'bios', committedFirmware()),
  };
  return guestCache;
}

/**
 * The files of a Linux boot, named as QEMU's options name them (`-kernel`, `-initrd`, `-bios`, `-dtb`,
 * `-append`). With `committed`, whatever is not given comes from the committed guest (its kernel,
 * initramfs and firmware, and {@link COMMITTED_LINUX_APPEND}).
 */
export interface LinuxBootFiles {
  kernel?: string | undefined;
  initrd?: string | undefined;
  bios?: string | undefined;
  dtb?: string | undefined;
  append?: string | undefined;
  committed?: boolean | undefined;
}

/**
 * Reads the files of a Linux boot into the options {@link Machine.loadLinux} takes.
 *
 * @throws {BootError} `ERR_LOCKSTEP_BOOT_KERNEL_INVALID` when neither a kernel nor `committed` is given;
 *   `ERR_LOCKSTEP_BOOT_IMAGES_MISSING` when the committed guest is missing or damaged
 * @throws the file system's error (ENOENT …) for a file that cannot be read
 */
export function readLinuxBoot(files: LinuxBootFiles): LinuxBootOptions {
  const committed = files.committed === true ? committedLinux() : undefined;
  if (files.kernel === undefined && !committed) throw new BootError('ERR_LOCKSTEP_BOOT_KERNEL_INVALID', 'kernel', 'is required (the path of a kernel Image), or boot the committed guest');
  const options: LinuxBootOptions = { kernel: files.kernel !== undefined ? readFileSync(files.kernel) : committed!.kernel };
  const initrd = files.initrd !== undefined ? readFileSync(files.initrd) : committed?.initrd;
  if (initrd) options.initrd = initrd;
  const bios = files.bios !== undefined ? readFileSync(files.bios) : committed?.bios;
  if (bios) options.bios = bios;
  if (files.dtb !== undefined) options.dtb = readFileSync(files.dtb);
  const append = files.append ?? (committed ? COMMITTED_LINUX_APPEND : undefined);
  if (append !== undefined && append !== '') options.append = append;
  return options;
}
