// `lockstep primary` and `lockstep secondary`: one half of a fault-tolerant pair each, built from one
// configuration file. Status on stderr (a live line on a TTY, or JSON lines with --events).
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { formatHostPort, loadConfig, readFtKey, type HostPort, type LoadedConfig } from '../config/index.js';
import { ListenError, OptionError } from '../errors.js';
import { ControlUnreachableError, callControl } from '../ft/control-client.js';
import { describeStatus } from '../ft/control.js';
import { FT_OPERATIONS } from '../ft/control-server.js';
import { formatEventLine, type FtEventFields, type FtEventName, type Writable } from '../ft/event-lines.js';
import { FtPrimary } from '../ft/primary.js';
import { FtSecondary } from '../ft/secondary.js';
import { startPrimaryServices, type PrimaryServiceEvent, type PrimaryServices } from '../ft/services.js';
import { ftSettings, primaryOptions } from '../ft/settings.js';
import { attachVmNetwork, createVmMachine, keepAttachingVmNetwork, loadVm, type VmNetwork } from '../ft/vm.js';
import type { Machine } from '../machine/machine.js';
import type { RunResult } from '../machine/types.js';
import type { Registry } from 'prom-client';
import { createFtMetrics, promClient, type FtVmMetrics } from '../observability/index.js';
import { UsageError, hostPortOption } from './args.js';
import { EXIT, type CommandIo } from './io.js';
import { setUserSignalTarget, type UserSignal } from './signals.js';
import { FENCED_TEXT, exitWithParent, leaseFromStdin } from './lease.js';

const BUDGET_BYTES_PER_SECOND = 125_000_000;

export const PRIMARY_HELP = `Usage: lockstep primary <vm.json|vm.yaml> [options]

Runs the VM of the configuration as the primary of a fault-tolerant pair: claims the next epoch from
the arbiter, starts the guest, and waits for a secondary (lockstep secondary --join) to clone itself.
A VM with FT off (ft.enabled: false) needs no ft.arbiter: it runs alone, and can be live-migrated
(lockstep ft migrate, then lockstep secondary --join on the target host) but not protected.

Options:
  --listen <host:port>   logging-channel address (default: ft.listen of the config)
  --control <host:port>  serve the operations API (lockstep ft <operation>) there
  --key-file <file>      the key of the logging channel and the operations API (at least 16 bytes),
                         instead of the config's ft.keyFile/keyHex/keyEnv: e.g. one made per VM start
                         by a host agent and given to a migration's target too
  --exit-with-parent     die with the process that started this one (a host agent): as the host would
  --lease-stdin          run only as long as the last 'lease <CLOCK_MONOTONIC ns>' line on stdin allows
                         (a host agent's fence of a VM with FT off; a 'fenced' event, then SIGKILL)
  --console              copy the guest's console to stdout
  --await-secondary      start the guest only once the first secondary is in lockstep (its boot protected too)
  --events               status as JSON lines on stderr (for programs), instead of text
  -h, --help

Signals: SIGUSR1 runs a test failover, SIGUSR2 a test restart of the secondary; SIGINT and SIGTERM
stop the primary (its secondary is dismissed, it does not go live).

Exit status: 0 handed over (or the guest's exit code); 64 usage or configuration error; 69 an address
is taken (the guest's UDP port, --listen, --control, metrics.listen), checked before any epoch is
claimed, or the arbiter does not answer at start; 77 the arbiter refused the credentials; 76 halted
(lost the arbiter); 130 interrupted.
`;

export const SECONDARY_HELP = `Usage: lockstep secondary <vm.json|vm.yaml> --join <host:port> [options]

Joins the primary at <host:port>: is cloned, replays its log with every output suppressed, and goes
live if the primary is lost (then waits for a new secondary at --listen). With a configuration without
ft.arbiter (a VM with FT off) this side is a live migration's target: it goes live only on the
source's GO_LIVE, never because the source went silent (it halts then: exit 76).

Options:
  --join <host:port>     the primary's logging channel (required)
  --listen <host:port>   where to listen for a new secondary once live (default 127.0.0.1:0)
  --log-dir <dir>        keep the clone state and the log received (to verify a failover offline)
  --control <host:port>  serve the operations API there once this side is the primary
  --key-file <file>      the key (as lockstep primary --key-file): the source's
  --exit-with-parent     die with the process that started this one (a host agent): as the host would
  --lease-stdin          as lockstep primary --lease-stdin (a migration's target of a VM with FT off)
  --disk <image>         this side's own disk image (disk.mode "separate": brought up to date by the clone)
  --console              copy the guest's console to stdout once live
  --events               status as JSON lines on stderr, instead of text
  -h, --help

Signals: SIGUSR1 and SIGUSR2 are ignored (logged) until this side is the primary; then they are the
primary's (test failover, test restart secondary). A survivor whose UDP port is still held (the old
primary frozen on this host) goes live all the same and keeps retrying the port, reporting it.

Exit status: 0 left the pair (dismissed by its primary) or the guest ended; 64 usage or configuration
error (also when this side's machine cannot be made for the clone: its disk image locked by another
writer, a TAP device it cannot attach); 69 an address is taken (--listen, --control, metrics.listen), or nothing usable answers at --join
(connection refused, timed out, another protocol version); 77 the handshake failed on the key (not the
pair's key on one side); 76 halted: it could not go live
(the primary lost before the clone finished, the epoch already taken, the arbiter unreachable) or its
replay diverged from the primary's log; 130 interrupted.
`;


/**
 * Fails with a {@link ListenError} when `address` cannot be listened on now: checked before the epoch
 * is claimed, so a taken port costs no epoch. (A fixed port only; the channel binds it for good later.)
 */
async function checkListenable(address: { host: string; port: number }, what: string): Promise<void> {
  if (address.port === 0) return;
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (err) => reject(ListenError.from(err, what, address.host, address.port)));
    probe.listen(address.port, address.host, () => probe.close(() => resolve()));
  });
}

/** `--key-file <file>`: the key read as ft.keyFile is (at least 16 bytes; one trailing newline dropped). */
async function keyOption(path: string | undefined): Promise<{ key?: Uint8Array }> {
  return path === undefined ? {} : { key: await readFtKey({ source: 'file', path }, '--key-file') };
}

/** Prints FT events: JSON lines, or text (with a live status line on a TTY). */
class Reporter {
  readonly #io: CommandIo;
  readonly #json: boolean;
  readonly #tty: boolean;
  #live = false;
  constructor(io: CommandIo, json: boolean) {
    this.#io = io;
    this.#json = json;
    this.#tty = !json && (io.stderr as NodeJS.WriteStream).isTTY === true;
  }
  event<N extends FtEventName>(name: N, fields: Writable<FtEventFields[N]>, text: string): void {
    if (this.#json) {
      this.#io.stderr.write(`${formatEventLine(name, fields)}\n`);
      return;
    }
    if (this.#live) this.#io.stderr.write('\r\x1b[2K');
    this.#live = false;
    this.#io.stderr.write(`lockstep: ${text}\n`);
  }
  /** How the user signals are reported (the `signal` event). */
  readonly signal = (signal: UserSignal, action: string, text: string): void => {
    this.event('signal', { signal, action }, text);
  };
  /** A JSON-only event (periodic figures); nothing in text mode. */
  data<N extends FtEventName>(name: N, fields: Writable<FtEventFields[N]>): void {
    if (this.#json) this.event(name, fields, '');
  }
  /** The live status line (TTY only). */
  status(line: string): void {
    if (!this.#tty) return;
    this.#io.stderr.write(`\r\x1b[2K${line}`);
    this.#live = true;
  }
  end(): void {
    if (this.#live) this.#io.stderr.write('\n');
    this.#live = false;
  }
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(2)} MB/s`;
}

/** Wires a primary's events to the reporter; resolves with the exit status when it is over. */
function supervisePrimary(p: FtPrimary, r: Reporter, io: CommandIo, console: boolean): Promise<number> {
  if (console) p.machine.on('console', (b) => io.stdout.write(b));
  return new Promise<number>((resolve) => {
    p.on('status', (s) => r.event('status', { protected: s.protected, text: describeStatus(s) }, describeStatus(s)));
    p.on('warning', (w) => r.event('warning', { message: w }, `warning: ${w}`));
    p.on('cloned', (c) => r.event('cloned', { ...c }, `secondary cloned: ${c.pages} pages in ${c.rounds} rounds, pause ${c.pauseMs.toFixed(1)} ms, ${c.totalMs.toFixed(0)} ms in all`));
    p.on('moved', (m) => r.event('moved', { ...m }, `secondary moved without a protection gap: ${m.pages} pages in ${m.rounds} rounds, guest stopped ${m.pauseMs.toFixed(1)} ms, ${m.totalMs.toFixed(0)} ms in all; epoch ${m.epoch}`));
    p.on('move-failed', (why) => r.event('move-failed', { reason: why }, `moving the secondary failed (${why}); the current secondary protects the VM`));
    p.on('migrated', (m) => r.event('migrated', { ...m }, `live migration done in ${m.totalMs.toFixed(0)} ms (hand-over ${m.handOverMs.toFixed(1)} ms)${m.follower ? '; the secondary follows the target' : ''}`));
    p.on('followed', (f) => r.event('followed', { ...f }, `the secondary resumed here without a clone, ${f.waitedMs.toFixed(1)} ms after go-live`));
    p.on('secondary-lost', (why) => r.event('secondary-lost', { reason: why, epoch: p.epoch }, `secondary lost (${why}); running alone at epoch ${p.epoch}`));
    p.on('handed-over', (h) => {
      r.event('handed-over', { ...h }, `handed over to the secondary (epoch ${h.epoch})`);
      resolve(EXIT.ok);
    });
    p.on('halted', (why, error) => {
      r.event('halted', { reason: why, ...(error ? { code: error.code } : {}) }, `halted: ${why}`);
      resolve(EXIT.halted);
    });
    p.on('ended', (res: RunResult) => {
      r.event('ended', { result: res.kind, code: res.kind === 'exit' ? res.code : undefined }, `the guest ended (${res.kind})`);
      resolve(res.kind === 'exit' ? res.code & 0xff : EXIT.halted);
    });
    let ticks = 0;
    const timer = setInterval(() => {
      const s = p.stats();
      if (++ticks % 2 === 0) {
        r.data('stats', { ...s, status: describeStatus(s.status) });
        if (!p.machine.closed) r.data('progress', { instret: p.machine.progress, watchdog: p.machine.watchdogPets });
      }
      r.status(
        `${describeStatus(s.status)} · epoch ${s.epoch} · lag ${(s.lagSeconds * 1000).toFixed(1)} ms · log ${mb(s.logBandwidth)} (${((100 * s.logBandwidth) / BUDGET_BYTES_PER_SECOND).toFixed(2)} % of 1 Gbit/s) · ${s.mips.toFixed(0)} MIPS${s.throttle > 0 ? ` · throttle ${(s.throttle * 100).toFixed(0)} %` : ''}`,
      );
    }, 500);
    timer.unref();
  });
}

function onSignals(stop: () => Promise<void>): void {
  const handler = () => void stop().finally(() => process.exit(EXIT.interrupted));
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}

/** SIGUSR1/SIGUSR2 as a primary's operations (test failover, test restart secondary), from now on. */
function primarySignals(p: FtPrimary, r: Reporter): void {
  const op = (signal: UserSignal, name: string, f: () => unknown) => () => {
    r.signal(signal, name.replace(/ /g, '-'), `${signal}: ${name}`);
    Promise.resolve()
      .then(f)
      .catch((err: unknown) => r.event('warning', { message: `${name}: ${(err as Error).message}` }, `${name} refused: ${(err as Error).message}`));
  };
  setUserSignalTarget({
    role: `the primary of ${p.vmId}`,
    usr1: op('SIGUSR1', 'test failover', () => p.testFailover()),
    usr2: op('SIGUSR2', 'test restart secondary', () => p.restartSecondary()),
    log: r.signal,
  });
}

/**
 * The metric set of the VM, when the configuration asks for metrics: on a registry of its own (nothing
 * else of the process is in it), and its address. Throws ERR_LOCKSTEP_PACKAGE_MISSING without prom-client.
 */
function metricsOf(loaded: LoadedConfig, vmId: string): { registry: Registry; vm: FtVmMetrics; listen: HostPort } | undefined {
  const m = loaded.config.metrics;
  if (!m) return undefined;
  const registry = new (promClient().Registry)();
  return { registry, vm: createFtMetrics(registry).forVm(vmId), listen: m.listen };
}

/** Prints what the primary's services did. */
function reportService(r: Reporter, e: PrimaryServiceEvent): void {
  switch (e.event) {
    case 'metrics':
      return r.event('metrics', { url: e.url }, `Prometheus metrics at ${e.url}`);
    case 'control':
      return r.event('control', { url: e.url }, `operations API at ${e.url}`);
    case 'retrying':
      return r.event('retrying', { what: e.what, attempts: e.attempts, message: e.message }, `warning: ${e.message}; retrying (${e.attempts} attempts so far)`);
    case 'recovered':
      return r.event('recovered', { what: e.what, attempts: e.attempts }, `${e.what} is up after ${e.attempts} attempts`);
    case 'warning':
      return r.event('warning', { message: e.message }, `warning: ${e.message}`);
  }
}

export async function primaryCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { listen: { type: 'string' }, control: { type: 'string' }, 'key-file': { type: 'string' }, 'exit-with-parent': { type: 'boolean' }, 'lease-stdin': { type: 'boolean' }, console: { type: 'boolean' }, 'await-secondary': { type: 'boolean' }, events: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    io.stdout.write(PRIMARY_HELP);
    return EXIT.ok;
  }
  if (positionals.length !== 1) throw new UsageError('expected one configuration file');
  if (values['exit-with-parent']) exitWithParent();
  const r = new Reporter(io, values.events === true);
  if (values['lease-stdin']) leaseFromStdin(() => r.event('fenced', {}, FENCED_TEXT));
  setUserSignalTarget({ role: 'a primary that is still starting', log: r.signal });
  const control = values.control !== undefined ? hostPortOption('--control', values.control) : undefined;
  const loaded = await loadConfig(positionals[0]!);
  for (const w of loaded.warnings) r.event('warning', { message: w }, `WARNING: ${w}`);
  // Before anything is opened: metrics without prom-client fail here, with nothing to undo.
  const vmMetrics = metricsOf(loaded, loaded.config.vm.id);
  const settings = ftSettings(loaded, await keyOption(values['key-file']));
  const { spec, ft, arbiter, key, tls } = settings;
  const listen = values.listen !== undefined ? hostPortOption('--listen', values.listen) : ft.listen;
  const machine = loadVm(spec);
  let net: VmNetwork | undefined;
  try {
    return await runPrimary();
  } finally {
    net?.close();
    machine.close();
    await arbiter.close().catch(() => undefined);
  }
  async function runPrimary(): Promise<number> {
  // Every address is taken before the epoch is claimed: a port in use fails here and costs no epoch.
  net = await attachVmNetwork(machine, spec, 0);
  if (net.port !== undefined) r.event('net', { port: net.port }, `udp 127.0.0.1:${net.port} -> guest 10.0.2.15:${spec.net?.backend === 'udp' ? spec.net.guestPort : 0}`);
  const primary = new FtPrimary({ ...primaryOptions(settings), machine, vmId: spec.id, key, arbiter, listen, awaitSecondary: values['await-secondary'] === true, ...(tls ? { tls } : {}) });
  const done = supervisePrimary(primary, r, io, values.console === true);
  let services: PrimaryServices | undefined;
  try {
    vmMetrics?.vm.setNetworkAttached(true);
    services = await startPrimaryServices(primary, { key, ...(vmMetrics ? { metrics: vmMetrics } : {}), ...(control ? { control } : {}), onEvent: (e) => reportService(r, e) });
    await checkListenable(listen, 'the logging channel (ft.listen, --listen)');
    const addr = await primary.start();
    r.event('listening', { host: addr.host, port: addr.port, epoch: primary.epoch, engine: machine.engine }, `primary of ${spec.id} at epoch ${primary.epoch} (engine ${machine.engine}); secondaries join at ${formatHostPort(addr)}`);
    onSignals(() => primary.stop());
    primarySignals(primary, r);
    const status = await done;
    r.end();
    return status;
  } finally {
    await services?.close();
    await primary.stop().catch(() => undefined);
  }
  }
}

export async function secondaryCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      join: { type: 'string' },
      listen: { type: 'string' },
      'log-dir': { type: 'string' },
      disk: { type: 'string' },
      control: { type: 'string' },
      'key-file': { type: 'string' },
      'exit-with-parent': { type: 'boolean' },
      'lease-stdin': { type: 'boolean' },
      console: { type: 'boolean' },
      events: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.stdout.write(SECONDARY_HELP);
    return EXIT.ok;
  }
  if (positionals.length !== 1) throw new UsageError('expected one configuration file');
  if (values.join === undefined) throw new UsageError('--join <host:port> is required');
  if (values['exit-with-parent']) exitWithParent();
  const r = new Reporter(io, values.events === true);
  if (values['lease-stdin']) leaseFromStdin(() => r.event('fenced', {}, FENCED_TEXT));
  setUserSignalTarget({ role: 'a secondary (operations go to the primary)', log: r.signal });
  const join = hostPortOption('--join', values.join);
  const listen = hostPortOption('--listen', values.listen ?? '127.0.0.1:0');
  const control = values.control !== undefined ? hostPortOption('--control', values.control) : undefined;
  const loaded = await loadConfig(positionals[0]!);
  // The figures exist from the start (the network's state is one of them); they are served once live.
  // Made before anything is opened: metrics without prom-client fail here, with nothing to undo.
  const metrics = metricsOf(loaded, loaded.config.vm.id);
  const settings = ftSettings(loaded, await keyOption(values['key-file']));
  const { spec, ft, arbiter, key, tls } = settings;
  if (values.disk !== undefined) {
    if (!spec.disk) throw new UsageError('--disk: the configuration has no disk');
    spec.disk = { ...spec.disk, path: values.disk };
  }
  const vmMetrics = metrics?.vm;
  let net: VmNetwork | undefined;
  let machine: Machine | undefined;
  let services: Promise<PrimaryServices> | undefined;
  const secondary = new FtSecondary({
    vmId: spec.id,
    key,
    arbiter,
    join,
    listen,
    heartbeatMs: ft.heartbeatMs,
    timeoutMs: ft.timeoutMs,
    cloneTimeoutMs: ft.cloneTimeoutMs,
    dataPath: ft.dataPath,
    createMachine: () => (machine = createVmMachine(spec)),
    beforeLive: async (m) => {
      // Never fails: a port still held (the old primary frozen on this host) is retried until free,
      // and the VM goes live meanwhile — serving what it can beats nothing being live at all.
      let reported = -Infinity;
      const attaching = keepAttachingVmNetwork(m, spec, {
        onBound: (port) => {
          vmMetrics?.setNetworkAttached(true);
          r.event('net', { port }, `udp 127.0.0.1:${port} -> guest 10.0.2.15`);
        },
        onRetry: (err, attempt) => {
          vmMetrics?.setNetworkAttached(false);
          if (performance.now() - reported < 10_000) return;
          reported = performance.now();
          r.event(
            'net-unavailable',
            { address: err.address, attempts: attempt, code: err.code, message: err.message },
            `warning: ${err.message}; the VM runs without its network meanwhile and keeps trying (${attempt} attempts so far)`,
          );
        },
      });
      net = attaching;
      if (values.console) m.on('console', (b) => io.stdout.write(b));
      // A free port is bound before the re-emitted outputs leave, as it always was.
      await attaching.firstAttempt;
    },
    promote: primaryOptions(settings),
    ...(values['log-dir'] ? { logDir: values['log-dir'] } : {}),
    ...(spec.disk?.mode === 'separate' ? { separateDisk: spec.disk.path } : {}),
    ...(tls ? { tls } : {}),
  });
  try {
    return await runSecondary();
  } finally {
    net?.close();
    await (await services?.catch(() => undefined))?.close();
    await secondary.primary?.stop().catch(() => undefined);
    await secondary.stop().catch(() => undefined);
    (secondary.machine ?? machine)?.close();
    await arbiter.close().catch(() => undefined);
  }
  async function runSecondary(): Promise<number> {
  const status = await new Promise<number>((resolve, reject) => {
    secondary.on('warning', (w) => r.event('warning', { message: w }, `warning: ${w}`));
    secondary.on('cloned', (c) => {
      const engine = secondary.machine?.engine;
      r.event('cloned', { ...c, ...(engine ? { engine } : {}) }, `cloned from the primary (${c.pages} pages, ${c.ms.toFixed(0)} ms); replaying${engine ? ` (engine ${engine})` : ''}`);
    });
    secondary.on('lockstep', () => r.event('status', { protected: true, text: 'Protected' }, 'in lockstep with the primary'));
    secondary.on('left', (why) => {
      r.event('left', { reason: why }, `left the pair: ${why}`);
      resolve(EXIT.ok);
    });
    secondary.on('halted', (why, error) => {
      r.event('halted', { reason: why, ...(error ? { code: error.code } : {}) }, `halted: ${why}`);
      // This side's machine could not be made from its configuration: a configuration error.
      resolve(error instanceof OptionError ? EXIT.usage : EXIT.halted);
    });
    secondary.on('ended', (res) => {
      r.event('ended', { result: res.kind }, 'the guest ended');
      resolve(EXIT.ok);
    });
    secondary.on('following', (f) => r.event('following', { ...f }, `the primary migrated: following the target at ${f.primary} from instret ${f.instret}`));
    secondary.on('rejoined', (j) => r.event('rejoined', { ...j }, `the target at ${j.primary} took this side on (epoch ${j.epoch})`));
    secondary.on('restart', () => r.event('restart', {}, 'restarting (asked by the primary); a fresh clone follows'));
    secondary.on('go-live', (g) => r.event('go-live', { ...g }, `LIVE at epoch ${g.epoch} after ${g.ms.toFixed(1)} ms (${g.reason}); re-emitted ${g.reemittedFrames} frames and ${g.reemittedConsole} console bytes (from console position ${g.consolePosition})`));
    secondary.on('promoted', (p) => {
      primarySignals(p, r);
      // Served exactly as a primary's, retrying addresses the frozen old primary may still hold.
      services = startPrimaryServices(p, { key, ...(metrics ? { metrics } : {}), ...(control ? { control } : {}), retry: true, onEvent: (e) => reportService(r, e) });
      const a = p.address;
      r.event('listening', { ...(a ? { host: a.host, port: a.port } : {}), epoch: p.epoch, engine: p.machine.engine }, `now the primary at epoch ${p.epoch} (engine ${p.machine.engine}); a new secondary joins at ${a ? formatHostPort(a) : '?'}`);
      // Its status from the start (a migration's target is protected at once: the secondary follows it).
      r.event('status', { protected: p.status.protected, text: describeStatus(p.status) }, describeStatus(p.status));
      void supervisePrimary(p, r, io, false).then(resolve);
    });
    secondary.start().then(
      () => r.event('joined', { host: join.host, port: join.port }, `joined the primary at ${formatHostPort(join)}`),
      reject,
    );
    onSignals(async () => {
      if (secondary.primary) await secondary.primary.stop();
      else await secondary.stop();
    });
  });
  r.end();
  return status;
  }
}

export const FT_HELP = `Usage: lockstep ft <operation> <vm.json|vm.yaml> --control <host:port> [--key-file <file>]

Runs an operation on the primary of a fault-tolerant pair through its operations API (started with
lockstep primary --control). Each request is signed with a key derived from the pair's key in the
config (or --key-file: the one the primary was started with), with a timestamp and a nonce: it is
good once, and only within 30 s of the primary's clock.

Operations:
  status              protection status, lockstep interval, log bandwidth, epoch (JSON)
  test-failover       hand over to the secondary without losing anything
  restart-secondary   the secondary discards its VM and is cloned again
  disable | enable    turn FT off (the secondary is dismissed) or back on (refused without ft.arbiter)
  suspend             suspend FT (as disable, shown as suspended)
  migrate-secondary   the next secondary to join replaces the current one without a protection gap:
                      it is cloned while the current one protects the VM, and the current one is
                      dismissed only once the new one can take over (start it on the target host
                      with lockstep secondary --join after this)
  migrate             live migration: the next secondary to join (on the target host) is cloned
                      and, once in lockstep, made the primary by a hand-over; this primary then
                      exits 0. A protected VM's secondary follows the target without a new clone
                      (the VM is never unprotected). With FT off (ft.enabled: false) the target
                      runs with FT off too; without ft.arbiter it goes live only on this side's
                      GO_LIVE (docs/fault-tolerance.md, "Live migration without FT"). Such a VM's
                      API also takes POST /ft/migrate {"keyHex": …}: a key for this one migration
                      (what a cluster agent sends; the target is started with the same key)

Exit status: 0 done (the answer on stdout); 64 usage or configuration error; 69 nothing answers at
--control, or the process there is not a primary (yet); 70 the API failed; 75 the operation was refused
in the VM's present state (e.g. a test failover with no secondary in lockstep: try again); 77 the request
was refused (another pair key, or clocks more than 30 s apart).
`;

export async function ftCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { control: { type: 'string' }, 'key-file': { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    io.stdout.write(FT_HELP);
    return EXIT.ok;
  }
  const [op, file] = positionals;
  if (op === undefined || file === undefined || positionals.length !== 2) throw new UsageError('expected an operation and a configuration file');
  if (op !== 'status' && !(FT_OPERATIONS as readonly string[]).includes(op)) throw new UsageError(`unknown operation '${op}'`);
  if (values.control === undefined) throw new UsageError('--control <host:port> is required');
  const addr = hostPortOption('--control', values.control);
  const loaded = await loadConfig(file);
  const key = (await keyOption(values['key-file'])).key ?? loaded.key;
  if (!key) throw new UsageError(`${loaded.source}: no key configured (ft.keyFile, ft.keyHex, ft.keyEnv, or --key-file)`);
  let answer: Awaited<ReturnType<typeof callControl>>;
  try {
    answer = await callControl(`http://${formatHostPort(addr)}`, key, op === 'status' ? 'GET' : 'POST', `/ft/${op}`);
  } catch (err) {
    if (!(err instanceof ControlUnreachableError)) throw err;
    io.stderr.write(`lockstep ft: ${err.message}; is a primary running with --control ${formatHostPort(addr)}?\n`);
    return EXIT.unavailable;
  }
  const ok = answer.status >= 200 && answer.status < 300;
  if (ok) {
    io.stdout.write(answer.text);
    return EXIT.ok;
  }
  const why = typeof answer.body.error === 'string' ? answer.body.error : answer.text.trim() || `HTTP ${answer.status}`;
  io.stderr.write(`lockstep ft: ${op}: ${why}\n`);
  if (answer.status === 401) return EXIT.denied;
  if (answer.status === 409) return EXIT.refused;
  if (answer.status === 503) return EXIT.unavailable;
  return EXIT.software;
}
