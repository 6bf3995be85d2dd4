// The Machine façade: one RISC-V virt board whose hart runs on a native thread. Owns the addon
// object, the console ring and the one run in flight; never blocks the event loop.
import { EventEmitter } from 'node:events';
import { MachineStateError, OptionError } from '../errors.js';
import { addon, type NativeMachine, type NativeReport } from '../native/addon.js';
import { ByteRingReader, allocateRing } from '../native/ring.js';
import { parseElf, type ElfImage } from './elf.js';
import { planLinuxBoot, type LinuxBootInfo, type LinuxBootOptions } from './linux.js';
import { MAX_CMDLINE_BYTES, type ClockMode, type Counters, type DebugOptions, type DebugStop, type Engine, type JitStats, type MachineOptions, type NetStats, type RunResult } from './types.js';

/** Guest RAM starts here (QEMU virt). */
export const RAM_BASE = 0x8000_0000;
/** The guest watchdog's register: a 32-bit store there is a pet (lockstep's own device; see {@link Machine.watchdogPets}). */
export const WATCHDOG_BASE = 0x0010_2000;
/** Default guest RAM size: 64 MiB. */
export const DEFAULT_MEMORY = 64 * 1024 * 1024;
/** Largest guest RAM: up to the top of the 32-bit address space. */
export const MAX_MEMORY = 0x8000_0000 - 4096;
/** Recording with the real clock: the guest clock's step, µs ({@link MachineOptions.clockStepUs}). */
export const DEFAULT_CLOCK_STEP_US = 100;
/** Virtual clock: instructions per 10 MHz mtime tick (a nominal 1000 MIPS hart). */
export const VIRTUAL_INSTRUCTIONS_PER_TICK = 100;
const CONSOLE_RING_BYTES = 64 * 1024;

/**
 * Access for the replication port (./replication-port.ts) to a machine's addon object and doorbell. Only
 * src/machine/ uses it (tests/layering checks); the symbol is not exported from the package index.
 */
export const internal = Symbol('lockstep.machine.internal');

export interface MachineInternals {
  native: NativeMachine;
  /** Called on every doorbell, after the console is drained and before a finished run settles. */
  addDrain(fn: () => void): void;
  removeDrain(fn: () => void): void;
  /** Emits outputs the output rule released (or a go-live re-emits) as 'console' and 'frame' events. */
  emitOutputs(o: { console: Uint8Array; frames: Uint8Array[] }): void;
}
const U64_MAX = (1n << 64n) - 1n;

/**
 * Loads the native addon now rather than at the first {@link Machine} (a process started ahead of need,
 * `lockstep standby`, pays for it before it is needed). Throws the addon's load error.
 */
export function preloadMachineAddon(): void {
  addon();
}
/** DebugState::Hit (native/cpu/cpu.h) by value. */
const DEBUG_STOPS: readonly DebugStop[] = ['step', 'breakpoint', 'step', 'watch', 'rwatch', 'awatch'];

/** What {@link Machine.load} put where. */
export interface LoadInfo {
  entry: number;
  segments: { addr: number; size: number }[];
  /** Address of the HTIF `tohost` symbol, when the ELF has one. */
  tohost?: number;
}

/** Options of {@link Machine.run}. */
export interface RunOptions {
  /** Retire at most this many more instructions. */
  maxInstructions?: number | bigint;
  /** Stop when instret reaches exactly this value. */
  untilInstret?: bigint;
}

export interface MachineEvents {
  /** Guest console output (UART TX and semihosting writes), in order. */
  console: [chunk: Uint8Array];
  /** An Ethernet frame the guest transmitted on virtio-net (the `js` back-end: never emitted while replaying, nor while a TAP device or a UdpForwarder takes the frames natively). */
  frame: [frame: Uint8Array];
  /** {@link Machine.close} ran: whatever drives the machine (an FT half, a recorder) must let go of it. */
  close: [];
}

/**
 * A RISC-V RV32IMAC machine on the QEMU `virt` memory map.
 *
 * ```ts
 * const m = new Machine({ memory: 64 << 20 });
 * m.load(await readFile('guest/bin/hello.elf'));
 * m.on('console', (b) => process.stdout.write(b));
 * const r = await m.run();          // { kind: 'exit', code: 0, ... }
 * m.close();
 * ```
 */
export class Machine extends EventEmitter<MachineEvents> {
  /** Guest RAM size in bytes. */
  readonly memory: number;
  /** Clock mode fixed at creation. */
  readonly clock: ClockMode;
  /** The engine in use: `jit` only when it was asked for and this host has the block compiler. */
  readonly engine: Engine;
  readonly #native: NativeMachine;
  readonly #ring: ByteRingReader;
  #pending: { resolve: (r: RunResult) => void; reject: (e: unknown) => void } | undefined;
  #closed = false;
  readonly #drains = new Set<() => void>();
  /** virtio-mmio slots holding a device (net 0, disk 1, rng 2, as on QEMU virt with `bus=virtio-mmio-bus.<n>`). */
  readonly #virtioSlots: number[] = [];

  constructor(options: MachineOptions = {}) {
    super();
    const memory = options.memory ?? DEFAULT_MEMORY;
    if (!Number.isInteger(memory) || memory < 4096 || memory > MAX_MEMORY || memory % 4096 !== 0) {
      throw new OptionError('memory', `must be a whole number of 4 KiB pages between 4 KiB and ${MAX_MEMORY} bytes, got ${String(memory)}`);
    }
    const clock = options.clock ?? 'virtual';
    if (clock !== 'virtual' && clock !== 'real') throw new OptionError('clock', `must be 'virtual' or 'real', got ${String(clock)}`);
    this.memory = memory;
    this.clock = clock;
    const ring = allocateRing(CONSOLE_RING_BYTES);
    this.#ring = new ByteRingReader(ring);
    const { NativeMachine } = addon();
    const d = options.devices ?? {};
    const step = options.clockStepUs ?? DEFAULT_CLOCK_STEP_US;
    if (!Number.isInteger(step) || step < 0 || step > 1_000_000) throw new OptionError('clockStepUs', `must be a whole number of microseconds from 0 to 1000000, got ${String(step)}`);
    const native: ConstructorParameters<typeof NativeMachine>[0] = { ramSize: memory, realClock: clock === 'real', clockStepTicks: step * 10 };
    const engine: unknown = options.engine ?? (process.env.LOCKSTEP_ENGINE || 'jit');
    if (engine !== 'interp' && engine !== 'jit') {
      const from = options.engine === undefined ? 'LOCKSTEP_ENGINE' : 'engine';
      throw new OptionError(from, `must be 'interp' or 'jit', got ${String(engine)}`);
    }
    if (engine === 'jit') native.jit = true;
    if (d.rng) native.rng = true;
    if (d.net) {
      native.net = true;
      const mac = typeof d.net === 'object' ? d.net.mac : undefined;
      const tap = typeof d.net === 'object' ? d.net.tap : undefined;
      if (tap !== undefined) {
        if (!/^[\w.-]{1,15}$/.test(tap)) throw new OptionError('devices.net.tap', `must be an interface name of 1..15 characters, got ${tap}`);
        native.tap = tap;
      }
      if (mac !== undefined) {
        if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) throw new OptionError('devices.net.mac', `must look like 52:54:00:12:34:56, got ${mac}`);
        native.mac = Uint8Array.from(mac.split(':').map((x) => parseInt(x, 16)));
      }
    }
    if (d.disk) {
      if (typeof d.disk.path !== 'string' || d.disk.path === '') throw new OptionError('devices.disk.path', 'must be the path of a raw image file');
      native.disk = d.disk.path;
      if (d.disk.mode !== undefined && d.disk.mode !== 'shared' && d.disk.mode !== 'separate') throw new OptionError('devices.disk.mode', `must be 'shared' or 'separate', got ${String(d.disk.mode)}`);
      if (d.disk.mode === 'separate') native.diskSeparate = true;
      const lock: unknown = d.disk.lock;
      if (lock !== undefined && typeof lock !== 'boolean') throw new OptionError('devices.disk.lock', `must be true or false, got ${String(lock)}`);
      // A separate image is this machine's own, whatever its role: always lock it.
      if (lock ?? d.disk.mode === 'separate') native.diskLock = true;
    }
    if (d.net) this.#virtioSlots.push(0);
    if (d.disk) this.#virtioSlots.push(1);
    if (d.rng) this.#virtioSlots.push(2);
    if (options.cmdline !== undefined) {
      const c: unknown = options.cmdline;
      if (typeof c !== 'string' || c.includes('\0') || Buffer.byteLength(c) > MAX_CMDLINE_BYTES) {
        throw new OptionError('cmdline', `must be a string of at most ${MAX_CMDLINE_BYTES} bytes without NUL`);
      }
      if (c !== '') native.cmdline = c;
    }
    // A disk image that cannot be opened or a TAP device that cannot be attached throws an OptionError
    // naming its own field (built natively through the JS-owned error factory, src/errors.ts nativeError).
    this.#native = new NativeMachine(native, new Uint8Array(ring), () => this.#onDoorbell());
    this.engine = this.#native.jitStats() === null ? 'interp' : 'jit';
  }

  /** Validates an ELF executable and loads it: segments into RAM, pc at its entry, HTIF if it has `tohost`. */
  load(elf: Uint8Array): LoadInfo {
    this.#idle('load');
    const image: ElfImage = parseElf(elf, { base: RAM_BASE, size: this.memory });
    for (const s of image.segments) {
      this.#native.writeMemory(s.addr, s.data);
      if (s.memsz > s.data.length) this.#native.writeMemory(s.addr + s.data.length, new Uint8Array(s.memsz - s.data.length));
    }
    this.#native.setPc(image.entry);
    const tohost = image.symbols.get('tohost');
    if (tohost !== undefined) this.#native.setTohost(tohost);
    const info: LoadInfo = { entry: image.entry, segments: image.segments.map((s) => ({ addr: s.addr, size: s.memsz })) };
    if (tohost !== undefined) info.tohost = tohost;
    return info;
  }

  /**
   * Boots Linux as QEMU 7.2's `-M virt -bios <fw> -kernel <Image> -initrd <f> -append <s>` does: the
   * firmware ELF (default: lockstep's SBI firmware) at its own addresses, the kernel on the first 4 MiB
   * boundary after it, the initrd at kernel + min(RAM / 2, 128 MiB), and a device tree generated from
   * this machine's memory size, virtio devices, command line and initrd range (or the given `dtb`, its
   * `/chosen` filled in) near the top of RAM; then the registers QEMU's reset vector leaves (a0 = hart
   * id 0, a1 = device tree, a2 = `fw_dynamic_info`) and the pc at the firmware's entry, in M-mode. Call
   * it on a machine that has not run. Nothing is written when a check fails.
   *
   * ```ts
   * const m = new Machine({ memory: 64 << 20, devices: { net: true } });
   * m.loadLinux({ ...committedLinux(), append: 'console=ttyS0' });
   * ```
   *
   * @throws {BootError} an invalid kernel, initrd, firmware or device tree, an image that does not fit in
   *   RAM (`ERR_LOCKSTEP_BOOT_NO_ROOM`) or two that overlap (`ERR_LOCKSTEP_BOOT_OVERLAP`)
   */
  loadLinux(options: LinuxBootOptions): LinuxBootInfo {
    this.#idle('loadLinux');
    const plan = planLinuxBoot({ memory: this.memory, virtioSlots: this.#virtioSlots }, options);
    for (const w of plan.writes) this.#native.writeMemory(w.address, w.bytes);
    const set = new Map(plan.registers.map((r) => [r.index, r.value]));
    for (let i = 1; i < 32; i++) this.#native.setRegister(i, set.get(i) ?? 0);
    this.#native.setPc(plan.pc);
    return plan.info;
  }

  /** Copies bytes into guest RAM (throws RangeError outside RAM). */
  writeMemory(addr: number, data: Uint8Array): void {
    this.#idle('writeMemory');
    this.#native.writeMemory(addr >>> 0, data);
  }

  /** Copies bytes out of guest RAM (throws RangeError outside RAM). */
  readMemory(addr: number, length: number): Uint8Array {
    this.#idle('readMemory');
    return this.#native.readMemory(addr >>> 0, length);
  }

  /**
   * The physical address a load or store of the hart would reach at virtual address `va` now (its
   * privilege, MPRV, and Sv32 when `satp` turns paging on), found without side effects: no accessed or
   * dirty bits set, no permission checked. `va` itself without paging; undefined where nothing is mapped.
   */
  translate(va: number): number | undefined {
    this.#idle('translate');
    return this.#native.translate(va >>> 0) ?? undefined;
  }

  /** The program counter. */
  get pc(): number {
    this.#idle('pc');
    return this.#native.getPc();
  }
  set pc(value: number) {
    this.#idle('pc');
    this.#native.setPc(value >>> 0);
  }

  /** x0..x31 as unsigned 32-bit values. */
  registers(): Uint32Array {
    this.#idle('registers');
    return this.#native.getRegisters();
  }
  getRegister(index: number): number {
    const regs = this.registers();
    if (!Number.isInteger(index) || index < 0 || index > 31) throw new RangeError(`register index must be 0..31, got ${index}`);
    return regs[index]!;
  }
  setRegister(index: number, value: number): void {
    this.#idle('setRegister');
    this.#native.setRegister(index, value >>> 0);
  }

  /** Host-side read of a CSR (no privilege checks); undefined if the CSR does not exist. */
  getCsr(csr: number): number | undefined {
    this.#idle('getCsr');
    return this.#native.getCsr(csr) ?? undefined;
  }
  /** Host-side write of a CSR; false if it does not exist or is a counter. */
  setCsr(csr: number, value: number): boolean {
    this.#idle('setCsr');
    return this.#native.setCsr(csr, value >>> 0);
  }

  /** Current privilege mode. */
  get privilege(): 'M' | 'S' | 'U' {
    this.#idle('privilege');
    const p = this.#native.getPrivilege();
    return p === 3 ? 'M' : p === 1 ? 'S' : 'U';
  }

  /** Exact instructions and branches retired since reset. */
  get counters(): Counters {
    this.#idle('counters');
    const [instret, branches] = this.#native.getCounters();
    return { instret, branches };
  }

  /**
   * Instructions retired so far, readable while a run is in progress (then as of the vCPU's last slice
   * end, so it may trail by a slice); exact when idle. What VM monitoring watches advance.
   */
  get progress(): bigint {
    if (this.#closed) throw new MachineStateError('ERR_LOCKSTEP_MACHINE_CLOSED', 'the machine is closed');
    return this.#native.progress();
  }

  /**
   * Pets of the guest watchdog so far: 32-bit stores the guest made at {@link WATCHDOG_BASE} (the guest's
   * own heartbeat, watched by HA VM monitoring's `watchdog` mode). Readable while a run is in progress.
   * Not guest-visible state: a clone or a restored snapshot starts counting from 0.
   */
  get watchdogPets(): bigint {
    if (this.#closed) throw new MachineStateError('ERR_LOCKSTEP_MACHINE_CLOSED', 'the machine is closed');
    return this.#native.watchdogPets();
  }

  /** The block compiler's counters, or `null` with the interpreter alone. Read between runs. */
  jitStats(): JitStats | null {
    this.#idle('jitStats');
    return this.#native.jitStats();
  }

  /** True once {@link close} ran: nothing can be done with the machine any more. */
  get closed(): boolean {
    return this.#closed;
  }

  /** True while a run is in progress. */
  get running(): boolean {
    return this.#pending !== undefined;
  }

  /**
   * Runs the guest on the vCPU thread until it exits, traps fatally, halts, is stopped, or reaches
   * the instruction budget (exactly). The event loop stays free meanwhile.
   */
  run(options: RunOptions = {}): Promise<RunResult> {
    this.#idle('run');
    const { instret } = this.counters;
    let target = U64_MAX;
    if (options.untilInstret !== undefined) {
      if (typeof options.untilInstret !== 'bigint' || options.untilInstret < 0n) throw new OptionError('untilInstret', 'must be a non-negative bigint');
      target = options.untilInstret;
    }
    if (options.maxInstructions !== undefined) {
      const max = BigInt(options.maxInstructions);
      if (max < 0n) throw new OptionError('maxInstructions', `must not be negative, got ${String(options.maxInstructions)}`);
      const t = instret + max;
      if (t < target) target = t > U64_MAX ? U64_MAX : t;
    }
    return new Promise<RunResult>((resolve, reject) => {
      this.#pending = { resolve, reject };
      try {
        this.#native.run(target);
      } catch (err) {
        this.#pending = undefined;
        reject(err);
      }
    });
  }

  /**
   * Attaches a debugger's breakpoints, watchpoints and single step to the next runs, or detaches it
   * (`undefined`). While attached the hart runs one instruction at a time (a few MIPS); detached, the
   * interpreter runs exactly as without this call. A run started next does not stop at a breakpoint or
   * watchpoint at the current pc before it has moved (resuming from such a stop steps over it) unless
   * `resumeOverBreakpoint` is false. What the guest
   * computes never depends on it: the same instructions retire with the same inputs.
   */
  setDebug(options: DebugOptions | undefined): void {
    this.#idle('setDebug');
    if (options === undefined) {
      this.#native.setDebug(null);
      return;
    }
    const bps = Uint32Array.from(options.breakpoints ?? [], (a) => a >>> 0);
    const ws = options.watchpoints ?? [];
    const triples = new Uint32Array(ws.length * 3);
    ws.forEach((w, i) => {
      if (!Number.isInteger(w.length) || w.length < 1 || w.length > 0x1_0000) throw new OptionError('watchpoints.length', `must be 1..65536 bytes, got ${String(w.length)}`);
      triples[i * 3] = w.address >>> 0;
      triples[i * 3 + 1] = w.length;
      triples[i * 3 + 2] = w.kind === 'rwatch' ? 1 : w.kind === 'watch' ? 2 : 3;
    });
    const [instret] = this.#native.getCounters();
    // No pc is odd, so an odd resume pc never matches: nothing is stepped over.
    const resumePc = options.resumeOverBreakpoint === false ? 1 : this.#native.getPc();
    this.#native.setDebug(bps, triples, options.step === true, resumePc, instret);
  }

  /** Asks a run in progress to stop soon (within about a millisecond); it resolves with `kind: 'stopped'`. */
  stop(): void {
    if (!this.#closed) this.#native.stop();
  }

  /** Queues bytes for the guest's UART receiver (delivered at an instruction boundary). */
  input(data: Uint8Array | string): void {
    if (this.#closed) throw new MachineStateError('ERR_LOCKSTEP_MACHINE_CLOSED', 'input: the machine is closed');
    this.#native.input(typeof data === 'string' ? new TextEncoder().encode(data) : data);
  }

  /**
   * Queues an Ethernet frame for the guest's virtio-net. It waits on the host until the guest has a
   * receive buffer posted (oldest first, at most 1024 frames); beyond that, or while the guest's driver
   * is not running, it is dropped and counted in {@link Machine.netStats}.
   */
  sendFrame(frame: Uint8Array): void {
    if (this.#closed) throw new MachineStateError('ERR_LOCKSTEP_MACHINE_CLOSED', 'sendFrame: the machine is closed');
    this.#native.netInput(frame);
  }

  /** Host-side receive counters of virtio-net (readable while running): queued, delivered and dropped frames. */
  get netStats(): NetStats {
    if (this.#closed) throw new MachineStateError('ERR_LOCKSTEP_MACHINE_CLOSED', 'netStats: the machine is closed');
    return this.#native.netStats();
  }

  /**
   * The console stream's position: bytes the guest has written to its console (UART and semihosting)
   * since the machine was made, counted from where the numbering was set to start (readable while
   * running). Held, suppressed and emitted bytes all count, so the halves of a fault-tolerant pair agree
   * on it: it numbers the console like a sequence number, and a sink that keeps positions can drop what
   * a failover repeats. Restoring a snapshot does not change it; set it to continue another machine's
   * numbering (a secondary does, from its clone).
   */
  get consolePosition(): bigint {
    if (this.#closed) throw new MachineStateError('ERR_LOCKSTEP_MACHINE_CLOSED', 'consolePosition: the machine is closed');
    return this.#native.consolePosition();
  }
  set consolePosition(position: bigint) {
    this.#idle('consolePosition');
    if (typeof position !== 'bigint' || position < 0n || position >= 1n << 64n) throw new OptionError('consolePosition', 'must be a bigint in 0..2^64-1');
    this.#native.setConsolePosition(position);
  }

  /** Outputs (frames, disk writes) a replaying machine produced and suppressed. */
  get suppressedOutputs(): number {
    this.#idle('suppressedOutputs');
    return this.#native.suppressedOutputs();
  }

  /** Stops the vCPU thread and frees the machine. A pending run resolves as stopped first. */
  close(): void {
    if (this.#closed) return;
    if (this.#pending) {
      this.#native.stop();
    }
    this.#closed = true;
    this.#native.close();
    this.#drainConsole();
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.reject(new MachineStateError('ERR_LOCKSTEP_MACHINE_CLOSED', 'the machine was closed during a run'));
    this.emit('close');
  }

  /** See {@link internal}. */
  get [internal](): MachineInternals {
    return {
      native: this.#native,
      addDrain: (fn) => this.#drains.add(fn),
      removeDrain: (fn) => this.#drains.delete(fn),
      emitOutputs: (o) => {
        if (o.console.length > 0) this.emit('console', o.console);
        for (const f of o.frames) this.emit('frame', f);
      },
    };
  }

  /**
   * 64-bit hash of the whole machine state (registers, CSRs, counters, devices, RAM), as the recorder
   * logs it: two machines with equal hashes are, for all practical purposes, in the same state.
   */
  stateHash(): bigint {
    this.#idle('stateHash');
    return this.#native.stateHash();
  }

  /**
   * The whole machine (hart, CSRs, counters, devices, clock, RAM) as a versioned binary snapshot. Zero
   * pages are omitted, so a mostly empty 64 MiB machine snapshots to a few kilobytes.
   */
  snapshot(): Uint8Array {
    this.#idle('snapshot');
    return this.#native.snapshot();
  }

  /**
   * Restores a snapshot taken of a machine with the same memory size, clock mode and devices. The whole
   * snapshot is checked (a CRC32C over every byte, then every field) before anything changes: a damaged,
   * old or mismatched snapshot throws a {@link SnapshotError} (`ERR_LOCKSTEP_SNAPSHOT_CORRUPT`, `_VERSION`
   * or `_MISMATCH`) naming the problem and leaves the machine unchanged.
   */
  restore(snapshot: Uint8Array): void {
    this.#idle('restore');
    this.#native.restore(snapshot);
  }

  /**
   * RAM pages (indices of 4 KiB pages from 0x8000_0000) written since the previous call, or since the
   * machine was created: what an iterative pre-copy sends in its next round.
   */
  takeDirtyPages(): Uint32Array {
    this.#idle('takeDirtyPages');
    return this.#native.takeDirtyPages();
  }

  #idle(what: string): void {
    if (this.#closed) throw new MachineStateError('ERR_LOCKSTEP_MACHINE_CLOSED', `${what}: the machine is closed`);
    if (this.#pending) throw new MachineStateError('ERR_LOCKSTEP_MACHINE_BUSY', `${what}: the machine is running; await run() or call stop() first`);
  }

  #drainConsole(): void {
    const bytes = this.#ring.read();
    if (bytes.length > 0) {
      if (!this.#closed) this.#native.consoleDrained();
      this.emit('console', bytes);
    }
  }

  #onDoorbell(): void {
    if (this.#closed) return;
    this.#drainConsole();
    for (const f of this.#native.takeFrames()) this.emit('frame', f);
    for (const fn of this.#drains) fn();
    const report = this.#native.takeReport();
    if (report && this.#pending) {
      // The vCPU pushed its last console bytes before it posted the report, possibly after the drain above
      // (their doorbell then queued behind this call): take them now, so none arrives after the run settles.
      this.#drainConsole();
      const pending = this.#pending;
      this.#pending = undefined;
      pending.resolve(this.#result(report));
    }
  }

  #result(r: NativeReport): RunResult {
    const result = this.#reason(r);
    if (r.replayed) result.replay = { ended: r.logEnded, finalHash: r.finalHash };
    return result;
  }

  #reason(r: NativeReport): RunResult {
    const [instret, branches] = this.#native.getCounters();
    const pc = this.#native.getPc();
    const base = { instret, branches, pc };
    switch (r.kind) {
      case 'exit':
        return { kind: 'exit', code: r.code, via: r.via === 'none' ? 'finisher' : r.via, ...base };
      case 'trap':
        return { kind: 'trap', cause: r.cause, pc: r.pc, tval: r.tval, instret, branches };
      case 'halted':
        return { kind: 'halted', reason: r.reason, ...base };
      case 'stopped':
        return { kind: 'stopped', ...base };
      case 'divergence':
        return { kind: 'divergence', message: r.divergence, ...base };
      case 'end-of-log': {
        const reasons = ['exit', 'trap', 'halted', 'budget', 'stopped'] as const;
        return { kind: 'end-of-log', recorded: reasons[r.endReason], code: r.endCode, ...base };
      }
      case 'debug':
        return { kind: 'debug', stop: DEBUG_STOPS[r.cause] ?? 'step', address: r.tval >>> 0, ...base };
      default:
        return { kind: 'budget', ...base };
    }
  }
}
