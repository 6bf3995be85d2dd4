// The `lockstep` verbs: dispatches to one file per verb, each loaded when it runs (verb.ts maps what a
// verb throws to an exit status). Loaded by main.ts once the user signals are guarded.
import { readFileSync } from 'node:fs';
import { EXIT, type CommandIo } from './io.js';
import { runVerb, type Command } from './verb.js';

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
  return runVerb(verb, load, rest, io);
}
