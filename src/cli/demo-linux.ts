// `lockstep demo --linux`: Linux running kvd (memcached over TCP) as a fault-tolerant pair on TAP
// devices in two network namespaces, TCP clients with one persistent connection each in a third; the
// primary is SIGKILLed, the survivor goes live, a new secondary joins; the summary counts lost writes,
// increments applied twice and connections reset. Needs root (namespaces and TAP devices).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TcpLoadSummary } from '../client/tcp-load.js';
import { launch, type CliProcess } from '../cluster/agent/cli-process.js';
import { setUpL2Hosts } from '../cluster/agent/l2-hosts.js';
import { EXIT, type CommandIo } from './io.js';

export interface LinuxDemoOptions {
  killAfter: number;
  after: number;
  clients: number;
  kills: number;
  timeoutMs: number;
}

/** kvd's readiness line on the console (guest/linux/user/kvd.c). */
const KVD_READY = 'kvd: listening on tcp 11211';
const STEP_MS = 180_000;
const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export async function linuxDemo(o: LinuxDemoOptions, io: CommandIo, say: (line: string) => void): Promise<number> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) {
    io.stderr.write('lockstep demo --linux: needs root on Linux: it creates network namespaces and TAP devices (run it with sudo, or run `lockstep demo` without --linux)\n');
    return EXIT.denied;
  }
  const pkg = fileURLToPath(new URL('../..', import.meta.url));
  const kernel = join(pkg, 'guest', 'linux', 'bin', 'Image.gz');
  const initrd = join(pkg, 'guest', 'linux', 'bin', 'rootfs.cpio.gz');
  for (const f of [kernel, initrd]) {
    if (!existsSync(f)) {
      io.stderr.write(`lockstep demo --linux: the Linux guest image ${f} is missing\n`);
      return EXIT.noInput;
    }
  }
  const hosts = setUpL2Hosts(`${process.pid % 100000}d`);
  if (typeof hosts === 'string') {
    io.stderr.write(`lockstep demo --linux: ${hosts}\n`);
    return EXIT.unavailable;
  }
  const { ns } = hosts;
  const tmp = mkdtempSync(join(tmpdir(), 'lockstep-demo-linux-'));
  const procs: CliProcess[] = [];
  let client: ChildProcess | undefined;
  try {
    mkdirSync(join(tmp, 'arbiter'));
    let generation = 0;
    const disk = (): string => {
      const path = join(tmp, `disk${generation++}.img`);
      writeFileSync(path, Buffer.alloc(8 << 20));
      return path;
    };
    const config = {
      vm: {
        id: 'demo-linux-kvd',
        kernel,
        initrd,
        append: `console=ttyS0 quiet lockstep.service=kvd:-m:16 lockstep.time=${Math.floor(Date.now() / 1000)}`,
        ramMiB: 64,
        clock: 'real',
        devices: { disk: { path: disk(), mode: 'separate' }, net: { backend: 'tap', name: 'tap0', mac: '52:54:00:12:34:56' } },
      },
      ft: { listen: '127.0.0.1:0', keyHex: randomBytes(32).toString('hex'), arbiter: { backend: 'file', dir: join(tmp, 'arbiter') }, timeoutMs: o.timeoutMs, heartbeatMs: Math.max(10, Math.min(100, Math.floor(o.timeoutMs / 6))) },
    };
    const cfgPath = join(tmp, 'vm.json');
    writeFileSync(cfgPath, JSON.stringify(config, null, 2));
    const address = { [ns.a]: '192.168.77.1', [ns.b]: '192.168.77.2' };
    const label = { [ns.a]: 'host A', [ns.b]: 'host B' };
    say(`lockstep demo --linux: Linux with kvd (memcached, TCP 10.0.2.15:11211) as a fault-tolerant pair on TAP devices; network namespaces ${ns.a} (host A), ${ns.b} (host B), ${ns.c} (clients); files in ${tmp}`);

    /** `p.wait(…)`, failing at once (with what the other half said) if `other` exits meanwhile. */
    const waitWhile = (p: CliProcess, event: string, pred: (e: Record<string, unknown>) => boolean, other: CliProcess) =>
      Promise.race([
        p.wait(event, pred, STEP_MS),
        new Promise<never>((_r, reject) => {
          const gone = () => reject(new Error(`${other.name} exited while ${p.name} awaited '${event}': ${JSON.stringify(other.events.filter((e) => e.event !== 'stats').slice(-4))} ${other.log.slice(-3).join(' / ')}`));
          if (other.child.exitCode !== null || other.child.signalCode !== null) gone();
          else other.child.once('exit', gone);
        }),
      ]);
    const secondary = (n: string, joinAt: string): CliProcess => {
      const p = launch(label[n]!, ['secondary', cfgPath, '--join', joinAt, '--listen', `${address[n]}:0`, '--disk', disk()], undefined, { prefix: ['ip', 'netns', 'exec', n] });
      procs.push(p);
      return p;
    };
    let primary = launch('host A', ['primary', cfgPath, '--listen', `${address[ns.a]}:0`, '--await-secondary', '--console'], undefined, { prefix: ['ip', 'netns', 'exec', ns.a], stdout: true });
    procs.push(primary);
    let console = '';
    const ready = new Promise<void>((resolve, reject) => {
      primary.child.stdout!.on('data', (d: Buffer) => {
        console += d.toString('latin1');
        if (console.includes(KVD_READY)) resolve();
      });
      primary.child.once('exit', () => reject(new Error(`host A exited before kvd was ready: ${console.slice(-500)} ${primary.log.slice(-3).join(' / ')}`)));
    });
    ready.catch(() => {}); // awaited below; an exit before then must not be an unhandled rejection
    let primaryNs = ns.a;
    const l = await primary.wait('listening', undefined, STEP_MS);
    let standby = secondary(ns.b, `${address[ns.a]}:${String(l.port)}`);
    await primary.wait('status', (e) => e.protected === true, STEP_MS);
    say('  host A: primary; host B: secondary in lockstep — Protected; booting Linux');
    await ready;
    say('  kvd is listening');

    const c = spawn('ip', ['netns', 'exec', ns.c, process.execPath, fileURLToPath(new URL('../client/tcp-load-main.js', import.meta.url)), JSON.stringify({ host: '10.0.2.15', port: 11211, clients: o.clients })], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    client = c;
    let progress: number[] = [];
    let summary: TcpLoadSummary | undefined;
    const waiters: Array<() => void> = [];
    let buf = '';
    let clientErr = '';
    c.stderr!.on('data', (d: Buffer) => (clientErr += d.toString()));
    c.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const m = JSON.parse(buf.slice(0, nl)) as { progress?: number[]; summary?: TcpLoadSummary };
        buf = buf.slice(nl + 1);
        if (m.progress) progress = m.progress;
        if (m.summary) summary = m.summary;
        for (const w of waiters.splice(0)) w();
      }
    });
    const clientGone = new Promise<never>((_r, reject) => c.once('exit', () => reject(new Error(`the client load exited: ${clientErr.slice(-500)}`))));
    clientGone.catch(() => {}); // raced below; the exit at the end is expected
    /** Resolves once every client has `by` more acknowledged requests than at `marks`. */
    const progressed = (marks: number[], by: number) =>
      Promise.race([
        clientGone,
        new Promise<void>((resolve) => {
          const check = () => (progress.length === o.clients && progress.every((n, i) => n >= (marks[i] ?? 0) + by) ? resolve() : waiters.push(check));
          check();
        }),
      ]);
    await progressed([], 1);
    say(`  ${o.clients} TCP clients connected, writing unique values and incrementing counters`);
    await sleep(o.killAfter * 1000);

    const kills: number[] = [];
    for (let k = 1; k <= o.kills; k++) {
      const marks = [...progress];
      const killedNs = primaryNs;
      const since = Date.now();
      kills.push(monotonicMs());
      primary.child.kill('SIGKILL');
      say(`  SIGKILL ${label[killedNs]} (primary) after ${marks.reduce((s, n) => s + n, 0)} acknowledged requests`);
      const live = await standby.wait('go-live', undefined, STEP_MS);
      primary = standby;
      primaryNs = killedNs === ns.a ? ns.b : ns.a;
      say(`  ${label[primaryNs]}: went live at epoch ${String(live.epoch)}, ${Number(live.t) - since} ms after the kill`);
      await progressed(marks, 1);
      say(`  every client's connection is answered again`);
      const listening = await primary.wait('listening', (e) => Number(e.t) >= since, STEP_MS);
      standby = secondary(killedNs, `${address[primaryNs]}:${String(listening.port)}`);
      const cloned = await waitWhile(primary, 'cloned', (e) => Number(e.t) >= since && e.pauseMs !== undefined, standby);
      await waitWhile(primary, 'status', (e) => e.protected === true && Number(e.t) >= since, standby);
      say(`  ${label[killedNs]}: new secondary cloned from the running primary (pause ${Number(cloned.pauseMs).toFixed(1)} ms) — Protected again`);
      await sleep((k === o.kills ? o.after : o.killAfter) * 1000);
    }
    c.stdin!.write(`stop ${JSON.stringify(kills)}\n`);
    await Promise.race([clientGone, new Promise<void>((resolve) => {
      const check = () => (summary ? resolve() : waiters.push(check));
      check();
    })]);
    const s = summary!;
    say('');
    say('summary');
    say(`  requests sent          ${s.requests}`);
    say(`  acknowledged           ${s.acknowledged}`);
    say(`  acknowledged writes    ${s.writes}, lost: ${s.lost}`);
    say(`  increments             ${s.incrs}, applied twice: ${s.appliedTwice}`);
    say(`  connections reset      ${s.reset} of ${o.clients} (each client kept one TCP connection)`);
    say(`  client-visible outage  ${s.outagesMs.map((ms) => `${ms.toFixed(0)} ms`).join(', ')} (longest gap between acknowledged requests around each kill)`);
    for (const e of s.errors) say(`  error: ${e}`);
    return s.lost === 0 && s.appliedTwice === 0 && s.reset === 0 && s.errors.length === 0 ? EXIT.ok : EXIT.software;
  } finally {
    if (client && client.exitCode === null) client.kill('SIGKILL');
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    hosts.remove();
    rmSync(tmp, { recursive: true, force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
