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

/** Stable codes a {@link SnapshotError} carries. */
export type SnapshotErrorCode =
  /** Not a snapshot, a checksum mismatch (damaged or truncated), or a field no machine could be in. */
  | 'ERR_LOCKSTEP_SNAPSHOT_CORRUPT'
  /** Written in a snapshot format version this build does not read (older ones carry no checksum). */
  | 'ERR_LOCKSTEP_SNAPSHOT_VERSION'
  /** A valid snapshot of a differently configured machine (memory size, clock mode, devices). */
  | 'ERR_LOCKSTEP_SNAPSHOT_MISMATCH';

/** A snapshot is damaged, of another version, or taken of a differently configured machine. */
export class SnapshotError extends LockstepError {
  constructor(code: SnapshotErrorCode, message: string) {
    super(code, message);
  }
}

/** An address could not be bound: in use by another process, or not an address of this host. */
export class ListenError extends LockstepError {
  /** `host:port` as asked for. */
  readonly address: string;
  /** What wanted it: `the UDP port of vm.devices.net.hostPort`, `the operations API (--control)`. */
  readonly what: string;
  constructor(code: 'ERR_LOCKSTEP_LISTEN_IN_USE' | 'ERR_LOCKSTEP_LISTEN_FAILED', what: string, address: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.what = what;
    this.address = address;
  }

  /** The error of a failed bind or listen, saying what wanted which address and what to do. */
  static from(err: unknown, what: string, host: string, port: number): ListenError {
    // A native bind's ListenError carries the system error as its cause: said again for what wanted it.
    const sys = err instanceof ListenError ? err.cause : err;
    const code = (sys as NodeJS.ErrnoException | undefined)?.code;
    const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    if (code === 'EADDRINUSE') {
      return new ListenError('ERR_LOCKSTEP_LISTEN_IN_USE', what, address, `${what}: ${address} is in use by another process: stop it, or choose another port`, { cause: err });
    }
    const why =
      code === 'EADDRNOTAVAIL' ? 'not an address of this host' : code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : (code ?? (err as Error).message);
    return new ListenError('ERR_LOCKSTEP_LISTEN_FAILED', what, address, `${what}: cannot bind ${address}: ${why}`, { cause: err });
  }
}

/**
 * An optional peer dependency that a feature needs is not installed (prom-client for metrics). Code
 * `ERR_LOCKSTEP_PACKAGE_MISSING`; the message names the package, the feature and how to get it.
 */
export class MissingPackageError extends LockstepError {
  /** The npm package to install, e.g. `prom-client`. */
  readonly packageName: string;
  constructor(packageName: string, feature: string, options?: { cause?: unknown }) {
    super('ERR_LOCKSTEP_PACKAGE_MISSING', `${feature} need the npm package ${packageName}, which is not installed: run \`npm install ${packageName}\` beside lockstep`, options);
    this.packageName = packageName;
  }
}

/** Stable codes a {@link ReplicationError} carries. */
export type ReplicationErrorCode =
  /** Clone page records that are not whole `[u32 index][4096 bytes]` records or name a page outside RAM. */
  | 'ERR_LOCKSTEP_REPLICATION_PAGES'
  /** Go-live asked of a machine that is not replaying, or whose log was not replayed to its end. */
  | 'ERR_LOCKSTEP_REPLICATION_GO_LIVE'
  /** The native replication link could not start (no recording, not replaying, a socket that cannot be used). */
  | 'ERR_LOCKSTEP_REPLICATION_LINK';

/** The replication port (src/machine/replication-port.ts) refused a request of fault tolerance. */
export class ReplicationError extends LockstepError {
  constructor(code: ReplicationErrorCode, message: string) {
    super(code, message);
  }
}

/**
 * The error a native failure arrives as: the addon builds every error it throws on purpose through this
 * (handed to it once at load), so each is an instance of the right coded class.
 */
export function nativeError(code: string, message: string, field?: string, cause?: string): Error {
  switch (code) {
    case 'ERR_LOCKSTEP_LISTEN_IN_USE':
    case 'ERR_LOCKSTEP_LISTEN_FAILED': {
      // field: the address; cause: the errno's name, as Node names a failed bind's error code.
      const sys = Object.assign(new Error(message), { code: cause ?? 'EIO', syscall: 'bind' });
      return new ListenError(code, 'a udp forward', field ?? '', `a udp forward: ${message}`, { cause: sys });
    }
    case 'ERR_LOCKSTEP_MACHINE_BUSY':
    case 'ERR_LOCKSTEP_MACHINE_CLOSED':
      return new MachineStateError(code, message);
    case 'ERR_LOCKSTEP_OPTION_INVALID':
      return new OptionError(field ?? 'machine', message);
    case 'ERR_LOCKSTEP_SNAPSHOT_CORRUPT':
    case 'ERR_LOCKSTEP_SNAPSHOT_VERSION':
    case 'ERR_LOCKSTEP_SNAPSHOT_MISMATCH':
      return new SnapshotError(code, message);
    case 'ERR_LOCKSTEP_REPLICATION_PAGES':
    case 'ERR_LOCKSTEP_REPLICATION_GO_LIVE':
    case 'ERR_LOCKSTEP_REPLICATION_LINK':
      return new ReplicationError(code, message);
    default:
      return new LockstepError(code, message);
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
