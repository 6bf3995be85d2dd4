// `lockstep standby`: a CLI process started ahead of need by a host agent. It loads what a VM half needs
// (the FT commands and the native addon) and waits; its first line on stdin is the command it is to be
// — `{"argv": ["secondary", "<vm.json>", "--join", …], "cwd": "<dir>"}` — which it then runs exactly as
// a process spawned with that argv would. Re-protection after a host loss, an HA restart and a live
// migration's target then do not wait for Node and lockstep to start on a loaded host
// (docs/cluster.md, "Standby processes"). Process plumbing only; no VM logic.
import { preloadMachineAddon } from '../machine/machine.js';
import { UsageError } from './args.js';
import { EXIT, type CommandIo } from './io.js';
import { exitWithParent } from './lease.js';

export const STANDBY_HELP = `Usage: lockstep standby [--exit-with-parent]

A process a host agent starts ahead of need (not for interactive use): it loads the FT commands and the
native addon, then reads one line from stdin, {"argv": [...], "cwd": "<dir>"}, and runs that command
(primary or secondary) as 'lockstep <argv>' would, in that directory. Further stdin lines go to the
command (the agent's leases, with --lease-stdin). stdin closed before a line: exit 0.

Exit status: the command's; 64 a first line that is not such a request.
`;

/** The command a standby process is given (its first stdin line). */
export interface StandbyRequest {
  argv: string[];
  cwd?: string;
}

/** The verbs a standby process runs (what it preloads). */
const STANDBY_VERBS = new Set(['primary', 'secondary']);

/** Parses a standby's first line; a usage error naming what is wrong. */
export function parseStandbyRequest(line: string): StandbyRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new UsageError(`the first line on stdin is not JSON (${JSON.stringify(line.slice(0, 80))})`);
  }
  const r = v as Partial<StandbyRequest> | null;
  if (typeof r !== 'object' || r === null || !Array.isArray(r.argv) || r.argv.length === 0 || !r.argv.every((a) => typeof a === 'string')) {
    throw new UsageError('the first line must be {"argv": ["primary"|"secondary", ...], "cwd"?: "<dir>"}');
  }
  if (!STANDBY_VERBS.has(r.argv[0]!)) throw new UsageError(`runs primary or secondary, not '${r.argv[0]}'`);
  if (r.cwd !== undefined && typeof r.cwd !== 'string') throw new UsageError('cwd must be a string');
  return { argv: [...r.argv], ...(r.cwd !== undefined ? { cwd: r.cwd } : {}) };
}

/**
 * Reads stdin up to its first newline; what came after it is put back for the command's own reader.
 * Undefined when stdin ends first.
 */
function firstLine(): Promise<string | undefined> {
  return new Promise((resolve) => {
    const stdin = process.stdin;
    let buf = Buffer.alloc(0);
    const done = (line: string | undefined, rest?: Buffer) => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      // Paused, and not holding the process open: a command that reads stdin (--lease-stdin) resumes it.
      stdin.pause();
      (stdin as unknown as { unref?: () => void }).unref?.();
      if (rest !== undefined && rest.length > 0) stdin.unshift(rest);
      resolve(line);
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const nl = buf.indexOf(0x0a);
      if (nl >= 0) done(buf.subarray(0, nl).toString('utf8'), buf.subarray(nl + 1));
      else if (buf.length > 1 << 20) done(buf.subarray(0, 200).toString('utf8'));
    };
    const onEnd = () => done(undefined);
    stdin.on('data', onData);
    stdin.on('end', onEnd);
  });
}

export async function standbyCommand(argv: string[], io: CommandIo): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(STANDBY_HELP);
    return EXIT.ok;
  }
  const unknown = argv.filter((a) => a !== '--exit-with-parent');
  if (unknown.length > 0) throw new UsageError(`unknown option '${unknown[0]}'`);
  if (argv.includes('--exit-with-parent')) exitWithParent();
  // What a VM half loads before it does anything: the FT commands (and through them the machine, the
  // log and the channel) and the addon.
  const [{ dispatch }] = await Promise.all([import('./commands.js'), import('./ft.js')]);
  preloadMachineAddon();
  const line = await firstLine();
  if (line === undefined) return EXIT.ok;
  const req = parseStandbyRequest(line);
  if (req.cwd !== undefined) process.chdir(req.cwd);
  return dispatch(req.argv, io);
}
