// `lockstep run`: run a guest ELF with its console on stdout; the exit status is the guest's.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Machine } from '../machine/machine.js';
import type { LinuxIdentity } from '../machine/linux.js';
import type { RunResult } from '../machine/types.js';
import { EXIT, type CommandIo } from './io.js';
import { UsageError, hostPortOption, parseCount, parseSize } from './args.js';
import { DEVICE_HELP, DEVICE_OPTIONS, parseDevices, startForwards } from './devices.js';
import { BOOT_HELP, BOOT_OPTIONS, parseBoot, type Boot } from './boot.js';
import { forwardStdin } from './console-input.js';

export const RUN_HELP = `Usage: lockstep run <guest.elf> [options]
       lockstep run --kernel <Image> [--initrd <file>] [--append <text>] [--bios <fw.elf>] [options]
       lockstep run --linux [--append <text>] [options]

Runs a RISC-V (RV32IMAC) guest on the QEMU virt board: a bare-metal ELF, or Linux booted as
qemu-system-riscv32 -M virt -bios <fw> -kernel <Image> -initrd <file> -append <text> boots it. The
guest's console (UART and semihosting) goes to stdout; lockstep's own messages go to stderr. When
Linux boots on a terminal, the terminal is the guest's console (Ctrl-A x quits).

Options:
  --memory <size>            guest RAM (default 64M; e.g. 1M, 256M)
  --max-instructions <n>     stop after exactly n instructions (exit status 75)
  --clock <virtual|real>     virtual: time derived from instructions, fully deterministic (default)
                             real: the host's monotonic clock
  --engine <jit|interp>      jit: the block compiler for hot code beside the interpreter (default,
                             or LOCKSTEP_ENGINE; x86-64 Linux hosts, elsewhere the interpreter);
                             interp: the interpreter alone
  --input <file>             bytes fed to the guest's UART receiver ('-': this process's stdin)
  --append <text>            the guest's command line (as QEMU's -append; an ELF guest reads it
                             through semihosting)
  --stats                    print instructions, branches, seconds and MIPS to stderr (and the
                             virtio-net frames delivered to the guest and dropped on the host)
  --gdb <host:port>          wait for gdb (gdb-multiarch: target remote <host:port>) before the
                             first instruction and let it drive the machine: registers, memory,
                             breakpoints, watchpoints, steps (see docs/debugging.md); port 0 picks a
                             free port, printed on stderr
${DEVICE_HELP}${BOOT_HELP}  -h, --help                 this help

Environment:
  LOCKSTEP_STARTUP_TIMING=1  when the guest starts, print on stderr how long after this process
                             started that was: "lockstep: guest starts at <ms> ms after process
                             start (time origin <epoch ms>; <ms> ms of CPU)" (npm run bench --
                             startup reads it)

Exit status: the guest's exit code (finisher, semihosting or HTIF); 64 usage error;
65 invalid ELF or boot image; 66 file not found; 69 a --net host port or the --gdb address is
taken; 70 internal error; 75 instruction budget reached; 76 guest halted (WFI with nothing to wake
it); 77 unhandled guest trap; 130 interrupted, or gdb killed the guest or went away before it
ended (after gdb detaches the guest runs on to its own end). SIGUSR1 and SIGUSR2 are ignored (with a line on stderr).
`;

export async function runCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      memory: { type: 'string' },
      'max-instructions': { type: 'string' },
      clock: { type: 'string' },
      engine: { type: 'string' },
      input: { type: 'string' },
      append: { type: 'string' },
      stats: { type: 'boolean' },
      gdb: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      ...DEVICE_OPTIONS,
      ...BOOT_OPTIONS,
    },
  });
  if (values.help) {
    io.stdout.write(RUN_HELP);
    return EXIT.ok;
  }
  const boot = parseBoot(values, positionals, '<guest.elf>');
  const clock = values.clock ?? 'virtual';
  if (clock !== 'virtual' && clock !== 'real') throw new UsageError(`--clock: '${clock}' must be 'virtual' or 'real'`);
  const engine = values.engine;
  if (engine !== undefined && engine !== 'interp' && engine !== 'jit') throw new UsageError(`--engine: '${engine}' must be 'interp' or 'jit'`);
  const memory = values.memory === undefined ? undefined : parseSize('memory', values.memory);
  const max = values['max-instructions'] === undefined ? undefined : parseCount('max-instructions', values['max-instructions']);
  const input = values.input === undefined || values.input === '-' ? undefined : readFileSync(values.input);
  const gdb = values.gdb === undefined ? undefined : hostPortOption('--gdb', values.gdb);

  const { devices, forwards } = parseDevices(values);
  const machine = new Machine({ ...(memory === undefined ? {} : { memory }), clock, devices, ...(engine ? { engine } : {}), ...bootCmdline(boot) });
  let stopForwards = () => {};
  let stopStdin = () => {};
  try {
    loadBoot(machine, boot);
    machine.on('console', (chunk) => io.stdout.write(chunk));
    stopForwards = await startForwards(machine, forwards, (l) => io.stderr.write(l));
    if (input) machine.input(input);
    if (stdinIsInput(boot, values.input)) stopStdin = forwardStdin(machine, process.stdin, () => machine.stop());
    if (gdb) return await debugLive(machine, gdb, io);
    if (process.env['LOCKSTEP_STARTUP_TIMING'] === '1') io.stderr.write(guestStartLine());
    const { result, seconds } = await runTimed(machine, max);
    stopStdin();
    if (values.stats) {
      const mips = Number(result.instret) / seconds / 1e6;
      io.stderr.write(
        `lockstep: ${result.instret} instructions, ${result.branches} branches, ${seconds.toFixed(3)} s, ${mips.toFixed(1)} MIPS\n`,
      );
      if (devices.net) io.stderr.write(netStatsLine(machine));
    }
    return exitStatus(result, io);
  } finally {
    stopStdin();
    stopForwards();
    machine.close();
  }
}

/**
 * How long after this process started (performance.timeOrigin, which Node sets at process start) the
 * guest is handed its first instruction; the origin as epoch ms lets a parent measure from its spawn().
 * With the CPU time (user + system, all threads) the process has used by then, which load disturbs less.
 */
function guestStartLine(): string {
  const now = performance.now();
  const cpu = process.cpuUsage();
  return `lockstep: guest starts at ${now.toFixed(2)} ms after process start (time origin ${performance.timeOrigin.toFixed(3)}; ${((cpu.user + cpu.system) / 1000).toFixed(2)} ms of CPU)\n`;
}

/** `run --gdb`: serves the machine to gdb; after a detach the guest runs on to its end. */
async function debugLive(machine: Machine, at: { host: string; port: number }, io: CommandIo): Promise<number> {
  // Loaded only for --gdb: a plain run does not pay for the debugger's modules.
  const [{ LiveTarget }, { serveGdb }] = await Promise.all([import('../debug/live-target.js'), import('../debug/server.js')]);
  const target = new LiveTarget(machine);
  const how = await serveGdb(target, at.host, at.port, (port) => {
    io.stderr.write(`lockstep: gdb server listening on ${formatAddress(at.host, port)}; connect with: gdb-multiarch -ex 'target remote ${formatAddress(at.host, port)}'\n`);
  });
  if (how === 'detach' && !target.ended) {
    machine.setDebug(undefined);
    const { result } = await runTimed(machine, undefined);
    return exitStatus(result, io);
  }
  const last = target.lastResult;
  if (target.ended && last) return exitStatus(last, io);
  io.stderr.write(`lockstep: the debugger ${how === 'kill' ? 'killed the guest' : 'went away'} at pc ${hex(machine.pc)} after ${machine.counters.instret} instructions\n`);
  return EXIT.interrupted;
}

function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The Machine option an ELF guest's --append becomes (Linux's goes into the device tree instead). */
export function bootCmdline(boot: Boot): { cmdline?: string } {
  return boot.kind === 'elf' && boot.cmdline !== undefined ? { cmdline: boot.cmdline } : {};
}

/** Loads what `boot` says; returns the Linux boot's identity (for a log), or undefined for an ELF. */
export function loadBoot(machine: Machine, boot: Boot): LinuxIdentity | undefined {
  if (boot.kind === 'elf') {
    machine.load(boot.elf);
    return undefined;
  }
  return machine.loadLinux(boot.options).identity;
}

/** `--input -`, or Linux on a terminal with no --input: the guest's UART reads this process's stdin. */
export function stdinIsInput(boot: Boot, input: string | undefined): boolean {
  return input === '-' || (input === undefined && boot.kind === 'linux' && process.stdin.isTTY === true);
}

/** Runs the machine with Ctrl-C mapped to stop(); returns the result and the run's wall seconds. */
export async function runTimed(machine: Machine, max: bigint | undefined): Promise<{ result: RunResult; seconds: number }> {
  const onSigint = () => machine.stop();
  process.once('SIGINT', onSigint);
  const started = process.hrtime.bigint();
  try {
    const result = await machine.run(max === undefined ? {} : { maxInstructions: max });
    return { result, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

/** The host side of virtio-net, for --stats. */
export function netStatsLine(machine: Machine): string {
  const n = machine.netStats;
  return `lockstep: virtio-net: ${n.delivered} frames delivered to the guest, ${n.dropped} dropped on the host\n`;
}

export function hex(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

export function exitStatus(r: RunResult, io: CommandIo): number {
  switch (r.kind) {
    case 'exit':
      return r.code & 0xff;
    case 'trap':
      io.stderr.write(`lockstep: guest trap with no handler: mcause ${r.cause} at pc ${hex(r.pc)}, mtval ${hex(r.tval)}\n`);
      return EXIT.trap;
    case 'budget':
      io.stderr.write(`lockstep: instruction budget reached at pc ${hex(r.pc)} (${r.instret} instructions)\n`);
      return EXIT.budget;
    case 'halted':
      io.stderr.write(`lockstep: guest halted: ${r.reason} (pc ${hex(r.pc)})\n`);
      return EXIT.halted;
    case 'stopped':
      io.stderr.write(`lockstep: interrupted at pc ${hex(r.pc)} after ${r.instret} instructions\n`);
      return EXIT.interrupted;
    case 'divergence':
      io.stderr.write(`lockstep: divergence: ${r.message}\n`);
      return EXIT.divergence;
    case 'end-of-log':
      io.stderr.write(`lockstep: end of log at pc ${hex(r.pc)} after ${r.instret} instructions\n`);
      return EXIT.ok;
    case 'debug':
      io.stderr.write(`lockstep: stopped for the debugger at pc ${hex(r.pc)} (${r.stop})\n`);
      return EXIT.interrupted;
  }
}
