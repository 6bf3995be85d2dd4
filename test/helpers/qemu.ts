// QEMU as the differential-testing oracle: runs a guest ELF on `qemu-system-riscv32 -M virt` and
// returns its console output and exit status. Every run is bounded by a timeout that kills QEMU.
import { spawn, spawnSync } from 'node:child_process';

/** The QEMU binary; override with LOCKSTEP_QEMU to test against another build. */
export const QEMU = process.env.LOCKSTEP_QEMU ?? 'qemu-system-riscv32';

let available: boolean | undefined;

/** Whether the QEMU binary can be started here (checked once per process). */
export function qemuAvailable(): boolean {
  if (available === undefined) {
    const r = spawnSync(QEMU, ['--version'], { stdio: 'ignore', timeout: 10_000 });
    // Slow to answer on a loaded machine is not absent (that would skip the oracle's tests silently).
    available = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT' || (r.error === undefined && r.status === 0);
  }
  return available;
}

export interface QemuRunOptions {
  /** Kill QEMU and reject after this long. */
  timeoutMs: number;
  /**
   * Enable RISC-V semihosting. Its console output goes to the same multiplexed chardev as the UART,
   * so the two interleave in guest order on stdout (without `chardev=`, QEMU 7.2 writes
   * semihosting output to its own stderr).
   */
  semihosting?: boolean;
}

export interface QemuRunResult {
  /** Everything the guest wrote to its console, decoded as latin1 so no byte is lost or merged. */
  stdout: string;
  /** QEMU's exit status: the finisher's code (0x5555 → 0, code<<16|0x3333 → code) or the semihosting exit. */
  exitCode: number;
}

/** The command line, exported so test failures can show exactly what ran. */
export function qemuArgs(elfPath: string, semihosting: boolean): string[] {
  const base = ['-M', 'virt', '-bios', 'none', '-nographic', '-monitor', 'none'];
  const consoleArgs = semihosting
    ? ['-chardev', 'stdio,id=con0,mux=on', '-serial', 'chardev:con0', '-semihosting-config', 'enable=on,target=native,chardev=con0']
    : ['-serial', 'stdio'];
  return [...base, ...consoleArgs, '-kernel', elfPath];
}

/** Runs `elfPath` under QEMU until it exits; rejects on timeout (after killing QEMU) or a signal. */
export function runUnderQemu(elfPath: string, options: QemuRunOptions): Promise<QemuRunResult> {
  const args = qemuArgs(elfPath, options.semihosting ?? false);
  return new Promise((resolve, reject) => {
    // stdin ignored: QEMU's stdio chardev would otherwise read (and echo) the test runner's input.
    const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('latin1');
      const stderr = Buffer.concat(err).toString('utf8').trim();
      if (timedOut) {
        reject(new Error(`${QEMU} ${args.join(' ')}: killed after ${options.timeoutMs} ms; output so far: ${JSON.stringify(stdout.slice(-500))}`));
      } else if (code === null) {
        reject(new Error(`${QEMU} ${args.join(' ')}: died of ${signal ?? 'unknown signal'}; stderr: ${stderr}`));
      } else {
        resolve({ stdout, exitCode: code });
      }
    });
  });
}
