// `lockstep agent`: the daemon of one host — registers it in the cluster store and runs the VM halves
// the manager asks for. Messages on stderr (JSON lines with --events).
import { readFileSync } from 'node:fs';
import { hostname, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { Agent, DEFAULT_MAX_FT_VCPUS, DEFAULT_MAX_FT_VMS, defaultCompatId, openStore, startSoloVm, type SoloVm } from '../cluster/index.js';
import { UsageError, hostPortOption } from './args.js';
import { EXIT, type CommandIo } from './io.js';
import { FENCED_TEXT, exitWithParent, leaseFromStdin } from './lease.js';

export const AGENT_HELP = `Usage: lockstep agent --id <host> --store dir:<path>|etcd:<url>[,<url>...] [options]
       lockstep agent run-vm <vm.json> [--events] [--exit-with-parent] [--lease-stdin]

Runs the agent of one host: registers the host in the cluster store (a liveness key, so the manager
sees it die), serves an authenticated HTTP+JSON control API, and runs the primaries and secondaries
the manager starts there as child processes. SIGTERM stops them and leaves the cluster cleanly.

Options:
  --id <host>            this host's id (A-Z a-z 0-9 . _ -), default: the machine's host name
  --store <spec>         the cluster store: dir:<path> (one machine) or etcd:<url>[,<url>...]
  --listen <host:port>   the control API (default 127.0.0.1:0)
  --ft-host <address>    this host's address for the VMs' logging channels, and for the API when
                         --listen is a wildcard (0.0.0.0); default: the --listen host
  --token-file <file>    the API's bearer token (at least 16 characters; default: $LOCKSTEP_TOKEN)
  --tls-cert <file>      serve the API over HTTPS with this certificate chain (PEM); it must name the
                         address the API is reached at (--listen's host, or --ft-host) as DNS or IP
  --tls-key <file>       the certificate's private key (PEM)
  --tls-ca <file>        CAs (PEM) that sign the other agents' certificates (their isolation probes)
  --dir <path>           working directory for VM configurations (default ./lockstep-agent-<id>)
  --mips <n>             CPU capacity offered to VMs, MIPS (default 1000)
  --memory-mib <n>       memory offered to VMs, MiB (default 3/4 of this machine's)
  --ft-bandwidth <B>     FT logging bandwidth, bytes/s (default 125000000 = 1 Gbit/s)
  --max-ft-vms <n>       FT halves this host runs at most (default 4; 0: no limit, as vSphere's
                         das.maxftvmsperhost)
  --max-ft-vcpus <n>     vCPUs of the FT halves this host runs at most (default 8; 0: no limit)
  --groups <a,b>         host groups, for VM-host rules
  --compat <id>          FT compatibility id (default ${defaultCompatId()})
  --isolation-response power-off|leave-powered-on
                         a VM without FT whose record the store stops renewing (this host cut off):
                         killed before the record can expire, so a restart elsewhere never runs beside
                         it (power-off, default), or left running (FT halves: their arbiter decides)
  --no-standby           start each VM half as a new process when it is needed, instead of keeping
                         one 'lockstep standby' process ready (Node and lockstep loaded) for it
  --datastore <dir>      a directory every host reaches (where the VMs' disks live): the agent rewrites
                         <dir>/lockstep-heartbeats/<id>.json every second with the halves it runs, also
                         while cut off from the store, so that a manager given the same directory tells
                         a host cut off from the store from a dead one (datastore heartbeats)
  --datastore-heartbeat-ms <n>
                         how often that file is rewritten (default 1000; under a third of the manager's
                         --datastore-window-ms)
  --events               messages as JSON lines on stderr
  -h, --help

Exit status: 0 stopped by SIGTERM or SIGINT; 64 usage or configuration error (a dir: store that does
not exist); 65 the store holds damaged records; 69 --listen is taken, or the store does not answer;
77 the store refused the credentials; 70 internal error.

run-vm runs a VM whose configuration says ft.enabled: false alone: the guest with its devices and
network (no arbiter, no secondary, no logging channel, so it cannot be live-migrated). The agent itself
runs such a VM as 'lockstep primary --key-file <K> --lease-stdin' (FT off, no arbiter: live-migratable). With --lease-stdin it runs only as long as the
agent's last 'lease <CLOCK_MONOTONIC ns>' line on stdin allows, then kills itself (a 'fenced' event).
Its events (--events): net, running, progress (every second: instructions retired and guest
watchdog pets), ended, halted, fenced. Exit status: the guest's exit code; 64 configuration error; 69 the VM's UDP port is taken;
killed by SIGKILL when fenced or orphaned.
`;

/** A positive number option. */
export function positive(name: string, text: string | undefined, dflt: number, integer = true): number {
  if (text === undefined) return dflt;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isSafeInteger(n))) throw new UsageError(`--${name}: must be a positive ${integer ? 'integer' : 'number'}, got '${text}'`);
  return n;
}

/** A non-negative integer option (0 allowed: a cap of 0 means no limit). */
export function nonNegative(name: string, text: string | undefined, dflt: number): number {
  if (text === undefined) return dflt;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n)) throw new UsageError(`--${name}: must be a non-negative integer (0: no limit), got '${text}'`);
  return n;
}

/** A PEM file given to `--<option>`, read whole; a usage error naming the option and file otherwise. */
export function readPem(option: string, file: string | undefined): Buffer | undefined {
  if (file === undefined) return undefined;
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (err) {
    throw new UsageError(`--${option}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN ')) throw new UsageError(`--${option}: ${file} is not PEM (no '-----BEGIN' line)`);
  return pem;
}

/** The control API's token: from a file (one trailing newline removed) or $LOCKSTEP_TOKEN. */
export function readToken(file: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const token = file !== undefined ? readFileSync(file, 'utf8').replace(/\r?\n$/, '') : env.LOCKSTEP_TOKEN;
  if (token === undefined || token === '') throw new UsageError('a token is needed: --token-file <file> or $LOCKSTEP_TOKEN (the agents\' API is never open)');
  if (token.length < 16) throw new UsageError(`the token${file !== undefined ? ` in ${file}` : ''} is ${token.length} characters; use at least 16 (e.g. head -c 24 /dev/urandom | base64)`);
  return token;
}

/** Prints `{event, t, ...}` lines with --events, text otherwise. */
export function reporter(io: CommandIo, json: boolean, verb: string) {
  return (event: string, fields: Record<string, unknown>, text: string) => {
    if (json) io.stderr.write(`${JSON.stringify({ event, t: Date.now(), ...fields })}\n`);
    else io.stderr.write(`lockstep ${verb}: ${text}\n`);
  };
}

/** `lockstep agent run-vm`: a VM without FT, run alone (src/cluster/agent/solo.ts). */
async function runVmCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { events: { type: 'boolean' }, 'exit-with-parent': { type: 'boolean' }, 'lease-stdin': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    io.stdout.write(AGENT_HELP);
    return EXIT.ok;
  }
  if (positionals.length !== 1) throw new UsageError('run-vm: expected one configuration file');
  if (values['exit-with-parent']) exitWithParent();
  const say = reporter(io, values.events === true, 'agent run-vm');
  if (values['lease-stdin']) leaseFromStdin(() => say('fenced', {}, FENCED_TEXT));
  let vm: SoloVm;
  try {
    vm = await startSoloVm(positionals[0]!, say);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    say('halted', { reason: (err as Error).message, ...(typeof code === 'string' ? { code } : {}) }, `cannot start: ${(err as Error).message}`);
    throw err;
  }
  // The heartbeat VM monitoring watches: instret every second (only for the agent, which reads events).
  const beat = values.events === true ? setInterval(() => {
    if (!vm.machine.closed) say('progress', { instret: String(vm.machine.progress), watchdog: String(vm.machine.watchdogPets) }, '');
  }, 1_000) : undefined;
  beat?.unref();
  const stop = () => vm.stop();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  const result = await vm.done;
  clearInterval(beat);
  say('ended', { kind: result.kind, ...(result.kind === 'exit' ? { code: result.code } : {}) }, `the guest ended (${result.kind})`);
  return result.kind === 'exit' ? result.code & 0xff : result.kind === 'stopped' ? EXIT.interrupted : EXIT.software;
}

export async function agentCommand(argv: string[], io: CommandIo): Promise<number> {
  if (argv[0] === 'run-vm') return runVmCommand(argv.slice(1), io);
  const { values } = parseArgs({
    args: argv,
    options: {
      id: { type: 'string' },
      store: { type: 'string' },
      listen: { type: 'string' },
      'ft-host': { type: 'string' },
      'token-file': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      dir: { type: 'string' },
      mips: { type: 'string' },
      'memory-mib': { type: 'string' },
      'ft-bandwidth': { type: 'string' },
      'max-ft-vms': { type: 'string' },
      'max-ft-vcpus': { type: 'string' },
      groups: { type: 'string' },
      compat: { type: 'string' },
      'isolation-response': { type: 'string' },
      'no-standby': { type: 'boolean' },
      datastore: { type: 'string' },
      'datastore-heartbeat-ms': { type: 'string' },
      events: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.stdout.write(AGENT_HELP);
    return EXIT.ok;
  }
  if (values.store === undefined) throw new UsageError('--store dir:<path> or --store etcd:<url> is required');
  const id = values.id ?? hostname().replace(/[^A-Za-z0-9._-]/g, '-');
  const token = readToken(values['token-file']);
  const listen = hostPortOption('--listen', values.listen ?? '127.0.0.1:0');
  const capacity = {
    mips: positive('mips', values.mips, 1000, false),
    memoryBytes: positive('memory-mib', values['memory-mib'], Math.floor((totalmem() * 0.75) / 2 ** 20)) * 2 ** 20,
    logBandwidth: positive('ft-bandwidth', values['ft-bandwidth'], 125_000_000),
  };
  const maxFtVms = nonNegative('max-ft-vms', values['max-ft-vms'], DEFAULT_MAX_FT_VMS);
  const maxFtVcpus = nonNegative('max-ft-vcpus', values['max-ft-vcpus'], DEFAULT_MAX_FT_VCPUS);
  const isolationResponse = values['isolation-response'] ?? 'power-off';
  if (isolationResponse !== 'power-off' && isolationResponse !== 'leave-powered-on') throw new UsageError(`--isolation-response: must be power-off or leave-powered-on, got '${isolationResponse}'`);
  const cert = readPem('tls-cert', values['tls-cert']);
  const key = readPem('tls-key', values['tls-key']);
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--tls-cert and --tls-key go together (HTTPS needs the certificate and its key)');
  const tlsCa = readPem('tls-ca', values['tls-ca']);
  const groups = values.groups === undefined ? [] : values.groups.split(',').map((g) => g.trim()).filter((g) => g !== '');
  const say = reporter(io, values.events === true, 'agent');
  const store = await openStore(values.store);
  let agent: Agent;
  try {
    agent = await Agent.start({
      id,
      store,
      token,
      listen,
      dir: values.dir ?? `lockstep-agent-${id}`,
      capacity,
      maxFtVms,
      maxFtVcpus,
      groups,
      isolationResponse,
      standby: values['no-standby'] !== true,
      ...(cert !== undefined && key !== undefined ? { tls: { cert, key } } : {}),
      ...(tlsCa !== undefined ? { tlsCa } : {}),
      ...(values.datastore !== undefined ? { datastore: values.datastore } : {}),
      ...(values['datastore-heartbeat-ms'] !== undefined ? { datastoreHeartbeatMs: positive('datastore-heartbeat-ms', values['datastore-heartbeat-ms'], 1000) } : {}),
      ...(values['ft-host'] !== undefined ? { ftHost: values['ft-host'] } : {}),
      ...(values.compat !== undefined ? { compatId: values.compat } : {}),
    });
  } catch (err) {
    await store.close();
    throw err;
  }
  agent.on('warning', (m) => say('warning', { message: m }, `warning: ${m}`));
  agent.on('isolated', (vm, response) => say('isolated', { vm, response }, `isolation response for ${vm}: ${response}`));
  agent.on('vm-started', (v) => say('vm-started', { vm: v.vmId, role: v.role, pid: v.pid }, `started the ${v.role} of ${v.vmId} (pid ${v.pid})`));
  agent.on('vm-exited', (v) => say('vm-exited', { vm: v.vmId, role: v.role, exit: v.exit }, `the ${v.role} of ${v.vmId} exited (${v.exit?.signal ?? v.exit?.code}): ${v.status}`));
  const rec = agent.hostRecord();
  const beat = agent.heartbeatFile;
  say('listening', { id, url: agent.url, host: agent.address.host, port: agent.address.port, compatId: rec.compatId, ...(beat !== undefined ? { heartbeat: beat } : {}) }, `host ${id}: control API at ${agent.url}, FT compat id ${rec.compatId}${beat !== undefined ? `, datastore heartbeat ${beat}` : ''}`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  say('stopping', { signal }, `${signal}: stopping the VM halves of ${id} and leaving the cluster`);
  await agent.close();
  await store.close();
  say('stopped', {}, 'stopped');
  return EXIT.ok;
}
