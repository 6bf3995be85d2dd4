// `lockstep debug`: a recorded run served to gdb, forwards and backwards (reverse-stepi, reverse-step,
// reverse-continue), replaying the log exactly; nothing the debugger does changes what is replayed.
import { parseArgs } from 'node:util';
import { EXIT, type CommandIo } from './io.js';
import { UsageError, hostPortOption, parseCount } from './args.js';
import { REPLAY_MACHINE_OPTIONS, openRecording } from './record.js';

export const DEBUG_HELP = `Usage: lockstep debug <run.log> <guest.elf> --gdb <host:port> [options]
       lockstep debug <run.log> --kernel <Image> [--initrd <file>] [--bios <fw.elf>] --gdb <host:port>

Replays a log written by 'lockstep record' under gdb (gdb-multiarch: target remote <host:port>):
registers, memory (read-only: a recording cannot be changed), breakpoints, watchpoints, stepi,
continue, and reverse execution: reverse-stepi, reverse-step, reverse-next, reverse-continue to the
previous breakpoint or watchpoint hit. Reverse execution restores a snapshot the replay took (every
2^20 instructions at first) and replays exactly to the instruction before. See docs/debugging.md.

Options:
  --gdb <host:port>          where the gdb server listens (required; port 0 picks a free port,
                             printed on stderr)
  --checkpoint-interval <n>  instructions between the replay's snapshots at first (default 1048576;
                             it doubles whenever 64 are kept)
  --disk <image>, --net, --rng, --kernel, --initrd, --bios, --dtb, --linux, --append
                             as for 'lockstep replay': the recording's devices and images
  -h, --help                 this help

Exit status: 0 when gdb detached, killed or went away; 64 usage error; 65 damaged or mismatched
log; 66 file not found; 69 the gdb address is taken.
`;

export async function debugCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      gdb: { type: 'string' },
      'checkpoint-interval': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      ...REPLAY_MACHINE_OPTIONS,
    },
  });
  if (values.help) {
    io.stdout.write(DEBUG_HELP);
    return EXIT.ok;
  }
  if (values.gdb === undefined) throw new UsageError('missing --gdb <host:port>');
  const at = hostPortOption('--gdb', values.gdb);
  const interval = values['checkpoint-interval'] === undefined ? undefined : parseCount('checkpoint-interval', values['checkpoint-interval']);
  if (interval === 0n) throw new UsageError('--checkpoint-interval: must be at least 1');
  const opened = openRecording(positionals, values, io, 'debug');
  if (typeof opened === 'number') return opened;
  const { machine, batches } = opened;
  try {
    machine.on('console', (chunk) => io.stdout.write(chunk));
    const [{ ReplayTarget }, { serveGdb }] = await Promise.all([import('../debug/replay-target.js'), import('../debug/server.js')]);
    const target = new ReplayTarget(machine, batches.map((b) => b.bytes), interval === undefined ? {} : { checkpointInterval: interval });
    const address = at.host.includes(':') ? `[${at.host}]` : at.host;
    const how = await serveGdb(target, at.host, at.port, (port) => {
      io.stderr.write(`lockstep: gdb server listening on ${address}:${port}; connect with: gdb-multiarch -ex 'target remote ${address}:${port}'\n`);
    });
    io.stderr.write(`lockstep debug: the debugger ${how === 'close' ? 'went away' : how === 'kill' ? 'ended the session' : 'detached'} at instret ${machine.counters.instret}\n`);
    return EXIT.ok;
  } finally {
    machine.close();
  }
}
