// What `run`, `record` and `replay` boot: a bare-metal ELF (the positional argument) or Linux with
// QEMU's flags (--kernel, --initrd, --append, --bios, --dtb) or the committed guest (--linux).
// Parses the flags and reads the files (readLinuxBoot for Linux); Machine.load / Machine.loadLinux load them.
import { readFileSync } from 'node:fs';
import { readLinuxBoot, type LinuxBootOptions } from '../machine/linux.js';
import { UsageError } from './args.js';

export const BOOT_OPTIONS = {
  kernel: { type: 'string' },
  initrd: { type: 'string' },
  bios: { type: 'string' },
  dtb: { type: 'string' },
  linux: { type: 'boolean' },
} as const;

export const BOOT_HELP = `Linux (QEMU's flags; no <guest.elf> then):
  --kernel <Image>           a Linux kernel: raw RISC-V Image (or Image.gz), placed as QEMU -M virt does
  --initrd <file>            an initrd (cpio, raw or gzip), at kernel + min(RAM/2, 128M)
  --append <text>            the kernel command line (/chosen/bootargs)
  --bios <firmware.elf>      M-mode firmware (default: lockstep's SBI firmware, guest/firmware/bin)
  --dtb <file>               boot with this device tree instead of the generated one
  --linux                    the committed guest (guest/linux/bin): its kernel, initramfs and firmware,
                             --append 'console=ttyS0' unless given; any flag above replaces its part
`;

export interface BootValues {
  kernel?: string | undefined;
  initrd?: string | undefined;
  bios?: string | undefined;
  dtb?: string | undefined;
  linux?: boolean | undefined;
  append?: string | undefined;
}

/** A bare-metal ELF or a Linux boot, with the files read. */
export type Boot =
  | { kind: 'elf'; path: string; elf: Uint8Array; cmdline: string | undefined }
  | { kind: 'linux'; options: LinuxBootOptions; describe: string };

/** True when the values ask for a Linux boot. */
export function wantsLinux(v: BootValues): boolean {
  return v.linux === true || v.kernel !== undefined;
}

/** The boot the values and positionals ask for (`what` names the positional in messages). */
export function parseBoot(v: BootValues, positionals: string[], what: string): Boot {
  if (!wantsLinux(v)) {
    for (const k of ['initrd', 'bios', 'dtb'] as const) {
      if (v[k] !== undefined) throw new UsageError(`--${k} is part of a Linux boot: give --kernel (or --linux) too`);
    }
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? `missing ${what} (or --kernel/--linux to boot Linux)` : `expected one ELF file, got ${positionals.length}`);
    return { kind: 'elf', path: positionals[0]!, elf: readFileSync(positionals[0]!), cmdline: v.append };
  }
  if (positionals.length !== 0) throw new UsageError(`${what} and --kernel/--linux are exclusive: boot either an ELF guest or Linux`);
  const options = readLinuxBoot({ kernel: v.kernel, initrd: v.initrd, bios: v.bios, dtb: v.dtb, append: v.append, committed: v.linux });
  const describe = v.kernel ?? 'the committed Linux guest';
  return { kind: 'linux', options, describe };
}
