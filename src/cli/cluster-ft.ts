// `lockstep cluster ft <vm> <operation>`: vSphere's Fault Tolerance menu for a VM of the cluster — test
// failover, test restart secondary, suspend and resume FT. Checks the VM's state in the store, writes
// the request; the leading manager asks the VM's primary through its agent and reports in the events.
import { parseArgs } from 'node:util';
import { CLUSTER_FT_OPERATIONS, EventWriter, FT_SUSPENDED, KEYS, ftOperationRefusal, pairViews, readInventory, type ClusterFtOperation, type ClusterStore, type FtOperationRequest, type JsonValue, type PairView } from '../cluster/index.js';
import { positive } from './agent.js';
import { UsageError } from './args.js';
import { waitOnStore } from './cluster-wait.js';
import { EXIT, type CommandIo } from './io.js';

/** What `--wait` waits for after each operation: the VM's state once it is carried out. */
const SETTLED: Record<ClusterFtOperation, (v: PairView, before: PairView) => boolean> = {
  // The other side is the primary now, and protected again by a new secondary.
  'test-failover': (v, before) => v.primary !== undefined && v.primary.host !== before.primary!.host && v.protected && v.others.length === 0,
  // The secondary cloned again (or replaced by another process), in lockstep.
  'restart-secondary': (v, before) =>
    v.protected && v.secondary !== undefined && (v.secondary.incarnation !== before.secondary?.incarnation || (v.secondary.clones ?? 0) > (before.secondary?.clones ?? 0)),
  suspend: (v) => v.primary !== undefined && FT_SUSPENDED.test(v.primary.status) && v.secondary === undefined,
  resume: (v) => v.protected,
};

export async function ftCommand(store: ClusterStore, args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { wait: { type: 'boolean' }, timeout: { type: 'string' } } });
  if (positionals.length !== 2) throw new UsageError(`ft: expected <vm> <operation> (${CLUSTER_FT_OPERATIONS.join(', ')})`);
  const [vm, op] = positionals as [string, string];
  if (!(CLUSTER_FT_OPERATIONS as readonly string[]).includes(op)) throw new UsageError(`ft: unknown operation '${op}' (${CLUSTER_FT_OPERATIONS.join(', ')})`);
  const operation = op as ClusterFtOperation;
  const timeoutMs = values.wait ? positive('timeout', values.timeout, 120, false) * 1000 : 0;
  const before = pairViews(await readInventory(store)).find((x) => x.vm === vm);
  const refused = ftOperationRefusal(operation, before);
  if (refused !== undefined) {
    io.stderr.write(`lockstep cluster ft: ${vm} ${operation}: ${refused}; nothing written\n`);
    return EXIT.dataErr;
  }
  const req: FtOperationRequest = { vm, operation, at: Date.now(), by: 'cli' };
  await store.put(KEYS.ftRequest(vm), req as unknown as JsonValue);
  await new EventWriter(store, 'cli').write({ kind: 'ft-operation-requested', vm, message: `${operation} of ${vm} requested (its primary on ${before!.primary!.host})` });
  io.stdout.write(`${operation} of ${vm} requested; the leading manager asks its primary on ${before!.primary!.host}\n`);
  if (!values.wait) return EXIT.ok;
  return waitOnStore(
    store,
    io,
    timeoutMs,
    (inv) => {
      const v = pairViews(inv).find((x) => x.vm === vm);
      const line = `${vm}: ${v?.text ?? 'no record'}${inv.ftRequests.has(vm) ? '; request pending' : ''}`;
      const failed = [...inv.events].reverse().find((e) => e.kind === 'ft-operation-refused' && e.vm === vm && e.t >= req.at);
      if (failed !== undefined) return { line, failed: `lockstep cluster ft: ${failed.message}` };
      const done = inv.events.some((e) => e.kind === 'ft-operation-done' && e.vm === vm && e.t >= req.at);
      return done && v !== undefined && SETTLED[operation](v, before!) ? { line, exit: EXIT.ok, done: `${operation} of ${vm}: done` } : { line };
    },
    (last) => `lockstep cluster ft: ${operation} of ${vm} not done within ${timeoutMs / 1000} s (last: ${last}; is a manager running? see lockstep cluster events)`,
  );
}
