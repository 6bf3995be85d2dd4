// Driving the GDB server as a user does: a `lockstep run --gdb` / `lockstep debug --gdb` process and
// Debian's gdb-multiarch in batch mode against it; plus parsers for what gdb prints.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { root } from './ft-pair.js';

export const GDB = 'gdb-multiarch';

export interface LockstepGdb {
  port: number;
  child: ChildProcess;
  /** Resolves when the process exits: its status and everything it printed. */
  exited: Promise<{ status: number | null; stdout: string; stderr: string }>;
}

/** Starts `lockstep <args>` (which must include `--gdb 127.0.0.1:0`) and waits for its listening line. */
export function startLockstep(args: string[]): Promise<LockstepGdb> {
  const child = spawn(process.execPath, [join(root, 'dist', 'cli', 'main.js'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
  const exited = new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    child.once('exit', (status) => {
      // 'exit' can come before the pipes are drained: wait for 'close' too.
      child.once('close', () => resolve({ status, stdout, stderr }));
    });
  });
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString('latin1');
      const m = /gdb server listening on 127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) resolve({ port: Number(m[1]), child, exited });
    });
    void exited.then((e) => reject(new Error(`lockstep exited (${e.status}) before listening: ${e.stderr}`)));
  });
}

/**
 * Runs gdb-multiarch --batch against 127.0.0.1:port with `elf`'s symbols, then `commands`. Resolves
 * with what it printed (gdb's own status is not the guest's, so it is not checked here).
 */
export function gdbBatch(port: number, elf: string, commands: string[]): Promise<{ stdout: string; stderr: string }> {
  const args = ['--batch', '-nx', '-ex', 'set architecture riscv:rv32', '-ex', 'set pagination off', '-ex', 'set confirm off', '-ex', `file ${elf}`, '-ex', `target remote 127.0.0.1:${port}`];
  for (const c of commands) args.push('-ex', c);
  return new Promise((resolve, reject) => {
    // The timeout bounds a hung gdb; a passing test never waits it out.
    execFile(GDB, args, { cwd: root, timeout: 240_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && (err as { killed?: boolean }).killed) reject(new Error(`gdb hung: ${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** Every `KEY=value` line gdb printed with printf (in order), e.g. `printf "PC=%x\n", $pc`. */
export function printed(out: string, key: string): string[] {
  return [...out.matchAll(new RegExp(`^${key}=(\\S+)$`, 'gm'))].map((m) => m[1]!);
}

/** The registers in gdb's `info registers` output (names as gdb prints them: ra, sp, …, pc). */
export function infoRegisters(out: string): Map<string, number> {
  const regs = new Map<string, number>();
  for (const m of out.matchAll(/^(zero|ra|sp|gp|tp|t[0-6]|fp|s[0-9]|s1[01]|a[0-7]|pc)\s+0x([0-9a-f]+)/gm)) {
    regs.set(m[1]!, parseInt(m[2]!, 16));
  }
  return regs;
}

/** gdb's names for x0..x31, by index. */
export const ABI = ['zero', 'ra', 'sp', 'gp', 'tp', 't0', 't1', 't2', 'fp', 's1', 'a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9', 's10', 's11', 't3', 't4', 't5', 't6'];
