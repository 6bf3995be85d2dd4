// Running the `lockstep` CLI as a child process with --events, and reading its typed event lines: the
// demo, the chaos harness, the benchmarks and the tests start primaries and secondaries this way.
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEventLine, type EventLine } from '../../ft/event-lines.js';

/**
 * The built CLI entry (`dist/cli/main.js` of the package), found from the package root above this file,
 * so it resolves the same from src/ (tests), dist/ and a benchmark's own build directory.
 */
export function cliEntry(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'lockstep') return join(dir, 'dist', 'cli', 'main.js');
    if (dirname(dir) === dir) throw new Error(`cannot find the lockstep package above ${fileURLToPath(import.meta.url)}`);
  }
}

/** A `lockstep` process started with `--events`, and the event lines it printed. */
export interface CliProcess {
  name: string;
  child: ChildProcess;
  /** Its event lines, parsed (the latest 1 000 to 2 000). */
  events: EventLine[];
  /** Lines of stderr that were not JSON (the latest 50, for failure messages). */
  log: string[];
  /** The first event named `event` (and matching `pred`), already printed or still to come; rejects after `timeoutMs` (default 60 s). */
  wait(event: string, pred?: (e: EventLine) => boolean, timeoutMs?: number): Promise<EventLine>;
}

/** A UDP port on 127.0.0.1 that was free a moment ago (for a VM's forwarded port). */
export function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts `lockstep <args> --events` (the built CLI) and collects its JSON event lines. `prefix` runs it
 * through another command (`ip netns exec NS`); `detached` makes it the leader of a new process group;
 * `stdout` pipes its stdout (a guest's console with `--console`) instead of dropping it.
 */
export function launch(
  name: string,
  args: string[],
  onEvent: (p: CliProcess, e: EventLine) => void = () => {},
  options: { prefix?: string[]; detached?: boolean; env?: NodeJS.ProcessEnv; stdout?: boolean } = {},
): CliProcess {
  const bin = cliEntry();
  const pre = options.prefix ?? [];
  const cmd = pre.length > 0 ? pre[0]! : process.execPath;
  const child = spawn(cmd, [...pre.slice(1), ...(pre.length > 0 ? [process.execPath] : []), bin, ...args, '--events'], {
    stdio: ['ignore', options.stdout === true ? 'pipe' : 'ignore', 'pipe'],
    detached: options.detached === true,
    env: { ...process.env, ...options.env },
  });
  type Event = EventLine;
  const waiters: Array<{ event: string; pred: (e: Event) => boolean; resolve: (e: Event) => void }> = [];
  const proc: CliProcess = {
    name,
    child,
    events: [],
    log: [],
    wait(event, pred = () => true, timeoutMs = 60_000) {
      const seen = proc.events.find((e) => e.event === event && pred(e));
      if (seen) return Promise.resolve(seen);
      if (child.exitCode !== null || child.signalCode !== null) {
        return Promise.reject(new Error(`${name} exited (${child.exitCode ?? child.signalCode}) without '${event}': ${proc.log.slice(-5).join(' / ')}`));
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${name}: no '${event}' within ${timeoutMs} ms; last: ${JSON.stringify(proc.events.slice(-3))} ${proc.log.slice(-3).join(' / ')}`)),
          timeoutMs,
        );
        waiters.push({
          event,
          pred,
          resolve: (e) => {
            clearTimeout(timer);
            resolve(e);
          },
        });
      });
    },
  };
  let buf = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const e = parseEventLine(line);
      if (e === undefined) {
        proc.log.push(line);
        if (proc.log.length > 50) proc.log.shift();
        continue;
      }
      proc.events.push(e);
      if (proc.events.length > 2000) proc.events.splice(0, 1000);
      onEvent(proc, e);
      for (let i = waiters.length - 1; i >= 0; i--) {
        const w = waiters[i]!;
        if (w.event === e.event && w.pred(e)) {
          waiters.splice(i, 1);
          w.resolve(e);
        }
      }
    }
  });
  return proc;
}
