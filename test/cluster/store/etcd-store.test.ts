// EtcdStore: the ClusterStore contract against a real etcd (skipped, saying why, when the etcd
// binary is missing), plus connection failures.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import { EtcdStore } from '../../../src/cluster/store/etcd-store.js';
import { StoreError } from '../../../src/cluster/store/store.js';
import { etcdAvailability, freePort, startEtcd, type EtcdServer } from '../../helpers/etcd.js';
import { storeContract } from './contract.js';

const etcd = etcdAvailability();
if (!etcd.ok) console.warn(`skipping the etcd store tests: ${etcd.why}`);

describe.skipIf(!etcd.ok)('EtcdStore (real etcd)', () => {
  let server: EtcdServer;
  beforeAll(async () => {
    server = await startEtcd();
  });
  afterAll(async () => {
    await server?.dispose();
  });

  describe('contract', () => {
    storeContract(() => ({
      open: () => EtcdStore.open({ endpoints: [server.endpoint] }),
      child: () => ({ kind: 'etcd', endpoint: server.endpoint }),
      exactWatch: true,
      ttlMs: 2_000,
    }));
  });

  it('keeps keys under <prefix>kv/ and reports values it did not write as corrupt', async () => {
    const store = await EtcdStore.open({ endpoints: [server.endpoint], prefix: 'p1/' });
    const raw = new Etcd3({ hosts: server.endpoint });
    try {
      await store.put('hosts/h1', { up: true });
      expect(store.etcdKey('hosts/h1')).toBe('p1/kv/hosts/h1');
      expect(await raw.get('p1/kv/hosts/h1').string()).toBe('{"up":true}');
      await raw.put('p1/kv/bad').value('not json');
      await expect(store.get('bad')).rejects.toMatchObject({ code: 'ERR_LOCKSTEP_STORE_CORRUPT' });
    } finally {
      raw.close();
      await store.close();
    }
  });

  it('an endpoint where nothing listens: ERR_LOCKSTEP_STORE_UNAVAILABLE from open', async () => {
    const err = await EtcdStore.open({ endpoints: [`http://127.0.0.1:${await freePort()}`], timeoutMs: 500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('ERR_LOCKSTEP_STORE_UNAVAILABLE');
  });
});
