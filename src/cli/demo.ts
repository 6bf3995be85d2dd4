// `lockstep demo`: a fault-tolerant kvserver on this one machine. Starts a primary and a secondary as
// separate processes, puts a verifying client load on the guest, kills the primary with SIGKILL, and
// shows the failover, the clone of a new secondary and a summary (nothing acknowledged may be lost).
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { KvClient, LoadGenerator, verifyStore } from '../client/index.js';
import { freeUdpPort, launch, type CliProcess } from '../cluster/agent/cli-process.js';
import { UsageError } from './args.js';
import { linuxDemo } from './demo-linux.js';
import { EXIT, type CommandIo } from './io.js';

export const DEMO_HELP = `Usage: lockstep demo [options]

Runs the kvserver guest as a fault-tolerant pair on this machine (two processes), puts a verifying
memcached-UDP load on it, kills the primary with SIGKILL, and shows the secondary going live and a new
secondary being cloned. Ends with a summary.

With --linux: the Linux guest running kvd (a memcached-compatible service) on TAP devices in two
network namespaces (host A and host B) and TCP clients in a third, each with ONE persistent connection;
the primary is killed --kills times (the survivor goes on as primary and a new secondary joins in the
other namespace each time). The summary adds increments applied twice and connections reset. Needs
root on Linux (namespaces, TAP devices).

Exit status: 0 no acknowledged write lost (--linux: none lost, no increment applied twice, no
connection reset); 70 one of them was not 0, or the run failed; 64 usage error; 66 (--linux) the
Linux guest image is missing; 69 (--linux) the network namespaces could not be made; 77 (--linux)
not root.

Options:
  --linux              the Linux guest with kvd over TCP, on TAP devices (root)
  --kills <n>          with --linux: how many times to kill the primary (default 2)
  --kill-after <s>     seconds of load before the kill (default 3)
  --after <s>          seconds of load after the new secondary is in lockstep (default 2)
  --clients <n>        concurrent clients (default 4)
  --timeout <ms>       failure-detection timeout (default 600; 5000 with --linux)
  -h, --help
`;

const BUDGET = 125_000_000;

export async function demoCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'kill-after': { type: 'string' },
      after: { type: 'string' },
      clients: { type: 'string' },
      timeout: { type: 'string' },
      linux: { type: 'boolean' },
      kills: { type: 'string' },
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
  // A SIGKILL closes the logging channel and is noticed at once; the timeout only catches a stall. Two
  // Linux halves, a clone and the clients on a loaded 2-core machine pause longer than 600 ms.
  const timeoutMs = num('timeout', values.timeout, values.linux === true ? 5000 : 600, 50, 60_000);
  if (values.kills !== undefined && values.linux !== true) throw new UsageError('--kills: only with --linux');
  const kills = num('kills', values.kills, 2, 1, 100);

  const tty = (io.stdout as NodeJS.WriteStream).isTTY === true;
  const say = (line: string) => io.stdout.write(`${tty ? '\r\x1b[2K' : ''}${line}\n`);
  if (values.linux === true) return linuxDemo({ killAfter, after, clients, kills, timeoutMs }, io, say);
  const tmp = mkdtempSync(join(tmpdir(), 'lockstep-demo-'));
  const procs: CliProcess[] = [];
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
    const onEvent = (p: CliProcess, e: Record<string, unknown>) => {
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
