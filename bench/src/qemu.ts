// Times a guest ELF under qemu-system-riscv32 (TCG) as a whole process: spawn to exit, wall clock.
// QEMU's own startup is removed later by subtracting the median time of hello.elf.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';

export const QEMU = process.env.LOCKSTEP_QEMU ?? 'qemu-system-riscv32';

export interface QemuTiming {
  seconds: number;
  exitCode: number | null;
  stdoutBytes: number;
  stdoutSha256: string;
}

/** QEMU's version line, or undefined when it cannot be started. */
export function qemuVersion(): string | undefined {
  const r = spawnSync(QEMU, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined || r.status !== 0) return undefined;
  return r.stdout.split('\n')[0]?.trim();
}

export function qemuArgs(elfPath: string): string[] {
  return ['-M', 'virt', '-bios', 'none', '-nographic', '-monitor', 'none', '-serial', 'stdio', '-kernel', elfPath];
}

/** Runs the ELF to completion under QEMU; rejects on a signal or after `timeoutMs`. */
export function timeQemu(elfPath: string, timeoutMs = 300_000): Promise<QemuTiming> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const start = process.hrtime.bigint();
    const child = spawn(QEMU, qemuArgs(elfPath), { stdio: ['ignore', 'pipe', 'ignore'] });
    child.stdout.on('data', (b: Buffer) => {
      hash.update(b);
      bytes += b.length;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    // 'exit' (not 'close') so the time is the process lifetime, not the pipe drain.
    let exited: { code: number | null; signal: NodeJS.Signals | null; end: bigint } | undefined;
    child.on('exit', (code, signal) => {
      exited = { code, signal, end: process.hrtime.bigint() };
    });
    child.on('close', () => {
      clearTimeout(timer);
      if (exited === undefined) return reject(new Error('qemu: closed without exiting'));
      if (exited.code === null) return reject(new Error(`qemu ${elfPath}: died of ${exited.signal ?? 'unknown signal'}`));
      resolve({
        seconds: Number(exited.end - start) / 1e9,
        exitCode: exited.code,
        stdoutBytes: bytes,
        stdoutSha256: hash.digest('hex'),
      });
    });
  });
}
