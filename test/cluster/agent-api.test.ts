// The agent's control API: nothing happens without the bearer token (401, nothing started, nothing
// written); with it, a half is started as a child process, published in the store, fenced against a
// deposed manager's token, and stopped. An in-process Agent on a directory store; the half is a real
// `lockstep primary` process.
import diagnostics from 'node:diagnostics_channel';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/cluster/agent/agent.js';
import { AgentApiError, AgentClient, FENCE_HEADER } from '../../src/cluster/agent/client.js';
import { KEYS, type HostRecord, type InstanceRecord } from '../../src/cluster/manager/layout.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import type { JsonValue } from '../../src/cluster/store/store.js';
import { kvConfig } from '../helpers/ft-pair.js';
import { until } from '../helpers/cluster.js';

const TOKEN = 'tok-0123456789abcdef-0123456789';

describe('agent control API', () => {
  let tmp: string;
  let store: DirStore;
  let agent: Agent;
  let config: JsonValue;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-agent-'));
    store = await DirStore.open({ dir: join(tmp, 'store') });
    agent = await Agent.start({ id: 'a1', store, token: TOKEN, dir: join(tmp, 'a1'), capacity: { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 }, groups: ['rack-1'] });
    const cfg = await kvConfig(join(tmp), {});
    config = JSON.parse(readFileSync(cfg.path, 'utf8')) as JsonValue;
  });

  afterAll(async () => {
    await agent?.close();
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  const call = (method: string, path: string, headers: Record<string, string>, body?: unknown) =>
    fetch(`${agent.url}/v1${path}`, { method, headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });

  it('answers 401 to a missing, malformed or wrong token on every operation, and starts or writes nothing', async () => {
    const start = { vmId: 'kv-test', role: 'primary', config, waitMs: 0 };
    const seen: Array<{ status: number; code?: string }> = [];
    const onApi = (m: unknown) => seen.push(m as { status: number; code?: string });
    diagnostics.subscribe('lockstep:cluster:api', onApi);
    const wrongs: Record<string, string>[] = [
      {},
      { authorization: TOKEN },
      { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` },
      { authorization: 'Bearer ' },
      { authorization: 'Bearer wrong' },
      { authorization: `Bearer ${TOKEN.slice(0, -1)}x` }, // same length, last character differs
      { authorization: `Bearer ${TOKEN}x` },
      { authorization: `Bearer ${TOKEN.toUpperCase()}` },
    ];
    for (const h of wrongs) {
      for (const [method, path, body] of [
        ['GET', '/vms', undefined],
        ['GET', '/host', undefined],
        ['POST', '/vms', start],
        ['DELETE', '/vms/kv-test', undefined],
        ['POST', '/vms/kv-test/failover', {}],
        ['POST', '/vms/kv-test/restart-secondary', {}],
      ] as const) {
        const res = await call(method, path, { ...h, [FENCE_HEADER]: '99' }, body);
        expect(res.status, `${method} ${path} with ${JSON.stringify(h)}`).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
      }
    }
    diagnostics.unsubscribe('lockstep:cluster:api', onApi);
    // Every refusal was published on the diagnostics channel (for an alert on bad tokens).
    expect(seen.length).toBe(wrongs.length * 6);
    expect(seen.every((m) => m.status === 401 && m.code === 'unauthorized')).toBe(true);
    expect(agent.list()).toEqual([]);
    expect(await store.list(KEYS.vmsPrefix)).toEqual([]);
    expect(readdirSync(join(tmp, 'a1', 'vms'))).toEqual([]);
    // A refused request did not move the fence either.
    const info = await new AgentClient({ url: agent.url, token: TOKEN }).host();
    expect(info.fence).toEqual({ token: 0, manager: null });
    // The typed client reports the refusal with its code.
    const err = await new AgentClient({ url: agent.url, token: 'not-the-token-at-all' }).list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentApiError);
    expect([(err as AgentApiError).status, (err as AgentApiError).apiCode, (err as AgentApiError).code]).toEqual([401, 'unauthorized', 'ERR_LOCKSTEP_AGENT_REFUSED']);
  });

  it('with the token: host record, bad requests refused, a primary started and published, a stale fencing token refused, stop', async () => {
    const host = (await store.get(KEYS.host('a1')))?.value as unknown as HostRecord;
    expect(host).toMatchObject({ id: 'a1', api: agent.url, groups: ['rack-1'], maxFtVms: 4 });
    const m5 = new AgentClient({ url: agent.url, token: TOKEN, fence: () => ({ token: 5, manager: 'm-new' }) });
    const m3 = new AgentClient({ url: agent.url, token: TOKEN, fence: () => ({ token: 3, manager: 'm-old' }) });
    const refused = (p: Promise<unknown>) => p.then(() => 'accepted', (e: AgentApiError) => `${e.status} ${e.apiCode}`);
    expect(await refused(m5.start({ vmId: 'Bad Id', role: 'primary', config }))).toBe('400 bad-request');
    expect(await refused(m5.start({ vmId: 'other-vm', role: 'primary', config }))).toBe('400 bad-request'); // vm.id differs
    expect(await refused(m5.start({ vmId: 'kv-test', role: 'secondary', config }))).toBe('400 bad-request'); // no join
    expect(await refused(m5.start({ vmId: 'kv-test', role: 'primary', config: { vm: { id: 'kv-test' } } }))).toBe('400 bad-request');
    // A migration key is only for a VM without FT (kv-test has FT on), and must be a key.
    expect(await refused(m5.start({ vmId: 'kv-test', role: 'secondary', config, join: '127.0.0.1:1', migrationKey: 'ab'.repeat(32) }))).toBe('400 bad-request');
    expect(await refused(m5.start({ vmId: 'kv-test', role: 'primary', config, migrationKey: 'not hex' }))).toBe('400 bad-request');
    // A VM without FT has no secondary: only a migration's target, which needs the migration's key.
    const noFt = { ...(config as Record<string, unknown>), ft: { enabled: false } } as JsonValue;
    const noKey = await m5.start({ vmId: 'kv-test', role: 'secondary', config: noFt, join: '127.0.0.1:1' }).catch((e: AgentApiError) => e);
    expect([(noKey as AgentApiError).status, (noKey as AgentApiError).message]).toEqual([400, expect.stringMatching(/has no secondary \(only a live migration's target, which needs migrationKey\)/)]);
    expect(agent.list()).toEqual([]);

    const v = await m5.start({ vmId: 'kv-test', role: 'primary', config, waitMs: 20_000 });
    expect([v.role, v.state, v.running, v.epoch]).toEqual(['primary', 'running', true, 1]);
    expect(v.listen?.port).toBeGreaterThan(0);
    const rec = (await store.get(KEYS.instance('kv-test', 'a1')))?.value as unknown as InstanceRecord;
    expect(rec).toMatchObject({ vmId: 'kv-test', host: 'a1', role: 'primary', startedAs: 'primary', state: 'running', listen: v.listen, pid: v.pid });
    expect(await refused(m5.start({ vmId: 'kv-test', role: 'primary', config }))).toBe('409 already-running');
    // A deposed manager (older token) is refused, and nothing happens.
    expect(await refused(m3.stop('kv-test'))).toBe('409 stale-fence');
    expect(await refused(m3.failover('kv-test'))).toBe('409 stale-fence');
    expect((await m5.get('kv-test')).running).toBe(true);
    expect(await refused(m5.failover('kv-test'))).toBe('409 not-ready'); // not protected: no secondary
    // Passed to the primary's own operations API, which refuses it: there is no secondary to restart.
    const restart = await m5.restartSecondary('kv-test').catch((e: AgentApiError) => e);
    expect(restart).toBeInstanceOf(AgentApiError);
    expect((restart as AgentApiError).message).toMatch(/restart-secondary refused by the primary of kv-test/);

    const stopped = await m5.stop('kv-test');
    expect([stopped.running, stopped.exit?.code]).toEqual([false, 130]);
    await until('the instance record is deleted', 5_000, async () => ((await store.get(KEYS.instance('kv-test', 'a1'))) === null ? true : undefined));
    const listed = await m5.list();
    expect(listed.map((x) => [x.vmId, x.running])).toEqual([['kv-test', false]]);
    expect(await refused(m5.stop('kv-test'))).toBe('404 not-running');
  });
});
