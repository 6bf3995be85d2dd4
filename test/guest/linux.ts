// The committed Linux guest (guest/linux/bin, guest/firmware/bin) for the Linux tests: the manifest,
// unpacking the compressed artifacts after checking their SHA-256, and a QEMU console session that
// waits for output by event (bounded, failing with the tail of the console) and takes typed input.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Machine, RunResult } from '../../src/index.js';
import { QEMU } from '../helpers/qemu.js';
import { GUEST_DIR } from './guests.js';

export const LINUX_DIR = join(GUEST_DIR, 'linux');
export const LINUX_BIN = join(LINUX_DIR, 'bin');
export const FIRMWARE_DIR = join(GUEST_DIR, 'firmware');
export const FIRMWARE_ELF = join(FIRMWARE_DIR, 'bin', 'firmware.elf');
export const SBITEST_ELF = join(FIRMWARE_DIR, 'bin', 'sbitest.elf');

/** What /init prints once user space is up (guest/linux/user/init.c). */
export const MARKER = 'lockstep-linux: init ready';

/**
 * QEMU's CPU trimmed to lockstep's hart: rv32imac + Zicsr + Zifencei, Sv32, no F/D/H, no Zb*, no Sstc,
 * no Zihintpause, so the kernel sees the same `riscv,isa` and takes the same paths (SBI timer) as on
 * lockstep.
 */
export const QEMU_CPU = 'rv32,f=off,d=off,h=off,zba=off,zbb=off,zbc=off,zbs=off,sstc=off,Zihintpause=off';

/** guest/linux/bin/SHA256SUMS as name → hex digest. */
export function manifest(): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of readFileSync(join(LINUX_BIN, 'SHA256SUMS'), 'utf8').split('\n')) {
    const match = /^([0-9a-f]{64}) {2}(\S+)$/.exec(line);
    if (match) m.set(match[2]!, match[1]!);
  }
  return m;
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The kernel Image and the initramfs, unpacked into a fresh directory; throws if a digest differs. */
export interface LinuxArtifacts {
  dir: string;
  image: string;
  initrd: string;
  cleanup(): void;
}

export function unpackArtifacts(): LinuxArtifacts {
  const sums = manifest();
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-linux-'));
  const out = (name: string): string => {
    const packed = readFileSync(join(LINUX_BIN, `${name}.gz`));
    const bytes = gunzipSync(packed);
    const want = sums.get(name);
    if (want === undefined || sha256(bytes) !== want) {
      throw new Error(`guest/linux/bin/${name}.gz unpacks to sha256 ${sha256(bytes)}, SHA256SUMS says ${String(want)}`);
    }
    const path = join(dir, name);
    writeFileSync(path, bytes);
    return path;
  };
  return { dir, image: out('Image'), initrd: out('rootfs.cpio'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface LinuxQemuOptions {
  image: string;
  initrd: string;
  append: string;
  memoryMib?: number;
  /** A device tree to boot with instead of QEMU's own (`-dtb`). */
  dtb?: string;
  /** virtio-net on QEMU's user network in slot 0 (IRQ 1), as lockstep places it. */
  net?: boolean;
  /** virtio-blk on this raw image in slot 1 (IRQ 2), as lockstep places it. */
  disk?: string;
  /** virtio-rng in slot 2 (IRQ 3), as lockstep places it. */
  rng?: boolean;
}

/** The command line, exported so a failure can show exactly what ran. */
export function linuxQemuArgs(o: LinuxQemuOptions): string[] {
  const args = ['-M', 'virt', '-cpu', QEMU_CPU, '-m', `${o.memoryMib ?? 64}M`, '-nographic', '-monitor', 'none', '-serial', 'stdio'];
  args.push('-bios', FIRMWARE_ELF, '-kernel', o.image, '-initrd', o.initrd, '-append', o.append);
  if (o.dtb !== undefined) args.push('-dtb', o.dtb);
  // lockstep's virtio-mmio is version 2 only; QEMU 7.2 defaults to the legacy version 1.
  if (o.net || o.disk !== undefined || o.rng) args.push('-global', 'virtio-mmio.force-legacy=false');
  if (o.net) args.push('-netdev', 'user,id=n0', '-device', 'virtio-net-device,netdev=n0,bus=virtio-mmio-bus.0');
  if (o.disk !== undefined) args.push('-drive', `file=${o.disk},if=none,format=raw,id=d0`, '-device', 'virtio-blk-device,drive=d0,bus=virtio-mmio-bus.1');
  if (o.rng) args.push('-device', 'virtio-rng-device,bus=virtio-mmio-bus.2');
  return args;
}

/**
 * A running QEMU with the guest's console on its stdio. The tty and the kernel's console write line
 * ends as CR LF; `output` and `waitFor` see them as LF.
 */
export class QemuConsole {
  readonly args: string[];
  readonly started = performance.now();
  #child: ChildProcessWithoutNullStreams;
  #raw = '';
  #out = '';
  #waiters: { check: () => boolean }[] = [];
  #exit: Promise<number | null>;
  #exited = false;

  constructor(o: LinuxQemuOptions) {
    this.args = linuxQemuArgs(o);
    this.#child = spawn(QEMU, this.args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const take = (b: Buffer): void => {
      this.#raw += b.toString('latin1');
      this.#out = this.#raw.replaceAll('\r\n', '\n');
      this.#poke();
    };
    this.#child.stdout.on('data', take);
    this.#child.stderr.on('data', take);
    this.#exit = new Promise((resolve) => {
      this.#child.on('close', (code) => {
        this.#exited = true;
        this.#poke();
        resolve(code);
      });
    });
  }

  /** Everything printed so far. */
  get output(): string {
    return this.#out;
  }

  #poke(): void {
    this.#waiters = this.#waiters.filter((w) => !w.check());
  }

  /**
   * Resolves with the output position just past the first match of `pattern` at or after `from`;
   * rejects after `timeoutMs` or when QEMU exits first, quoting the end of the console.
   */
  waitFor(pattern: string | RegExp, timeoutMs: number, from = 0): Promise<{ end: number; ms: number }> {
    const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : pattern;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): boolean => {
        const m = re.exec(this.#out.slice(from));
        if (m) {
          clearTimeout(timer);
          resolve({ end: from + m.index + m[0].length, ms: performance.now() - this.started });
          return true;
        }
        if (this.#exited) {
          clearTimeout(timer);
          reject(new Error(`QEMU exited before ${String(re)} appeared; console tail:\n${this.#out.slice(-2000)}`));
          return true;
        }
        return false;
      };
      if (check()) return;
      const waiter = { check };
      timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`${String(re)} did not appear within ${timeoutMs} ms; console tail:\n${this.#out.slice(-2000)}`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** Types a line on the console. */
  type(line: string): void {
    this.#child.stdin.write(`${line}\n`);
  }

  /** QEMU's exit status; rejects if it is still running after `timeoutMs`. */
  exitCode(timeoutMs: number): Promise<number | null> {
    return Promise.race([
      this.#exit,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`QEMU still running after ${timeoutMs} ms; console tail:\n${this.#out.slice(-2000)}`)), timeoutMs).unref(),
      ),
    ]);
  }

  /** Stops QEMU if it is still running (tests call this in a finally). */
  async kill(): Promise<void> {
    if (!this.#exited) {
      this.#child.kill('SIGKILL');
      await this.#exit;
    }
  }
}

/**
 * A lockstep machine's console as text (CR LF as LF), with bounded waits for patterns while it runs:
 * the counterpart of {@link QemuConsole}. `run()` starts the machine; a wait rejects if the run ends
 * first or the time bound passes, quoting the end of the console.
 */
export class MachineConsole {
  #raw = '';
  #out = '';
  #waiters: { check: () => boolean }[] = [];
  #result: RunResult | undefined;

  constructor(readonly machine: Machine) {
    machine.on('console', (c) => {
      this.#raw += Buffer.from(c).toString('latin1');
      this.#out = this.#raw.replaceAll('\r\n', '\n');
      this.#poke();
    });
  }

  /** Everything printed so far. */
  get output(): string {
    return this.#out;
  }

  /** Runs the machine until it ends (or is stopped); waits fail once it has ended. */
  run(): Promise<RunResult> {
    this.#result = undefined;
    return this.machine.run().then((r) => {
      this.#result = r;
      this.#poke();
      return r;
    });
  }

  #poke(): void {
    this.#waiters = this.#waiters.filter((w) => !w.check());
  }

  /** Resolves with the output position just past the first match of `pattern` at or after `from`. */
  waitFor(pattern: string | RegExp, timeoutMs: number, from = 0): Promise<{ end: number }> {
    const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : pattern;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): boolean => {
        const m = re.exec(this.#out.slice(from));
        if (m) {
          clearTimeout(timer);
          resolve({ end: from + m.index + m[0].length });
          return true;
        }
        if (this.#result) {
          clearTimeout(timer);
          reject(new Error(`the machine ended (${this.#result.kind}) before ${String(re)} appeared; console tail:\n${this.#out.slice(-2000)}`));
          return true;
        }
        return false;
      };
      if (check()) return;
      const waiter = { check };
      timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`${String(re)} did not appear within ${timeoutMs} ms; console tail:\n${this.#out.slice(-2000)}`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }
}

/** The kernel log without printk timestamps (`[    0.123456] `), for comparing two machines' consoles. */
export function withoutTimestamps(console: string): string {
  return console.replace(/^\[\s*\d+\.\d+\] /gm, '');
}
