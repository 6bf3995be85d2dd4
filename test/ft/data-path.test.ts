// Both data paths of the log, and every mix of them: the primary's and the secondary's choice are
// independent (the wire protocol is the same), so a native primary with a JavaScript secondary and the
// reverse must serve, hold outputs behind acknowledgements, and hand over at one state like two
// native halves do.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FileArbiter, FtPrimary, FtSecondary, LoadGenerator, Machine, attachVmNetwork, type GoLiveReport } from '../../src/index.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-datapath-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const kvserver = readFileSync(new URL('../../guest/bin/kvserver.elf', import.meta.url));
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
let n = 0;

describe('the log data paths', () => {
  for (const [p, s] of [['native', 'native'], ['js', 'native'], ['native', 'js'], ['js', 'js']] as const) {
    it(`primary ${p}, secondary ${s}: requests answered behind acknowledgements, a test failover at one state`, async () => {
      const key = randomBytes(32);
      const dir = mkdtempSync(join(tmp, `arb-${n++}-`));
      const spec = { net: true as const };
      const cmdline = 'kvserver.storage=memory';
      const machine = new Machine({ clock: 'real', devices: spec, cmdline });
      machine.load(kvserver);
      const primary = new FtPrimary({ machine, vmId: 'dp', key, arbiter: new FileArbiter({ dir }), timeoutMs: 20_000, dataPath: p });
      cleanups.push(() => machine.close(), () => primary.stop());
      const addr = await primary.start();
      const secondary = new FtSecondary({ vmId: 'dp', key, arbiter: new FileArbiter({ dir }), join: addr, timeoutMs: 20_000, dataPath: s, createMachine: () => new Machine({ clock: 'real', devices: spec, cmdline }) });
      cleanups.push(() => secondary.machine?.close(), () => secondary.stop(), () => secondary.primary?.stop());
      const lockstep = new Promise<void>((r) => secondary.once('lockstep', () => r()));
      const cloned = new Promise((r) => primary.once('cloned', r));
      await secondary.start();
      await cloned;
      expect(primary.stats().dataPath).toBe(p);
      const net = await attachVmNetwork(machine, { id: 'dp', guest: '', memory: machine.memory, clock: 'real', net: { backend: 'udp', hostPort: 0, guestPort: 11211 } });
      cleanups.push(() => net.close());
      // Every answer left through the output rule: it was held until the secondary acknowledged its log.
      const result = await new LoadGenerator({ endpoints: [{ host: '127.0.0.1', port: net.port! }], clients: 4, setRatio: 0.5, keys: 20, requests: 400, timeoutMs: 2000, retries: 20 }).run();
      expect(result.failed).toBe(0);
      expect(result.acknowledged).toBe(400);
      expect(result.violationCount).toBe(0);
      await lockstep;
      const live = new Promise<GoLiveReport>((r) => secondary.once('go-live', r));
      await primary.testFailover();
      const report = await live;
      expect(report.stateHash).toBe(machine.stateHash());
      expect(report.instret).toBe(machine.counters.instret);
    });
  }
});
