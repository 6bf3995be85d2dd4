// A flood of refused connections is counted in full and logged in a handful of lines: RefusalLog on
// its own, and a primary whose logging channel is hit by hundreds of garbage connections.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { FileArbiter, FtPrimary, Machine, bindFtMetrics, createFtMetrics } from '../../src/index.js';
import { RefusalLog } from '../../src/observability/refusals.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-refusals-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('RefusalLog', () => {
  it('writes the first refusals of a burst in full and the rest as one summary', () => {
    const lines: string[] = [];
    const log = new RefusalLog({ what: 'logging channel', log: (l) => lines.push(l), firstInFull: 5 });
    for (let i = 0; i < 3000; i++) log.refused(`10.0.${i % 7}.1:${40000 + i}`, 'not a lockstep frame');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toBe('logging channel: refused 10.0.0.1:40000: not a lockstep frame');
    expect(log.total).toBe(3000);
    expect(log.pending).toBe(2995);
    log.flush();
    expect(lines).toHaveLength(6);
    expect(lines[5]).toBe('logging channel: refused 2995 more connections from 7 addresses (3000 in all; the last: not a lockstep frame)');
    // A new interval: the next burst starts in full again.
    log.refused('10.9.9.9:1', 'bad key');
    expect(lines[6]).toBe('logging channel: refused 10.9.9.9:1: bad key');
    log.close();
    expect(lines).toHaveLength(7);
  });
});

describe('a primary under a connection flood', () => {
  it('counts every refused connection (stats, metrics, events) and warns in a handful of lines', async () => {
    const machine = new Machine({ clock: 'real' });
    machine.load(readFileSync(new URL('../../guest/bin/echo.elf', import.meta.url)));
    const primary = new FtPrimary({ machine, vmId: 'flood', key: randomBytes(32), arbiter: new FileArbiter({ dir: tmp }) });
    const registry = new Registry();
    const unbind = bindFtMetrics(primary, createFtMetrics(registry).forVm('flood'));
    const warnings: string[] = [];
    let rejected = 0;
    primary.on('warning', (w) => warnings.push(w));
    primary.on('rejected', () => rejected++);
    const { port } = await primary.start();
    try {
      const FLOOD = 300;
      const t0 = performance.now();
      // Garbage that is not a frame: refused at once, one connection after another in small waves.
      for (let wave = 0; wave < FLOOD / 50; wave++) {
        await Promise.all(
          Array.from(
            { length: 50 },
            () =>
              new Promise<void>((resolve) => {
                const s = connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
                s.on('close', () => resolve());
                s.on('error', () => resolve());
              }),
          ),
        );
      }
      for (let i = 0; i < 1000 && primary.stats().rejectedConnections < FLOOD; i++) await new Promise((r) => setTimeout(r, 10));
      expect(primary.stats().rejectedConnections).toBe(FLOOD);
      expect(rejected).toBe(FLOOD);
      expect(await registry.metrics()).toContain(`lockstep_rejected_connections_total{vm="flood",endpoint="channel"} ${FLOOD}`);
      // Before: one warning per connection. Now: the first five of each 10-s interval and one summary
      // line per interval (a loaded machine may spread the flood over more than one).
      const intervals = Math.ceil((performance.now() - t0) / 10_000) + 1;
      const refusals = warnings.filter((w) => w.startsWith('logging channel:'));
      expect(refusals.length).toBeGreaterThanOrEqual(5);
      expect(refusals.length).toBeLessThanOrEqual(6 * intervals);
      await primary.stop(); // writes the summary of what was pending
      const all = warnings.filter((w) => w.startsWith('logging channel:'));
      expect(all.at(-1)).toMatch(/^logging channel: refused \d+ more connections from 1 address \(300 in all; the last: /);
    } finally {
      unbind();
      await primary.stop();
      machine.close();
    }
  });
});
