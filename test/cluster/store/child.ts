// A store client in its own process, for the liveness and election tests: it registers a liveness
// key or campaigns, reports over IPC, and is killed with SIGKILL by the test.
import type { ClusterStore } from '../../../src/cluster/store/store.js';

/** What the parent asks the child to do (argv[2], JSON). */
export interface ChildConfig {
  store: { kind: 'dir'; dir: string } | { kind: 'etcd'; endpoint: string };
  role: 'register' | 'campaign' | 'count';
  /** The liveness key, or the election name. */
  name: string;
  /** The candidate id / the value's owner. */
  id: string;
  ttlMs: number;
  /** `count`: how many times to increment the number at key `name` with get + compareAndSet. */
  times?: number;
}

const send = (m: Record<string, unknown>) => process.send?.(m);

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]!) as ChildConfig;
  // Only the store asked for is loaded: a directory store's child has no use for the etcd client and gRPC.
  const store: ClusterStore =
    cfg.store.kind === 'dir'
      ? await (await import('../../../src/cluster/store/dir-store.js')).DirStore.open({ dir: cfg.store.dir, pollIntervalMs: 50 })
      : await (await import('../../../src/cluster/store/etcd-store.js')).EtcdStore.open({ endpoints: [cfg.store.endpoint] });
  process.on('message', (m: { cmd?: string }) => {
    if (m.cmd === 'exit') void store.close().finally(() => process.exit(0));
  });
  process.on('disconnect', () => process.exit(0));
  if (cfg.role === 'register') {
    const h = await store.register(cfg.name, { owner: cfg.id, pid: process.pid }, cfg.ttlMs);
    h.on('lost', (err: Error) => send({ event: 'lost', message: err.message }));
    send({ event: 'registered', token: h.token });
  } else if (cfg.role === 'count') {
    let conflicts = 0;
    for (let i = 0; i < (cfg.times ?? 0); i++) {
      for (;;) {
        const cur = await store.get(cfg.name);
        if (await store.compareAndSet(cfg.name, cur?.revision ?? null, ((cur?.value as number) ?? 0) + 1)) break;
        conflicts++;
      }
    }
    send({ event: 'counted', conflicts });
  } else {
    const l = await store.campaign(cfg.name, cfg.id, { ttlMs: cfg.ttlMs });
    l.on('elected', (token: number) => send({ event: 'elected', token }));
    l.on('lost', (err: Error) => send({ event: 'lost', message: err.message }));
    send({ event: 'campaigning' });
  }
}

main().catch((err: unknown) => {
  send({ event: 'error', message: String((err as Error)?.stack ?? err) });
  process.exit(1);
});
