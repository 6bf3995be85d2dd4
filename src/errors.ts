// Error classes with stable codes (ERR_LOCKSTEP_<NOUN>_<PROBLEM>). Every error a user can meet says
// what was wrong, where, and what to do; callers branch on `code`, never on the message.

/** Base class of every error lockstep throws on purpose. */
export class LockstepError extends Error {
  /** Stable machine-readable code. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The native addon could not be found or loaded. */
export class AddonLoadError extends LockstepError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_LOCKSTEP_ADDON_LOAD', message, options);
  }
}

/** An ELF file is malformed or not a RISC-V 32-bit executable this machine can load. */
export class ElfError extends LockstepError {
  /** Byte offset in the file where the problem is, when there is one. */
  readonly offset: number | undefined;
  constructor(message: string, offset?: number) {
    super('ERR_LOCKSTEP_ELF_INVALID', offset === undefined ? message : `${message} (at file offset 0x${offset.toString(16)})`);
    this.offset = offset;
  }
}

/** An option or argument has a value outside what is accepted. */
export class OptionError extends LockstepError {
  /** The option's name, e.g. `memory`. */
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_LOCKSTEP_OPTION_INVALID', `${field}: ${message}`);
    this.field = field;
  }
}

/** The machine is running (or closed) and cannot do what was asked. */
export class MachineStateError extends LockstepError {
  constructor(code: 'ERR_LOCKSTEP_MACHINE_BUSY' | 'ERR_LOCKSTEP_MACHINE_CLOSED', message: string) {
    super(code, message);
  }
}

/** A snapshot is damaged, of another version, or taken of a differently configured machine. */
export class SnapshotError extends LockstepError {
  constructor(message: string) {
    super('ERR_LOCKSTEP_SNAPSHOT_INVALID', message);
  }
}

/** What a {@link BootError} is about. */
export type BootErrorCode =
  /** The kernel is empty, not a raw Image, or a gzip stream that does not unpack. */
  | 'ERR_LOCKSTEP_BOOT_KERNEL_INVALID'
  /** The initrd is empty or a gzip stream that does not unpack. */
  | 'ERR_LOCKSTEP_BOOT_INITRD_INVALID'
  /** The firmware (`bios`) is not a RISC-V ELF executable that fits in RAM. */
  | 'ERR_LOCKSTEP_BOOT_BIOS_INVALID'
  /** A given device tree is not a valid flattened device tree (or has no /chosen to take the boot arguments). */
  | 'ERR_LOCKSTEP_BOOT_DTB_INVALID'
  /** The kernel command line is too long or holds a NUL. */
  | 'ERR_LOCKSTEP_BOOT_APPEND_INVALID'
  /** An image does not fit in the machine's RAM where QEMU's layout puts it. */
  | 'ERR_LOCKSTEP_BOOT_NO_ROOM'
  /** Two images would overlap where QEMU's layout puts them. */
  | 'ERR_LOCKSTEP_BOOT_OVERLAP'
  /** The images (or command line, or device tree) differ from those a log or snapshot was made with. */
  | 'ERR_LOCKSTEP_BOOT_MISMATCH'
  /** The committed Linux guest (guest/linux/bin) is missing or does not match its SHA256SUMS. */
  | 'ERR_LOCKSTEP_BOOT_IMAGES_MISSING';

/**
 * Booting Linux on a machine failed before anything ran: an image is invalid, does not fit, overlaps
 * another, or differs from what a recording was made with. `field` names the input (`kernel`,
 * `initrd`, `bios`, `dtb`, `append`).
 */
export class BootError extends LockstepError {
  readonly field: string;
  constructor(code: BootErrorCode, field: string, message: string, options?: { cause?: unknown }) {
    super(code, `${field}: ${message}`, options);
    this.field = field;
  }
}
