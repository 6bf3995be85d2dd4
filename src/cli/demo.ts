// `lockstep demo`: a fault-tolerant kvserver on this one machine. Starts a primary and a secondary as
// separate processes, puts a verifying client load on the guest, kills the primary with SIGKILL, and
// shows the failover, the clone of a new secondary and a summary (nothing acknowledged may be lost).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { KvClient, LoadGenerator, verifyStore } from '../client/index.js';
import { UsageError } from './args.js';
import { EXIT, type CommandIo } from './io.js';

export const DEMO_HELP = `Usage: lockstep demo [options]

Runs the kvserver guest as a fault-tolerant pair on this machine (two processes), puts a verifying
memcached-UDP load on it, kills the primary with SIGKILL, and shows the secondary going live and a new
secondary being cloned. Ends with a summary; exit status 0 only if no acknowledged write was lost.

Options:
  --kill-after <s>     seconds of load before the kill (default 3)
  --after <s>          seconds of load after the new secondary is in lockstep (default 2)
  --clients <n>        concurrent clients (default 4)
  --timeout <ms>       failure-detection timeout (default 600)
  -h, --help
`;

const BUDGET = 125_000_000;

/** A `lockstep` process started with `--events`, and the event lines it printed. */
export interface Proc {
  name: string;
  child: ChildProcess;
  /** Its event lines, parsed (the latest 1 000 to 2 000). */
  events: Array<Record<string, unknown>>;
  /** Lines of stderr that were not JSON (the latest 50, for failure messages). */
  log: string[];
  /** The first event named `event` (and matching `pred`), already printed or still to come; rejects after `timeoutMs` (default 60 s). */
  wait(event: string, pred?: (e: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
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
  onEvent: (p: Proc, e: Record<string, unknown>) => void = () => {},
  options: { prefix?: string[]; detached?: boolean; env?: NodeJS.ProcessEnv; stdout?: boolean } = {},
): Proc {
  // From src/cli (tests) and from dist/cli alike.
  const bin = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
  const pre = options.prefix ?? [];
  const cmd = pre.length > 0 ? pre[0]! : process.execPath;
  const child = spawn(cmd, [...pre.slice(1), ...(pre.length > 0 ? [process.execPath] : []), bin, ...args, '--events'], {
    stdio: ['ignore', options.stdout === true ? 'pipe' : 'ignore', 'pipe'],
    detached: options.detached === true,
    env: { ...process.env, ...options.env },
  });
  const waiters: Array<{ event: string; pred: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }> = [];
  const proc: Proc = {
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
      let e: Record<string, unknown>;
      try {
        e = JSON.parse(line) as Record<string, unknown>;
      } catch {
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

export async function demoCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'kill-after': { type: 'string' },
      after: { type: 'string' },
      clients: { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.stdout.write(DEMO_HELP);
    return EXIT.ok;
  }
  const num = (name: string, v: string | undefined, d: number, min: number, max: number) => {
    const n = v === undefined ? d : Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name}: must be a number from ${min} to ${max}, got ${v}`);
    return n;
  };
  const killAfter = num('kill-after', values['kill-after'], 3, 0.5, 600);
  const after = num('after', values.after, 2, 0.5, 600);
  const clients = num('clients', values.clients, 4, 1, 64);
  const timeoutMs = num('timeout', values.timeout, 600, 50, 60_000);

  const tty = (io.stdout as NodeJS.WriteStream).isTTY === true;
  const say = (line: string) => io.stdout.write(`${tty ? '\r\x1b[2K' : ''}${line}\n`);
  const tmp = mkdtempSync(join(tmpdir(), 'lockstep-demo-'));
  const procs: Proc[] = [];
  let load: LoadGenerator | undefined;
  try {
    const udpPort = await freeUdpPort();
    const image = join(tmp, 'kv.img');
    writeFileSync(image, Buffer.alloc(8 << 20));
    const guest = fileURLToPath(new URL('../../guest/bin/kvserver.elf', import.meta.url));
    const config = {
      vm: { id: 'demo-kv', guest, ramMiB: 64, clock: 'real', devices: { disk: { path: image }, net: { backend: 'udp', hostPort: udpPort, guestPort: 11211 } } },
      ft: { listen: '127.0.0.1:0', keyHex: randomBytes(32).toString('hex'), arbiter: { backend: 'file', dir: join(tmp, 'arbiter') }, timeoutMs, heartbeatMs: Math.max(10, Math.floor(timeoutMs / 6)) },
    };
    mkdirSync(join(tmp, 'arbiter'));
    const cfgPath = join(tmp, 'vm.json');
    writeFileSync(cfgPath, JSON.stringify(config, null, 2));
    say(`lockstep demo: kvserver (memcached over UDP 127.0.0.1:${udpPort}) as a fault-tolerant pair; files in ${tmp}`);

    const stats = { logBytes: 0, bandwidth: 0, lagMs: 0, primaryMips: 0 };
    const onEvent = (p: Proc, e: Record<string, unknown>) => {
      if (e.event === 'stats') {
        stats.bandwidth = Number(e.logBandwidth);
        stats.lagMs = Number(e.lagSeconds) * 1000;
        stats.primaryMips = Number(e.mips);
        stats.logBytes = Math.max(stats.logBytes, Number(e.logBytes));
      }
      if (e.event === 'warning' || e.event === 'halted') say(`  [${p.name}] ${String(e.event)}: ${String(e.message ?? e.reason)}`);
    };
    const a = launch('host A', ['primary', cfgPath], onEvent);
    procs.push(a);
    const listenA = await a.wait('listening');
    say(`  host A: primary at epoch ${String(listenA.epoch)}, logging channel 127.0.0.1:${String(listenA.port)}`);
    const b = launch('host B', ['secondary', cfgPath, '--join', `127.0.0.1:${String(listenA.port)}`], onEvent);
    procs.push(b);
    const cloned = await a.wait('cloned');
    await a.wait('status', (e) => e.protected === true);
    say(`  host B: secondary cloned (${String(cloned.pages)} pages, pause ${Number(cloned.pauseMs).toFixed(1)} ms) — Protected`);

    // Client load, verified: every get must return a value the write history allows.
    load = new LoadGenerator({ durationMs: 600_000, endpoints: [{ host: '127.0.0.1', port: udpPort }], clients, setRatio: 0.5, keys: 200, timeoutMs: 40, retries: 200, backoff: { initialMs: 0, maxMs: 0 }, progressIntervalMs: 5 });
    let lastAck = 0;
    let lastAckAt = performance.now();
    let killAt = 0;
    let outage = 0;
    let phase = 'Protected';
    load.on('progress', (p) => {
      const now = performance.now();
      if (p.acknowledged > lastAck) {
        if (killAt > 0 && outage === 0 && lastAckAt >= killAt - 1) outage = now - killAt;
        lastAck = p.acknowledged;
        lastAckAt = now;
      }
      if (tty) io.stdout.write(`\r\x1b[2K  ${phase} · ${p.acknowledged} acknowledged · ${p.rate.toFixed(0)} req/s · p99 ${p.p99Ms.toFixed(2)} ms · log ${(stats.bandwidth / 1e6).toFixed(2)} MB/s · lag ${stats.lagMs.toFixed(1)} ms`);
    });
    const running = load.run();
    await sleep(killAfter * 1000);
    const before = lastAck;
    killAt = performance.now();
    a.child.kill('SIGKILL');
    phase = 'primary killed';
    say(`  SIGKILL host A (primary) after ${before} acknowledged requests`);
    const live = await b.wait('go-live');
    phase = 'Not Protected (need secondary)';
    say(`  host B: went live at epoch ${String(live.epoch)} ${Number(live.ms).toFixed(1)} ms after noticing (${String(live.reason)})`);
    const listenB = await b.wait('listening');
    const c = launch('host C', ['secondary', cfgPath, '--join', `127.0.0.1:${String(listenB.port)}`], onEvent);
    procs.push(c);
    const cloned2 = await b.wait('cloned', (e) => e.pauseMs !== undefined); // B as the primary, not its own clone
    await b.wait('status', (e) => e.protected === true);
    phase = 'Protected';
    say(`  host C: new secondary cloned from the running primary (${String(cloned2.pages)} pages in ${String(cloned2.rounds)} rounds, pause ${Number(cloned2.pauseMs).toFixed(1)} ms) — Protected again`);
    await sleep(after * 1000);
    load.stop();
    const result = await running;
    // Every acknowledged write must be readable, at its latest acknowledged value.
    const checker = new KvClient({ endpoints: [{ host: '127.0.0.1', port: udpPort }], timeoutMs: 300, retries: 20 });
    const verified = await verifyStore(checker, result.history);
    await checker.close();
    const lost = verified.violations.length + result.violationCount;
    if (tty) io.stdout.write('\r\x1b[2K');
    say('');
    say('summary');
    say(`  requests sent          ${result.sent}`);
    say(`  acknowledged           ${result.acknowledged} (${result.retries} retries, ${result.failed} failed)`);
    say(`  acknowledged writes    ${result.acknowledgedWrites.length}, lost: ${lost}`);
    say(`  failover outage        ${outage > 0 ? `${outage.toFixed(0)} ms (SIGKILL to the first answer from the new primary)` : 'not measured'}`);
    say(`  clone pause            ${Number(cloned2.pauseMs).toFixed(1)} ms (64 MiB guest, iterative pre-copy)`);
    say(`  log bandwidth          ${(stats.bandwidth / 1e6).toFixed(2)} MB/s = ${((100 * stats.bandwidth) / BUDGET).toFixed(2)} % of the 1 Gbit/s budget`);
    return lost === 0 ? EXIT.ok : EXIT.software;
  } finally {
    load?.stop();
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
