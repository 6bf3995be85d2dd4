// The agents' API over HTTPS: an agent started with a certificate serves only TLS, and a client trusts it
// only through the CA that signed it, at the name the certificate gives; every failure says which. A
// manager given that CA talks to agents over TLS only — a plain-HTTP agent is never sent the token or a
// VM — and a VM without FT is live-migrated between two HTTPS agents, its migration key crossing only
// TLS. Certificates: test/fixtures/tls (make.sh reproduces them).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/cluster/agent/agent.js';
import { AgentApiError, AgentClient } from '../../src/cluster/agent/client.js';
import { DirStore } from '../../src/cluster/store/dir-store.js';
import { etcdAvailability } from '../helpers/etcd.js';
import { etcdCluster } from '../helpers/etcd-cluster.js';
import { KVSERVER, freeUdpPort, look, runCli, startAgent, startManager, tokenFile, until } from '../helpers/cluster.js';

const TLS = join(__dirname, '..', 'fixtures', 'tls');
const pem = (name: string) => readFileSync(join(TLS, name));
const TOKEN = 'tok-0123456789abcdef-0123456789';
const CAPACITY = { mips: 1000, memoryBytes: 2 ** 30, logBandwidth: 125e6 };

/** The error `p` rejects with (it must reject). */
async function failure(p: Promise<unknown>): Promise<AgentApiError> {
  const r = await p.then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  if (r.ok) throw new Error(`expected a failure, got ${JSON.stringify(r.v)}`);
  expect(r.e).toBeInstanceOf(AgentApiError);
  return r.e as AgentApiError;
}

describe('agent API over HTTPS', () => {
  let tmp: string;
  let store: DirStore;
  let agent: Agent;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'lockstep-agent-tls-'));
    store = await DirStore.open({ dir: join(tmp, 'store') });
    agent = await Agent.start({ id: 'a1', store, token: TOKEN, dir: join(tmp, 'a1'), capacity: CAPACITY, tls: { cert: pem('agent.pem'), key: pem('agent-key.pem') } });
  });

  afterAll(async () => {
    await agent?.close();
    await store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('is served at an https:// URL and answers a client that trusts its CA, by IP address and by DNS name', async () => {
    expect(agent.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(agent.hostRecord().api).toBe(agent.url);
    const host = await new AgentClient({ url: agent.url, token: TOKEN, ca: pem('ca.pem') }).host();
    expect([host.id, host.api]).toEqual(['a1', agent.url]);
    const byName = agent.url.replace('127.0.0.1', 'localhost');
    expect((await new AgentClient({ url: byName, token: TOKEN, ca: pem('ca.pem') }).host()).id).toBe('a1');
    // The token is still required inside TLS.
    const wrong = await failure(new AgentClient({ url: agent.url, token: `${TOKEN}x`, ca: pem('ca.pem') }).host());
    expect([wrong.status, wrong.apiCode]).toEqual([401, 'unauthorized']);
  });

  it('is refused by a client without its CA, or with another CA, saying the certificate is not trusted', async () => {
    for (const ca of [undefined, pem('other-ca.pem')]) {
      const e = await failure(new AgentClient({ url: agent.url, token: TOKEN, ...(ca !== undefined ? { ca } : {}), timeoutMs: 30_000 }).host());
      expect([e.status, e.apiCode]).toEqual([0, 'unreachable']);
      expect(e.message).toMatch(/TLS certificate is not signed by a trusted authority \([A-Z_]+\): give the CA that signed it \(--tls-ca\)/);
    }
  });

  it('is refused by a client that reached it at a name its certificate does not give', async () => {
    const other = await Agent.start({ id: 'a2', store, token: TOKEN, dir: join(tmp, 'a2'), capacity: CAPACITY, tls: { cert: pem('wrong-name.pem'), key: pem('wrong-name-key.pem') } });
    try {
      const e = await failure(new AgentClient({ url: other.url, token: TOKEN, ca: pem('ca.pem'), timeoutMs: 30_000 }).host());
      expect(e.message).toMatch(/TLS certificate does not name the host it was reached at/);
    } finally {
      await other.close();
    }
  });

  it('serves no plain HTTP: a plain request gets no answer, the client names the mismatch, and the agent serves on', async () => {
    const plain = agent.url.replace('https://', 'http://');
    const raw = await new Promise<string>((resolve) => {
      const req = request(`${plain}/v1/host`, { headers: { authorization: `Bearer ${TOKEN}` } }, (res) => resolve(`HTTP ${res.statusCode}`));
      req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      req.end();
    });
    expect(raw).not.toMatch(/^HTTP/);
    const e = await failure(new AgentClient({ url: plain, token: TOKEN, timeoutMs: 30_000 }).host());
    expect(e.apiCode).toBe('unreachable');
    // A TLS client against a plain HTTP server says which it may be.
    const httpAgent = await Agent.start({ id: 'a3', store, token: TOKEN, dir: join(tmp, 'a3'), capacity: CAPACITY });
    try {
      const tlsAtPlain = await failure(new AgentClient({ url: httpAgent.url.replace('http://', 'https://'), token: TOKEN, ca: pem('ca.pem'), timeoutMs: 30_000 }).host());
      expect(tlsAtPlain.message).toMatch(/TLS against a plain HTTP endpoint, or the reverse\?/);
    } finally {
      await httpAgent.close();
    }
    expect((await new AgentClient({ url: agent.url, token: TOKEN, ca: pem('ca.pem') }).host()).id).toBe('a1');
  });

  it('refuses to start with a key that is not the certificate\'s, naming the option', async () => {
    await expect(Agent.start({ id: 'a4', store, token: TOKEN, dir: join(tmp, 'a4'), capacity: CAPACITY, tls: { cert: pem('agent.pem'), key: pem('wrong-name-key.pem') } })).rejects.toThrow(
      /^tls: the certificate and key cannot serve HTTPS: .*key values mismatch/,
    );
  });

  it('CLI: --tls-cert without --tls-key, and a file that is not PEM, are usage errors naming the option', async () => {
    const tok = tokenFile(tmp);
    const alone = await runCli(['agent', '--id', 'x1', '--store', `dir:${join(tmp, 'store')}`, '--token-file', tok.path, '--tls-cert', join(TLS, 'agent.pem')]);
    expect([alone.code, alone.stderr]).toEqual([64, "lockstep agent: --tls-cert and --tls-key go together (HTTPS needs the certificate and its key)\nRun 'lockstep agent --help' for usage.\n"]);
    const notPem = await runCli(['manager', '--store', `dir:${join(tmp, 'store')}`, '--token-file', tok.path, '--tls-ca', tok.path]);
    expect([notPem.code, notPem.stderr]).toEqual([64, `lockstep manager: --tls-ca: ${tok.path} is not PEM (no '-----BEGIN' line)\nRun 'lockstep manager --help' for usage.\n`]);
  });
});

const etcdOk = etcdAvailability();
if (!etcdOk.ok) console.warn(`skipping the HTTPS cluster test: ${etcdOk.why}`);

describe.skipIf(!etcdOk.ok)('cluster over HTTPS', () => {
  const fixture = etcdCluster('lockstep-cluster-tls-');

  it('a manager with a CA never sends a VM to a plain-HTTP agent, places it on an HTTPS one, and live-migrates a VM without FT between HTTPS agents', async () => {
    const { etcd, store, tmp, procs } = fixture;
    const spec = `etcd:${etcd.endpoint}`;
    const tok = tokenFile(tmp);
    const tls = ['--tls-cert', join(TLS, 'agent.pem'), '--tls-key', join(TLS, 'agent-key.pem'), '--tls-ca', join(TLS, 'ca.pem')];
    // First only a plain-HTTP agent: the VM has nowhere to go.
    procs.push(await startAgent({ id: 'plain', store: spec, tokenFile: tok.path, dir: join(tmp, 'plain') }));
    procs.push(await startManager('m1', spec, tok.path, ['--tls-ca', join(TLS, 'ca.pem'), '--automation', 'manual']));
    const path = join(tmp, 'solo1.json');
    writeFileSync(join(tmp, 'solo1.img'), Buffer.alloc(4 << 20));
    writeFileSync(path, JSON.stringify({ vm: { id: 'solo1', guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: join(tmp, 'solo1.img') }, net: { backend: 'udp', hostPort: await freeUdpPort(), guestPort: 11211 } } }, ft: { enabled: false, timeoutMs: 5_000, heartbeatMs: 100 } }));
    expect((await runCli(['cluster', 'create-vm', path, '--store', spec])).code).toBe(0);
    const refused = await until('the manager to refuse the plain-HTTP agent', 60_000, async () =>
      (await look(store)).inv.events.find((e) => e.vm === 'solo1' && /API is not HTTPS/.test(e.message)),
    );
    expect(refused.message).toMatch(/host plain's API is not HTTPS, and this manager talks to agents over TLS only/);
    const plainClient = new AgentClient({ url: (await look(store)).inv.hosts.get('plain')!.api, token: tok.token });
    expect(await plainClient.list()).toEqual([]);

    // Two HTTPS agents: the VM starts on one and is live-migrated to the other.
    await Promise.all(['h1', 'h2'].map(async (id) => procs.push(await startAgent({ id, store: spec, tokenFile: tok.path, dir: join(tmp, id), extra: tls }))));
    const first = await until('solo1 running on an HTTPS agent', 120_000, async () => (await look(store)).views.find((v) => v.vm === 'solo1' && v.status === 'running'));
    const from = first.primary!.host;
    expect(['h1', 'h2']).toContain(from);
    expect((await look(store)).inv.hosts.get(from)!.api).toMatch(/^https:\/\//);
    const to = from === 'h1' ? 'h2' : 'h1';
    const moved = await runCli(['cluster', 'migrate', 'solo1', '--to', to, '--wait', '--timeout', '120', '--store', spec], 150_000);
    const { inv, views } = await look(store);
    const told = inv.events.filter((e) => e.vm === 'solo1').map((e) => `${e.kind}: ${e.message}`).join('\n');
    expect([moved.code, moved.stderr], told).toEqual([0, '']);
    const after = views.find((v) => v.vm === 'solo1')!;
    // Live-migrated (the target started as a secondary went live), never restarted.
    expect([after.status, after.primary!.host, after.primary!.startedAs], told).toEqual(['running', to, 'secondary']);
    // One start that ran, the last; every one before it was ordered onto the plain agent and refused before
    // it was sent (how many depends on how often the manager tried while no HTTPS agent was up).
    const starts = inv.events.filter((e) => e.vm === 'solo1' && e.kind === 'start-primary').map((e) => / primary on (\S+):/.exec(e.message)?.[1]);
    expect(starts.at(-1), told).toBe(from);
    expect(starts.length, told).toBeGreaterThanOrEqual(2);
    expect(new Set(starts.slice(0, -1)), told).toEqual(new Set(['plain']));
    expect(await plainClient.list()).toEqual([]);
  }, 600_000);
});
