// `lockstep record` and `lockstep replay`: a run recorded to a log file, and the log replayed offline to
// a bit-identical final state. The two halves mirror each other as recorder.ts and replayer.ts do.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Machine, Recorder, Replayer, checkLinuxIdentity } from '../index.js';
import { DEFAULT_HASH_INTERVAL } from '../log/recorder.js';
import { checkLog, type LogSummary } from '../log/check.js';
import { LogReader, LogWriter, type BatchView, type LogMetadata } from '../log/format.js';
import { UsageError, parseCount, parseSize } from './args.js';
import { DEVICE_HELP, DEVICE_OPTIONS, parseDevices, startForwards } from './devices.js';
import { BOOT_HELP, BOOT_OPTIONS, parseBoot } from './boot.js';
import { forwardStdin } from './console-input.js';
import { EXIT, type CommandIo } from './io.js';
import { bootCmdline, exitStatus, hex, loadBoot, runTimed, stdinIsInput } from './run.js';

const BUDGET_BYTES_PER_SECOND = 125_000_000; // the 1 Gbit/s logging budget

export const RECORD_HELP = `Usage: lockstep record <guest.elf> -o <run.log> [options]
       lockstep record --kernel <Image> [--initrd <file>] [--append <text>] -o <run.log> [options]
       lockstep record --linux -o <run.log> [options]

Runs a guest like 'lockstep run' while logging every non-deterministic input (clock reads, timer
interrupts, UART input) at its exact instruction position, so that 'lockstep replay' can reproduce the
run bit for bit. The log's header names the guest ELF (or, for Linux, the firmware, kernel, initrd and
device tree) by SHA-256 and keeps the command line, so a replay with other images is refused.

Options:
  -o, --output <file>        the log file to write (required)
  --memory <size>            guest RAM (default 64M)
  --clock <real|virtual>     real (default): the host clock, logged; virtual: derived from instructions
  --input <file>             bytes fed to the guest's UART receiver (logged where they arrive; '-': stdin)
  --append <text>            the guest's command line (as QEMU's -append; kept in the log for replay)
  --max-instructions <n>     stop after exactly n instructions
  --hash-interval <n>        log a state hash every n instructions (default ${DEFAULT_HASH_INTERVAL}; 0: only at the end)
  --stats                    print counters, the final state hash (what a replay prints), seconds, MIPS and log
                             bandwidth (vs the 1 Gbit/s budget) to stderr
${DEVICE_HELP}${BOOT_HELP}  -h, --help                 this help

Exit status: as 'lockstep run' (the guest's exit code, 75 budget, 77 trap, ...).
`;

export const REPLAY_HELP = `Usage: lockstep replay <run.log> <guest.elf> [options]
       lockstep replay <run.log> --kernel <Image> [--initrd <file>] [--bios <fw.elf>] [options]
       lockstep replay <run.log> --linux [options]

Replays a log written by 'lockstep record' on the same guest ELF, or the same Linux images (the
command line comes from the log). The guest's console output is reproduced on stdout; the final state
hash and counters go to stderr. Every record is checked before anything runs: nothing may follow the
end record, and the periodic state hashes the log promises (--hash-interval of the recording) must all
be there; Linux images that differ from the recording's are refused, naming which.

Options:
  --stats                    also print seconds and MIPS
  --disk <image>             the recording had a disk: an image of the same size (only read for its
                             size; the log carries every read, and a replay never writes)
  --net, --rng               the recording had virtio-net / virtio-rng (the device set must match)
  --kernel, --initrd, --bios, --dtb, --linux
                             the Linux images of the recording (as for 'lockstep record')
  --append <text>            the recording's command line (default: the one in the log; must match)
  -h, --help                 this help

Exit status: 0 the replay reproduced the recording: it consumed the whole log up to its end record,
every event at its position, and the final state hash matched; 1 divergence (a report names the first
differing event); 3 unverifiable: the log has no end record (a recording cut short or still being
written) or no final state hash, so the replay ran as far as the log goes but cannot prove it
reproduced the run; 65 damaged or mismatched log; 66 file not found; 130 interrupted.
`;

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function recordCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' },
      memory: { type: 'string' },
      clock: { type: 'string' },
      input: { type: 'string' },
      append: { type: 'string' },
      'max-instructions': { type: 'string' },
      'hash-interval': { type: 'string' },
      stats: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...DEVICE_OPTIONS,
      ...BOOT_OPTIONS,
    },
  });
  if (values.help) {
    io.stdout.write(RECORD_HELP);
    return EXIT.ok;
  }
  const boot = parseBoot(values, positionals, '<guest.elf>');
  if (!values.output) throw new UsageError('missing -o <run.log>');
  const clock = values.clock ?? 'real';
  if (clock !== 'virtual' && clock !== 'real') throw new UsageError(`--clock: '${clock}' must be 'real' or 'virtual'`);
  const memory = values.memory === undefined ? 64 * 1024 * 1024 : parseSize('memory', values.memory);
  const max = values['max-instructions'] === undefined ? undefined : parseCount('max-instructions', values['max-instructions']);
  const hashInterval = values['hash-interval'] === undefined ? DEFAULT_HASH_INTERVAL : Number(parseCount('hash-interval', values['hash-interval']));
  const input = values.input === undefined || values.input === '-' ? undefined : readFileSync(values.input);

  const { devices, forwards } = parseDevices(values);
  const { cmdline } = bootCmdline(boot);
  const machine = new Machine({ memory, clock, devices, ...(cmdline === undefined || cmdline === '' ? {} : { cmdline }) });
  let writer: LogWriter | undefined;
  let stopForwards = () => {};
  let stopStdin = () => {};
  try {
    const linux = loadBoot(machine, boot);
    machine.on('console', (chunk) => io.stdout.write(chunk));
    stopForwards = await startForwards(machine, forwards, (l) => io.stderr.write(l));
    const meta: LogMetadata = { lockstep: packageVersion(), memory, clock, elfSha256: boot.kind === 'elf' ? sha256(boot.elf) : linux!.biosSha256, hashInterval };
    if (cmdline !== undefined && cmdline !== '') meta.cmdline = cmdline;
    if (linux) meta.linux = linux;
    writer = LogWriter.create(values.output, meta);
    const recorder = new Recorder(machine, { hashInterval });
    const w = writer;
    recorder.on('batch', (batch) => w.write(batch));
    if (input) machine.input(input);
    if (stdinIsInput(boot, values.input)) stopStdin = forwardStdin(machine, process.stdin, () => machine.stop());
    const { result, seconds } = await runTimed(machine, max);
    stopStdin();
    recorder.finish(result);
    writer.close();
    if (values.stats) {
      const bps = recorder.bytes / seconds;
      io.stderr.write(
        `lockstep: ${result.instret} instructions, ${result.branches} branches, state hash 0x${machine.stateHash().toString(16).padStart(16, '0')}, ` +
          `${seconds.toFixed(3)} s, ${(Number(result.instret) / seconds / 1e6).toFixed(1)} MIPS\n` +
          `lockstep: log ${recorder.bytes} bytes in ${recorder.batches} batches, ${(bps / 1e3).toFixed(1)} kB/s = ` +
          `${((bps * 8) / 1e6).toFixed(3)} Mbit/s (${((bps / BUDGET_BYTES_PER_SECOND) * 100).toFixed(4)} % of the 1 Gbit/s budget)\n`,
      );
    }
    return exitStatus(result, io);
  } finally {
    stopStdin();
    stopForwards();
    writer?.close();
    machine.close();
  }
}

/** How a replay (and `lockstep debug`) is told the recorded machine's devices and boot: as the recording had them. */
export const REPLAY_MACHINE_OPTIONS = {
  disk: { type: 'string' },
  net: { type: 'boolean' },
  rng: { type: 'boolean' },
  append: { type: 'string' },
  ...BOOT_OPTIONS,
} as const;

export async function replayCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      stats: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...REPLAY_MACHINE_OPTIONS,
    },
  });
  if (values.help) {
    io.stdout.write(REPLAY_HELP);
    return EXIT.ok;
  }
  const opened = openRecording(positionals, values, io, 'replay');
  if (typeof opened === 'number') return opened;
  const { machine, batches, summary } = opened;
  try {
    machine.on('console', (chunk) => io.stdout.write(chunk));
    const replayer = new Replayer(machine);
    for (const b of batches) replayer.feed(b.bytes);
    replayer.end();
    const { result, seconds } = await runTimed(machine, undefined);
    if (result.kind === 'divergence') {
      io.stderr.write(`lockstep replay: DIVERGENCE: ${result.message}\n`);
      io.stderr.write(`lockstep replay: stopped at instret ${result.instret}, branches ${result.branches}, pc ${hex(result.pc)}\n`);
      return EXIT.divergence;
    }
    if (result.kind === 'stopped') return exitStatus(result, io);
    const hash = machine.stateHash();
    const outcome =
      result.kind === 'exit'
        ? `guest exit ${result.code}`
        : result.kind === 'end-of-log'
          ? `end of log (recording ended: ${result.recorded ?? 'without an end record'})`
          : result.kind === 'halted'
            ? `guest halted (${result.reason})`
            : result.kind;
    io.stderr.write(
      `lockstep replay: ${outcome}; ${result.instret} instructions, ${result.branches} branches, state hash 0x${hash.toString(16).padStart(16, '0')}\n`,
    );
    if (values.stats) io.stderr.write(`lockstep replay: ${seconds.toFixed(3)} s, ${(Number(result.instret) / seconds / 1e6).toFixed(1)} MIPS\n`);
    const check = result.replay;
    if (check?.ended && check.finalHash) return EXIT.ok;
    const why = !check?.ended
      ? summary.end === undefined
        ? `the log ends at instret ${summary.lastInstret} without an end record (a recording cut short or still being written)`
        : `the replay stopped at instret ${result.instret} (${result.kind}) before the log's end record at instret ${summary.end.instret}`
      : 'the end record has no state hash before it at its position';
    io.stderr.write(`lockstep replay: UNVERIFIED: ${why}; the replay cannot prove it reproduced the recording\n`);
    return EXIT.unverifiable;
  } finally {
    machine.close();
  }
}

/** What `replay` and `debug` take: a log and the guest it was recorded from, checked against each other. */
export interface RecordingArgs {
  disk?: string | undefined;
  net?: boolean | undefined;
  rng?: boolean | undefined;
  append?: string | undefined;
}

/**
 * Opens `<run.log>` and its guest (the rest of `positionals` and the boot options in `values`): the whole
 * log validated first, then a machine made as the recording's was and loaded with the same guest, not yet
 * replaying. Returns an exit status when the guest is not the one recorded.
 */
export function openRecording(
  positionals: string[],
  values: RecordingArgs & Parameters<typeof parseBoot>[0],
  io: CommandIo,
  verb: string,
): { machine: Machine; batches: BatchView[]; summary: LogSummary; logPath: string } | number {
  const [logPath, ...rest] = positionals;
  if (logPath === undefined) throw new UsageError('expected <run.log> and the guest (<guest.elf>, --kernel or --linux)');
  const reader = LogReader.open(logPath);
  let batches: BatchView[];
  let summary: LogSummary;
  try {
    // Validate the whole log first: replay never applies a damaged batch, and a damaged log is
    // reported before anything runs.
    batches = [...reader.batches()];
    summary = checkLog(reader.meta, batches);
  } finally {
    reader.close();
  }
  const meta = reader.meta;
  // A Linux recording's command line is in its log: it is the default, not --linux's.
  const boot = parseBoot({ ...values, append: values.append ?? meta.linux?.append ?? '' }, rest, '<guest.elf>');
  if (meta.linux && boot.kind === 'elf') {
    throw new UsageError(`${logPath} is a recording of Linux: replay it with the same --kernel/--initrd/--bios (or --linux), not an ELF`);
  }
  if (!meta.linux && boot.kind === 'linux') throw new UsageError(`${logPath} is a recording of an ELF guest: give that <guest.elf>, not a kernel`);
  if (boot.kind === 'elf' && meta.elfSha256 !== sha256(boot.elf)) {
    io.stderr.write(`lockstep ${verb}: ${boot.path} is not the program ${logPath} was recorded from (SHA-256 differs)\n`);
    return EXIT.dataErr;
  }
  const devices = {
    ...(values.disk === undefined ? {} : { disk: { path: values.disk } }),
    ...(values.net ? { net: true } : {}),
    ...(values.rng ? { rng: true } : {}),
  };
  const machine = new Machine({ memory: meta.memory, clock: meta.clock, devices, ...(meta.cmdline === undefined ? {} : { cmdline: meta.cmdline }) });
  try {
    const linux = loadBoot(machine, boot);
    if (meta.linux && linux) checkLinuxIdentity(meta.linux, linux, logPath);
  } catch (err) {
    machine.close();
    throw err;
  }
  return { machine, batches, summary, logPath };
}
