// Types of a validated configuration and its defaults. Values only: validation lives in validate.ts (with
// lockstep.schema.json), files are read in load.ts. Every object of a validated configuration is frozen.

/** An address as `host:port` in a file, split here (`[::1]:7400` gives host `::1`). */
export interface HostPort {
  readonly host: string;
  /** 0..65535; 0 asks the system for any free port. */
  readonly port: number;
}

/** virtio-blk backed by a raw image file. */
export interface DiskConfig {
  /** Absolute path of the raw image (a multiple of 512 bytes). */
  readonly path: string;
  /**
   * `shared`: one image both halves reach (shared storage); only the primary writes it and read data
   * travels in the log. `separate`: each half has its own identical image at `path` on its host; the
   * secondary applies writes itself and reads locally, which cuts log bandwidth.
   */
  readonly mode: 'shared' | 'separate';
}

/** virtio-net with host UDP port forwarding (guest 10.0.2.15, as QEMU's user network). */
export interface UdpNetConfig {
  readonly backend: 'udp';
  /** Host address the forwarded port is bound to. */
  readonly host: string;
  /** Host UDP port (0: any free port). */
  readonly hostPort: number;
  /** Guest UDP port datagrams are delivered to. */
  readonly guestPort: number;
  /** Guest MAC address (`52:54:00:12:34:56` when undefined). */
  readonly mac: string | undefined;
}

/** virtio-net on a Linux TAP device (layer 2; needs CAP_NET_ADMIN). */
export interface TapNetConfig {
  readonly backend: 'tap';
  /** Interface name, 1..15 characters. */
  readonly name: string;
  readonly mac: string | undefined;
}

export type NetConfig = UdpNetConfig | TapNetConfig;

/** The VM's virtio devices. */
export interface DevicesConfig {
  readonly rng: boolean;
  readonly disk: DiskConfig | undefined;
  readonly net: NetConfig | undefined;
}

/** The Linux images of a VM (`vm.kernel`, `vm.initrd`, `vm.bios`, `vm.dtb`), as absolute paths. */
export interface LinuxConfig {
  readonly kernel: string;
  readonly initrd: string | undefined;
  readonly bios: string | undefined;
  readonly dtb: string | undefined;
}

/** The `vm` section: what the machine is made of. Both halves of a pair build theirs from it. */
export interface VmConfig {
  /** Names the VM; the arbiter's key. `[a-z0-9][a-z0-9._-]{0,62}`. */
  readonly id: string;
  /** Absolute path of the guest ELF; undefined when the VM boots Linux (`kernel`). */
  readonly guest: string | undefined;
  /**
   * Linux instead of a bare-metal ELF, as QEMU's `-kernel`/`-initrd`/`-bios`/`-dtb`: absolute paths of
   * the raw (or gzip'd) kernel Image, the initrd, the firmware ELF (undefined: lockstep's SBI firmware)
   * and a device tree (undefined: generated from this configuration). Undefined for an ELF guest.
   */
  readonly linux: LinuxConfig | undefined;
  /** Guest RAM in MiB (the machine's `memory` is `ramMiB * 2**20`). */
  readonly ramMiB: number;
  /** `real`: mtime follows the host clock and is logged. `virtual`: derived from instret, deterministic. */
  readonly clock: 'real' | 'virtual';
  /** `jit` (default): the block compiler for hot code in every mode beside the interpreter (x86-64 Linux; elsewhere the interpreter). `interp`: the interpreter alone. */
  readonly engine: 'interp' | 'jit';
  /** The guest's command line (as QEMU's `-append`: Linux's bootargs, or what an ELF guest reads through semihosting); '' for none. */
  readonly append: string;
  readonly devices: DevicesConfig;
}

/**
 * Where the logging channel's pre-shared key comes from. The key itself is read by
 * {@link readFtKey} (and by `loadConfig`, which checks it).
 */
export type FtKeyConfig =
  /** The bytes of a file (one trailing newline byte, 0x0a, removed), at least 16. */
  | { readonly source: 'file'; readonly path: string }
  /** Hex digits in the configuration itself, at least 32 (16 bytes). */
  | { readonly source: 'hex'; readonly hex: string }
  /** The name of an environment variable holding hex digits, at least 32. */
  | { readonly source: 'env'; readonly name: string };

/** TLS with client certificates on the logging channel, in addition to the key. Absolute paths (PEM). */
export interface TlsConfig {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

/** Arbiter on a directory both halves share (exclusive create; works on NFS). */
export interface FileArbiterConfig {
  readonly backend: 'file';
  /** Absolute path of the shared directory. */
  readonly dir: string;
}

/** Arbiter on etcd (compare-and-swap transactions). */
export interface EtcdArbiterConfig {
  readonly backend: 'etcd';
  /** `http://host:port` or `https://host:port`, at least one. */
  readonly endpoints: readonly string[];
  /** Key prefix under which the epochs are kept. */
  readonly prefix: string;
  /** Deadline of each etcd request, ms. */
  readonly timeoutMs: number;
}

export type ArbiterConfig = FileArbiterConfig | EtcdArbiterConfig;

/** Fields of the `ft` section whether or not fault tolerance is enabled. */
export interface FtCommonConfig {
  /** The primary's logging-channel address (where secondaries connect). */
  readonly listen: HostPort;
  readonly tls: TlsConfig | undefined;
  /** Heartbeat interval in both directions, ms. */
  readonly heartbeatMs: number;
  /** Silence after which the peer is declared dead, ms (at least 3 × heartbeatMs). */
  readonly timeoutMs: number;
  /** Silence tolerated while a secondary is cloned, until it restored the final state, ms (timeoutMs if longer). */
  readonly cloneTimeoutMs: number;
  /** Execution lag (the "lockstep interval") the primary keeps under by slowing down, ms. */
  readonly lagTargetMs: number;
  /** Lag at which the primary runs at its slowest, ms (greater than lagTargetMs). */
  readonly maxLagMs: number;
  /** Log sent but not acknowledged beyond which the primary stalls, bytes. */
  readonly maxUnackedBytes: number;
  /** The output rule; false only to measure its cost (loading such a file returns a warning). */
  readonly outputRule: boolean;
  /** Instructions between state hashes in the log; 0 for none. */
  readonly hashIntervalInstructions: number;
  /**
   * Where the log and its acknowledgements travel after the clone: `native` (a thread of the addon owns
   * the connection; no JavaScript per batch or per ack) or `js` (the event loop; always so over TLS).
   */
  readonly dataPath: 'native' | 'js';
}

/** `ft.enabled: true` (the default): the key and the arbiter are required. */
export interface FtEnabledConfig extends FtCommonConfig {
  readonly enabled: true;
  readonly key: FtKeyConfig;
  readonly arbiter: ArbiterConfig;
}

/** `ft.enabled: false`: the VM runs alone; key and arbiter are checked when given, not required. */
export interface FtDisabledConfig extends FtCommonConfig {
  readonly enabled: false;
  readonly key: FtKeyConfig | undefined;
  readonly arbiter: ArbiterConfig | undefined;
}

/** The `ft` section: the fault-tolerant pair. Narrow on `enabled`. */
export type FtConfig = FtEnabledConfig | FtDisabledConfig;

/** The `metrics` section: a Prometheus endpoint (none when the section is absent). */
export interface MetricsConfig {
  readonly listen: HostPort;
}

/** A whole validated configuration: frozen, every default filled in, every path absolute. */
export interface LockstepConfig {
  readonly vm: VmConfig;
  readonly ft: FtConfig;
  readonly metrics: MetricsConfig | undefined;
}

/** What {@link validateConfig} and {@link parseConfig} return. */
export interface ValidatedConfig {
  readonly config: LockstepConfig;
  /**
   * Things the caller must print loudly (e.g. `ft.outputRule` is false: a failover may lose or
   * contradict what clients were told). Empty for an ordinary configuration.
   */
  readonly warnings: readonly string[];
}

/** What {@link loadConfig} returns. */
export interface LoadedConfig extends ValidatedConfig {
  /** Absolute path of the file read. */
  readonly source: string;
  /**
   * The logging channel's pre-shared key, read and checked; undefined when no key is configured.
   * Not enumerable, so that logging or serialising the loaded configuration does not print it.
   */
  readonly key: Uint8Array | undefined;
}

/** Accepted ranges of the numeric fields, inclusive. */
export const CONFIG_LIMITS = {
  /** The machine's RAM ends 4 KiB below 2 GiB, so 2048 MiB does not fit. */
  ramMiB: { min: 1, max: 2047 },
  port: { min: 0, max: 65535 },
  guestPort: { min: 1, max: 65535 },
  heartbeatMs: { min: 10, max: 10_000 },
  timeoutMs: { min: 50, max: 60_000 },
  cloneTimeoutMs: { min: 0, max: 600_000 },
  lagTargetMs: { min: 1, max: 60_000 },
  maxLagMs: { min: 1, max: 600_000 },
  maxUnackedBytes: { min: 64 * 1024, max: 4 * 1024 * 1024 * 1024 },
  etcdTimeoutMs: { min: 100, max: 60_000 },
  hashIntervalInstructions: { min: 0, max: Number.MAX_SAFE_INTEGER },
  /** timeoutMs must be at least this many heartbeats. */
  timeoutHeartbeats: 3,
  /** Bytes of key material at least (32 hex digits). */
  keyBytes: 16,
} as const;

/** Defaults applied to absent fields (documented in docs/config.md). */
export const CONFIG_DEFAULTS = {
  vm: {
    ramMiB: 64,
    clock: 'real',
    engine: 'jit',
    devices: {
      rng: false,
      diskMode: 'shared',
      udpHost: '127.0.0.1',
      /** memcached's port: the example key-value guest serves there. */
      guestPort: 11211,
    },
  },
  ft: {
    enabled: true,
    listen: '127.0.0.1:7400',
    heartbeatMs: 100,
    timeoutMs: 600,
    cloneTimeoutMs: 10_000,
    lagTargetMs: 100,
    maxLagMs: 1000,
    maxUnackedBytes: 64 * 1024 * 1024,
    outputRule: true,
    /** The etcd arbiter's own default: its epoch key is `<prefix>arbiter/<vm.id>/epoch`. */
    etcdPrefix: 'lockstep/',
    etcdTimeoutMs: 2000,
    hashIntervalInstructions: 2 ** 26,
    dataPath: 'native',
  },
  metrics: {
    /** The port Prometheus exporters customarily use. */
    listen: '127.0.0.1:9464',
  },
} as const;
