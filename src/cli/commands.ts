// The `lockstep` verbs: dispatches to one file per verb and maps errors to exit statuses. Loaded by
// main.ts once the user signals are guarded.
import { readFileSync } from 'node:fs';
import { AddonLoadError, BootError, ElfError, ListenError, LockstepError } from '../errors.js';
import { UsageError } from './args.js';
import { EXIT, type CommandIo } from './io.js';
import { setUserSignalTarget } from './signals.js';

const HELP = `Usage: lockstep <command> [options]

lockstep keeps a virtual machine alive through the loss of its host: a RISC-V guest runs on an
interpreted CPU whose every non-deterministic input can be logged and replayed.

Commands:
  run <guest.elf>                 run a guest; its console on stdout, its exit code as the exit status
                                  (--gdb H:P: under gdb-multiarch)
  run --kernel <Image> …          boot Linux as QEMU -M virt does (--initrd, --append, --bios);
                                  run --linux boots the committed guest
  record <guest.elf> -o <log>     run a guest and log every non-deterministic input (or --kernel …)
  replay <log> <guest.elf>        replay a log to the bit-identical final state (exit 1 on divergence)
  debug <log> <guest.elf> --gdb H:P
                                  serve a recorded run to gdb, with reverse execution
  primary <vm.json>               run a VM as the primary of a fault-tolerant pair
  secondary <vm.json> --join H:P  join a primary as its secondary; go live if it is lost
  ft <operation> <vm.json>        status, test-failover, restart-secondary, disable, enable, suspend…
  agent --id <host> --store <s>   run a host's agent: starts and reports the VM halves the manager asks for
  manager --store <s>             lead the cluster: place VMs, re-protect them after failures, drain hosts
  cluster <command> --store <s>   the cluster's status, create-vm, delete-vm, maintenance, events
  standby                         (started by an agent) a process ready to become a VM half
  demo                            a fault-tolerant kvserver (--linux: Linux + kvd over TCP), a client load, SIGKILL of the primary

Run 'lockstep <command> --help' for the options of a command.
`;

type Command = (argv: string[], io: CommandIo) => Promise<number>;
// Each verb's module is imported when that verb runs: `lockstep run` loads neither the FT pair nor the
// cluster (nor their etcd and gRPC clients).
const commands: Record<string, () => Promise<Command>> = {
  run: async () => (await import('./run.js')).runCommand,
  record: async () => (await import('./record.js')).recordCommand,
  replay: async () => (await import('./record.js')).replayCommand,
  debug: async () => (await import('./debug.js')).debugCommand,
  primary: async () => (await import('./ft.js')).primaryCommand,
  secondary: async () => (await import('./ft.js')).secondaryCommand,
  ft: async () => (await import('./ft.js')).ftCommand,
  agent: async () => (await import('./agent.js')).agentCommand,
  manager: async () => (await import('./manager.js')).managerCommand,
  cluster: async () => (await import('./cluster.js')).clusterCommand,
  demo: async () => (await import('./demo.js')).demoCommand,
  standby: async () => (await import('./standby.js')).standbyCommand,
};

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Runs the verb `argv[0]` with the rest of `argv` and returns the exit status. */
export async function dispatch(argv: string[], io: CommandIo): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help') {
    io.stdout.write(HELP);
    return verb === undefined ? EXIT.usage : EXIT.ok;
  }
  if (verb === '--version' || verb === '-v') {
    io.stdout.write(`${version()}\n`);
    return EXIT.ok;
  }
  const load = Object.hasOwn(commands, verb) ? commands[verb] : undefined;
  if (!load) {
    io.stderr.write(`lockstep: unknown command '${verb}'\n\n${HELP}`);
    return EXIT.usage;
  }
  // Until the verb says otherwise (a primary does), SIGUSR1 and SIGUSR2 are ignored and logged.
  setUserSignalTarget({ role: `lockstep ${verb}` });
  try {
    return await (await load())(rest, io);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (err instanceof UsageError || code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      io.stderr.write(`lockstep ${verb}: ${(err as Error).message}\nRun 'lockstep ${verb} --help' for usage.\n`);
      return EXIT.usage;
    }
    if (code === 'ENOENT' || code === 'EISDIR' || code === 'EACCES') {
      io.stderr.write(`lockstep ${verb}: ${(err as Error).message}\n`);
      return EXIT.noInput;
    }
    if (code?.startsWith('ERR_LOCKSTEP_LOG_') || code?.startsWith('ERR_LOCKSTEP_SNAPSHOT_')) {
      io.stderr.write(`lockstep ${verb}: ${(err as Error).message}\n`);
      return EXIT.dataErr;
    }
    // The logging channel's handshake: the peer refused our key (or we its), or nothing usable answered.
    if (code === 'ERR_LOCKSTEP_PROTOCOL_AUTH') {
      io.stderr.write(`lockstep ${verb}: ${(err as Error).message}\n`);
      return EXIT.denied;
    }
    if (code?.startsWith('ERR_LOCKSTEP_PROTOCOL_')) {
      io.stderr.write(`lockstep ${verb}: ${(err as Error).message}\n`);
      return EXIT.unavailable;
    }
    // The arbiter or the cluster store: unreachable is not a usage error, refused credentials not either.
    if (code === 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE' || code === 'ERR_LOCKSTEP_STORE_UNAVAILABLE') {
      io.stderr.write(`lockstep ${verb}: ${(err as Error).message}\n`);
      return EXIT.unavailable;
    }
    if (code === 'ERR_LOCKSTEP_ARBITER_DENIED' || code === 'ERR_LOCKSTEP_STORE_DENIED') {
      io.stderr.write(`lockstep ${verb}: ${(err as Error).message}\n`);
      return EXIT.denied;
    }
    if (code === 'ERR_LOCKSTEP_ARBITER_CORRUPT' || code === 'ERR_LOCKSTEP_STORE_CORRUPT') {
      io.stderr.write(`lockstep ${verb}: ${(err as Error).message}\n`);
      return EXIT.dataErr;
    }
    if (err instanceof ListenError || code === 'ERR_LOCKSTEP_METRICS_LISTEN') {
      io.stderr.write(`lockstep ${verb}: ${(err as Error).message}\n`);
      return EXIT.unavailable;
    }
    if (err instanceof BootError) {
      // Images missing from the package are like a missing file; a bad command line is a usage error.
      io.stderr.write(`lockstep ${verb}: ${err.message}\n`);
      return err.code === 'ERR_LOCKSTEP_BOOT_IMAGES_MISSING' ? EXIT.noInput : err.code === 'ERR_LOCKSTEP_BOOT_APPEND_INVALID' ? EXIT.usage : EXIT.dataErr;
    }
    if (err instanceof ElfError) {
      io.stderr.write(`lockstep ${verb}: invalid ELF: ${err.message}\n`);
      return EXIT.dataErr;
    }
    if (err instanceof AddonLoadError || err instanceof LockstepError) {
      io.stderr.write(`lockstep ${verb}: ${err.message}\n`);
      return err instanceof AddonLoadError ? EXIT.software : EXIT.usage;
    }
    io.stderr.write(`lockstep ${verb}: internal error: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT.software;
  }
}
