// `lockstep run --linux --gdb` and `lockstep debug <run.log> --linux --gdb` driven by gdb-multiarch
// --batch with the committed kernel's symbols (guest/linux/bin/vmlinux.sym.gz): breakpoints on kernel
// functions by name at their virtual addresses, kernel variables and arguments read by name through the
// kernel's page tables, and reverse-continue across the boot of a recorded run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { root } from '../helpers/ft-pair.js';
import { gdbBatch, printed, startLockstep, type LockstepGdb } from '../helpers/gdb.js';

const running: LockstepGdb[] = [];
afterEach(() => {
  for (const r of running.splice(0)) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
});

let dir: string;
let symbols: string;
let log: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-gdb-linux-'));
  symbols = join(dir, 'vmlinux.sym');
  writeFileSync(symbols, gunzipSync(readFileSync(join(root, 'guest', 'linux', 'bin', 'vmlinux.sym.gz'))));
  // 25 M instructions on the virtual clock: past the kernel's exec of /init (at about 20.3 M).
  log = join(dir, 'linux.log');
  const r = spawnSync(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'record', '--linux', '--clock', 'virtual', '--max-instructions', '25000000', '-o', log], {
    cwd: root,
    encoding: 'utf8',
    timeout: 240_000,
  });
  // 75: the instruction budget ended the recording, as asked.
  expect(r.status, r.stderr).toBe(75);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function linux(): Promise<LockstepGdb> {
  const l = await startLockstep(['run', '--linux', '--gdb', '127.0.0.1:0']);
  running.push(l);
  return l;
}

/** jiffies before the first tick: INITIAL_JIFFIES = -300 s at the config's HZ = 100, as a u32. */
const INITIAL_JIFFIES = (2 ** 32 - 300 * 100).toString();

describe('lockstep run --linux --gdb with the kernel symbols', () => {
  it('stops at start_kernel by name, with paging on, and reads linux_banner and jiffies by name', async () => {
    const l = await linux();
    // `break *start_kernel`: the symbol's own address (no DWARF, so no prologue to skip, and nothing
    // to analyse in memory that is not mapped yet while the firmware runs).
    const { stdout, stderr } = await gdbBatch(l.port, symbols, [
      'break *start_kernel',
      'continue',
      'printf "PC=%x\\n", $pc',
      'printf "SYM=%x\\n", &start_kernel',
      'printf "PRIV=%d\\n", $priv',
      'printf "SATP=%x\\n", $satp',
      'info symbol $pc',
      'bt 1',
      'printf "BANNER=%s", (char *)&linux_banner',
      'printf "JIFFIES=%u\\n", *(unsigned int *)&jiffies',
      'kill',
    ]);
    const out = `${stdout}\n${stderr}`;
    const pc = printed(stdout, 'PC')[0];
    expect(pc, out).toBeDefined();
    expect(pc).toBe(printed(stdout, 'SYM')[0]);
    // The kernel runs linked at PAGE_OFFSET (0xc0000000) in S-mode with Sv32 on (satp.MODE = bit 31).
    expect(parseInt(pc!, 16)).toBeGreaterThanOrEqual(0xc0000000);
    expect(printed(stdout, 'PRIV')).toEqual(['1']);
    expect(parseInt(printed(stdout, 'SATP')[0]!, 16) >>> 31).toBe(1);
    expect(stdout).toMatch(/^start_kernel in section \.init\.text/m);
    expect(stdout).toMatch(/^#0\s+0x[0-9a-f]+ in start_kernel \(\)/m);
    expect(stdout).toMatch(/^BANNER=Linux version 6\.1\.\d+ \(lockstep@lockstep\)/m);
    expect(printed(stdout, 'JIFFIES')).toEqual([INITIAL_JIFFIES]);
    const { status } = await l.exited;
    expect(status).toBe(130);
  });

  it('stops at kernel_execve once the boot reaches user space and reads the path it executes', async () => {
    const l = await linux();
    const { stdout, stderr } = await gdbBatch(l.port, symbols, [
      'break *kernel_execve',
      'continue',
      'printf "PC=%x\\n", $pc',
      'printf "SYM=%x\\n", &kernel_execve',
      'info symbol $pc',
      // The first argument (a0) is the file name, a kernel virtual address.
      'printf "EXEC=%s\\n", (char *)$a0',
      'kill',
    ]);
    const out = `${stdout}\n${stderr}`;
    const pc = printed(stdout, 'PC')[0];
    expect(pc, out).toBeDefined();
    expect(pc).toBe(printed(stdout, 'SYM')[0]);
    expect(stdout).toMatch(/^kernel_execve in section \.text/m);
    expect(printed(stdout, 'EXEC')).toEqual(['/init']);
    const { status } = await l.exited;
    expect(status).toBe(130);
  });

  it('in a recorded boot, reverse-continues from kernel_execve back to start_kernel and forwards again to the same instret', async () => {
    const l = await startLockstep(['debug', log, '--linux', '--gdb', '127.0.0.1:0']);
    running.push(l);
    const { stdout, stderr } = await gdbBatch(l.port, symbols, [
      'break *kernel_execve',
      'continue',
      'printf "EXEC=%s\\n", (char *)$a0',
      'monitor instret',
      'break *start_kernel',
      'reverse-continue',
      'printf "PC=%x\\n", $pc',
      'printf "SYM=%x\\n", &start_kernel',
      'printf "JIFFIES=%u\\n", *(unsigned int *)&jiffies',
      'monitor instret',
      'continue',
      'info symbol $pc',
      'monitor instret',
      'kill',
    ]);
    const out = `${stdout}\n${stderr}`;
    expect(printed(stdout, 'EXEC'), out).toEqual(['/init']);
    expect(printed(stdout, 'PC')).toEqual(printed(stdout, 'SYM'));
    expect(printed(stdout, 'JIFFIES')).toEqual([INITIAL_JIFFIES]);
    expect(stdout).toMatch(/^kernel_execve in section \.text/m);
    // gdb prints what a monitor command answers on stderr.
    const [atExec, atStart, again] = printed(stderr, 'instret').map((t) => BigInt(t));
    expect(atStart! < atExec!, out).toBe(true);
    expect(again).toBe(atExec);
    const { status, stderr: said } = await l.exited;
    expect(status, said).toBe(0);
  });
});
