// A real etcd, a store client and a temporary directory for the cluster tests of one describe block
// (vitest hooks: kept apart from helpers/cluster.ts, which the cluster benchmark also uses).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { EtcdStore } from '../../src/cluster/store/etcd-store.js';
import { killGroups, openEtcd, type GroupProc } from './cluster.js';
import { startEtcd, type EtcdServer } from './etcd.js';

/** What {@link etcdCluster} provides to the tests of a describe block (set once its beforeAll ran). */
export interface EtcdClusterFixture {
  etcd: EtcdServer;
  store: EtcdStore;
  tmp: string;
  /** Processes the tests start; killed (with their groups) after the block. */
  procs: GroupProc[];
}

/**
 * A real etcd, a store client on it and a temporary directory for one describe block: started before its
 * tests, and everything (processes included) stopped and removed after them.
 */
export function etcdCluster(tmpPrefix: string): EtcdClusterFixture {
  const f = { procs: [] as GroupProc[] } as EtcdClusterFixture;
  beforeAll(async () => {
    f.tmp = mkdtempSync(join(tmpdir(), tmpPrefix));
    f.etcd = await startEtcd();
    f.store = await openEtcd(f.etcd.endpoint);
  });
  afterAll(async () => {
    await killGroups(f.procs);
    await f.store?.close();
    await f.etcd?.dispose();
    if (f.tmp) rmSync(f.tmp, { recursive: true, force: true });
  });
  return f;
}
