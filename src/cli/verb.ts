// Runs one verb of the CLI and maps what it throws to an exit status and a line on stderr. Shared by
// commands.ts (every verb, each loaded when it runs) and bin.ts (the `lockstep` executable's own `run`).
import { AddonLoadError, BootError, ElfError, ListenError, LockstepError } from '../errors.js';
import { UsageError } from './args.js';
import { EXIT, type CommandIo } from './io.js';
import { setUserSignalTarget } from './signals.js';

/** A verb: its arguments (after the verb) in, the exit status out. */
export type Command = (argv: string[], io: CommandIo) => Promise<number>;

/** Runs `verb` (loaded by `load`) with `rest` and returns the exit status; an error it throws becomes one. */
export async function runVerb(verb: string, load: () => Promise<Command>, rest: string[], io: CommandIo): Promise<number> {
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
