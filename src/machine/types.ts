// Public value types of the machine API: options, exit reasons, counters. No behaviour here.

/** How the guest's `mtime`/`time` advances. */
export type ClockMode = 'virtual' | 'real';

/**
 * How the hart executes: `interp`, the interpreter alone (portable, the reference); `jit`, a block
 * compiler for hot code in every mode, paged S/U code included (x86-64 Linux hosts), with the
 * interpreter for everything else (CSRs, traps, devices, slow paths). Both give
 * the same state at every stop, so a recording made on one replays on the other.
 */
export type Engine = 'interp' | 'jit';

/** Counters of the block compiler (see {@link Machine.jitStats}). */
export interface JitStats {
  /** Blocks compiled. */
  blocks: number;
  /** Blocks dropped because their code was written, or their page dropped. */
  invalidated: number;
  /** Times the code buffer filled and everything compiled was dropped. */
  flushes: number;
  /** Entries from the interpreter into compiled code. */
  entries: number;
  /** Instructions retired by compiled code. */
  instructions: number;
  /** Of `blocks`: compiled while instruction fetch was translated (Sv32 S- or U-mode code). */
  translatedBlocks: number;
  /** Of `entries`: while instruction fetch was translated. */
  translatedEntries: number;
  /** Of `instructions`: while instruction fetch was translated. */
  translatedInstructions: number;
}

/** Options for {@link Machine}. */
export interface MachineOptions {
  /** Guest RAM in bytes at 0x8000_0000 (default 64 MiB; a whole number of 4 KiB pages, at most 2 GiB - 4 KiB). */
  memory?: number;
  /**
   * `virtual` (default): mtime is derived from instret (10 MHz timebase, one tick per
   * {@link VIRTUAL_INSTRUCTIONS_PER_TICK} instructions, plus time skipped in WFI): fully deterministic.
   * `real`: mtime follows the host's monotonic clock at 10 MHz.
   */
  clock?: ClockMode;
  /**
   * Recording (and so FT) with the real clock: the guest's clock advances in steps of at least this
   * many microseconds while it runs, and only a step is logged, not every read (Linux reads the clock
   * 20–50 times per request; each read was about 9 bytes of log). Timer interrupts still come on time.
   * 0 logs every read. Default 100. A replay follows whatever the recording did.
   */
  clockStepUs?: number;
  /**
   * virtio-mmio devices, placed as on QEMU `virt` (drivers find them by scanning the slots):
   * `net` in slot 0 (IRQ 1) with the `js` back-end (`'frame'` events and {@link Machine.sendFrame}), or
   * with `net.tap` the Linux TAP device of that name (created if absent; needs CAP_NET_ADMIN), whose
   * frames flow natively;
   * `disk` (a raw image file, `disk.path`; `mode: 'separate'` when each half of a pair has its own identical
   * image, so the log carries no read data and a replaying machine uses its own image; `lock`: hold an
   * exclusive lock on the image while the machine is open, so that a second machine opening it with a
   * lock is refused — default true for a separate image, false for a shared one, whose pair's secondary
   * opens the image the primary writes) in slot 1 (IRQ 2); `rng` in slot 2 (IRQ 3). With the virtual
   * clock, entropy is a seeded stream so runs stay reproducible; with the real clock it is the host's.
   */
  devices?: { net?: boolean | { mac?: string; tap?: string }; disk?: { path: string; mode?: 'shared' | 'separate'; lock?: boolean }; rng?: boolean };
  /**
   * The guest's command line, as QEMU's `-append` (at most {@link MAX_CMDLINE_BYTES} bytes, no NUL):
   * a guest reads it through semihosting `SYS_GET_CMDLINE` (the SDK's `ls_cmdline()`). It is
   * configuration, not input: both halves of a pair and a replay must be given the same.
   */
  cmdline?: string;
  /**
   * The execution engine (default `jit`, or the `LOCKSTEP_ENGINE` environment variable when set):
   * `jit` compiles hot code beside the interpreter; on a host without the block compiler (anything but
   * x86-64 Linux), or where its code buffer cannot be mapped, the interpreter runs alone. `interp`: the
   * interpreter alone (the reference). See {@link Machine.engine} for the engine in use. Not
   * guest-visible and not part of a recording: the two give the same counts, stops and state hashes.
   */
  engine?: Engine;
}

/** Longest {@link MachineOptions.cmdline}, in UTF-8 bytes. */
export const MAX_CMDLINE_BYTES = 4096;

/** Host-side receive counters of a machine's virtio-net (see {@link Machine.netStats}). */
export interface NetStats {
  /** Frames waiting on the host for a guest receive buffer now (at most 1024). */
  queued: number;
  /** Frames put into guest receive buffers. */
  delivered: number;
  /** Their bytes (whole Ethernet frames): the guest's network input, which a recording logs. */
  deliveredBytes: number;
  /** Frames dropped: the host queue was full, the guest's driver was not running, or its buffer too small. */
  dropped: number;
}

/** Instruction and branch counters; both are exact 64-bit counts since reset. */
export interface Counters {
  /** Instructions retired (what the guest reads as minstret/instret/mcycle/cycle). */
  instret: bigint;
  /** Branches retired: every retired conditional branch, jal and jalr. */
  branches: bigint;
}

/** Why a call to {@link Machine.run} returned. */
export type ExitReason =
  /** The guest ended itself: test finisher, semihosting exit, or HTIF tohost. */
  | { kind: 'exit'; code: number; via: 'finisher' | 'semihosting' | 'htif' }
  /** A trap the guest cannot handle (mtvec does not point at executable RAM). */
  | { kind: 'trap'; cause: number; pc: number; tval: number }
  /** The instruction budget (or `untilInstret`) was reached exactly. */
  | { kind: 'budget' }
  /** The guest can never make progress again (WFI with no interrupt able to wake it, or a reset/halt request). */
  | { kind: 'halted'; reason: string }
  /** {@link Machine.stop} was called. */
  | { kind: 'stopped' }
  /** Replay only: the machine did something other than what the log recorded; `message` says what and where. */
  | { kind: 'divergence'; message: string }
  /**
   * Replay only: the log ended. `recorded` is how the recording ended (its end record), or `undefined`
   * when the log stops without one (a recording still in progress, or cut short).
   */
  | { kind: 'end-of-log'; recorded: 'exit' | 'trap' | 'halted' | 'budget' | 'stopped' | undefined; code: number }
  /**
   * A debugger's request stopped the run ({@link Machine.setDebug}): a breakpoint (before the instruction
   * at `address` ran), a single step, or a watchpoint (before the instruction at `pc`, which is about to
   * access `address`, runs: as RISC-V debug triggers fire, and as gdb expects of RISC-V targets).
   */
  | { kind: 'debug'; stop: DebugStop; address: number };

/** Why a run stopped for a debugger: see {@link ExitReason}. */
export type DebugStop = 'breakpoint' | 'step' | 'watch' | 'rwatch' | 'awatch';

/** A watched range of virtual addresses: `watch` stops before stores to it, `rwatch` before loads, `awatch` before either. */
export interface Watchpoint {
  kind: 'watch' | 'rwatch' | 'awatch';
  address: number;
  length: number;
}

/** What a debugger asks of a machine's next runs ({@link Machine.setDebug}). */
export interface DebugOptions {
  /** Stop before the instruction at any of these (virtual) pcs executes. */
  breakpoints?: readonly number[];
  watchpoints?: readonly Watchpoint[];
  /** Stop after one instruction (or at a trap handler's first instruction, if it trapped). */
  step?: boolean;
  /**
   * The next run does not stop at a breakpoint or watchpoint at the current pc before it has moved
   * (default true: a resume from a breakpoint or watchpoint stop steps over it). false: one here is hit
   * at once.
   */
  resumeOverBreakpoint?: boolean;
}

/**
 * What a replay run verified of its log. A replay reproduced its recording only when both hold: every
 * event was consumed up to the log's end record (nothing may follow one), and the state hash the
 * recorder logged with the end record matched. A log cut short, or stripped of its final hash, replays
 * as far as it goes but proves nothing about the rest of the run.
 */
export interface ReplayCheck {
  /** The end record was reached and applied: the whole log was consumed. */
  ended: boolean;
  /** A state hash matched right before the end record, at its position: the final state is the recorded one. */
  finalHash: boolean;
}

/**
 * What {@link Machine.run} resolves to: the reason plus the counters and pc at the stop; a replaying
 * machine's runs also say what they verified of the log (`replay`).
 */
export type RunResult = ExitReason & Counters & { pc: number; replay?: ReplayCheck };
