// `lockstep manager`: campaigns to lead the cluster and, while it leads, keeps every FT VM placed and
// protected. Several may run; only the leader acts. Messages on stderr (JSON lines with --events).
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { Manager, defaultCompatId, openStore, type Automation, type ManagerMode } from '../cluster/index.js';
import { positive, readPem, readToken, reporter } from './agent.js';
import { UsageError } from './args.js';
import { EXIT, type CommandIo } from './io.js';

export const MANAGER_HELP = `Usage: lockstep manager --store dir:<path>|etcd:<url>[,<url>...] [options]

Campaigns for the cluster's leadership; the leader places new VMs (both halves of an FT pair), gives
every FT VM that lost a half a new secondary, drains hosts put into maintenance mode, and applies or
records load-balancing moves. Run two for availability: only the leader acts, and every request it
makes carries its fencing token.

Options:
  --store <spec>             the cluster store: dir:<path> or etcd:<url>[,<url>...]
  --id <name>                this manager's id (default: host name and pid)
  --mode integrated|legacy   integrated (default): FT-aware placement and balancing of both halves;
                             legacy: FT pairs placed once (primary on its registered host), never balanced
  --baseline <compat id>     FT compatibility baseline in integrated mode (default ${defaultCompatId()})
  --automation manual|automatic
                             apply load-balancing moves and repairs of broken rules (automatic, default:
                             vSphere's fully automated DRS; a primary moves by live migration, never by
                             a switch that would leave it unprotected) or only record them (manual;
                             lockstep cluster apply has the next ones applied)
  --token-file <file>        the agents' API token (default: $LOCKSTEP_TOKEN)
  --tls-ca <file>            CAs (PEM) that sign the agents' certificates: the manager then talks to
                             agents over HTTPS only (an agent serving plain HTTP is refused)
  --interval-ms <n>          a reconcile pass at least this often (default 500; store changes trigger one sooner)
  --balance-interval-ms <n>  at most one balancing move this often (default 10000)
  --datastore <dir>          the directory the agents write their datastore heartbeats in (their
                             --datastore): a host whose store records expired while its heartbeat still
                             changes is cut off from the store, not dead — the VM halves it lists are
                             neither restarted elsewhere nor fenced (default: none, the store alone)
  --datastore-window-ms <n>  a heartbeat is alive while it changed within this window (default 3000)
  --events                   messages as JSON lines on stderr
  -h, --help

Exit status: 0 stopped by SIGTERM or SIGINT (it resigned first); 64 usage or configuration error (a
dir: store that does not exist: 'lockstep cluster init' makes one); 65 the store holds damaged
records; 69 the store does not answer; 77 the store refused the credentials; 70 internal error.
`;

export async function managerCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      store: { type: 'string' },
      id: { type: 'string' },
      mode: { type: 'string' },
      baseline: { type: 'string' },
      automation: { type: 'string' },
      'token-file': { type: 'string' },
      'tls-ca': { type: 'string' },
      'interval-ms': { type: 'string' },
      'balance-interval-ms': { type: 'string' },
      datastore: { type: 'string' },
      'datastore-window-ms': { type: 'string' },
      events: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.stdout.write(MANAGER_HELP);
    return EXIT.ok;
  }
  if (values.store === undefined) throw new UsageError('--store dir:<path> or --store etcd:<url> is required');
  const mode = (values.mode ?? 'integrated') as ManagerMode;
  if (mode !== 'integrated' && mode !== 'legacy') throw new UsageError(`--mode: must be integrated or legacy, got '${values.mode}'`);
  const automation = (values.automation ?? 'automatic') as Automation;
  if (automation !== 'manual' && automation !== 'automatic') throw new UsageError(`--automation: must be manual or automatic, got '${values.automation}'`);
  if (mode === 'legacy' && values.baseline !== undefined) throw new UsageError('--baseline: legacy mode has no compatibility baseline');
  const id = values.id ?? `${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}-${process.pid}`;
  const token = readToken(values['token-file']);
  const tlsCa = readPem('tls-ca', values['tls-ca']);
  const say = reporter(io, values.events === true, 'manager');
  const store = await openStore(values.store);
  let m: Manager;
  try {
    m = await Manager.start({
      store,
      id,
      token,
      mode,
      automation,
      ...(tlsCa !== undefined ? { tlsCa } : {}),
      ...(values.baseline !== undefined ? { baseline: values.baseline } : {}),
      ...(values['interval-ms'] !== undefined ? { intervalMs: positive('interval-ms', values['interval-ms'], 500) } : {}),
      ...(values['balance-interval-ms'] !== undefined ? { balanceIntervalMs: positive('balance-interval-ms', values['balance-interval-ms'], 10_000) } : {}),
      ...(values.datastore !== undefined ? { datastore: values.datastore } : {}),
      ...(values['datastore-window-ms'] !== undefined ? { datastoreWindowMs: positive('datastore-window-ms', values['datastore-window-ms'], 3000) } : {}),
    });
  } catch (err) {
    await store.close();
    throw err;
  }
  m.on('elected', (t) => say('elected', { id, token: t }, `${id} leads the cluster (fencing token ${t})`));
  m.on('deposed', (why) => say('deposed', { id, reason: why }, `${id} no longer leads: ${why}`));
  m.on('event', (e) => say('cluster-event', { ...e }, `${e.kind}${e.vm !== undefined ? ` ${e.vm}` : ''}${e.host !== undefined ? ` @${e.host}` : ''}: ${e.message}`));
  m.on('warning', (w) => say('warning', { message: w }, `warning: ${w}`));
  say('started', { id, mode, automation, baseline: m.baseline ?? null }, `${id} campaigning (${mode} mode${m.baseline !== undefined ? `, baseline ${m.baseline}` : ''}, automation ${automation})`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  say('stopping', { signal }, `${signal}: resigning`);
  await m.stop();
  await store.close();
  return EXIT.ok;
}
