// A half stopped while it is still starting settles: a primary stopped before its logging channel
// listens rejects start() with a coded error instead of waiting forever (which also hung
// FtSecondary.stop() behind a go-live whose promoted primary was stopped that early).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileArbiter, FtPrimary, Machine } from '../../src/index.js';
import { ChannelServer } from '../../src/protocol/channel.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-stop-starting-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const mixed = readFileSync(new URL('../../guest/bin/mixed.elf', import.meta.url));

/** How `p` settled, or 'pending' if it has not within `ms` (a bound on a hang, not a time budget). */
function settled(p: Promise<unknown>, ms = 10_000): Promise<string> {
  return Promise.race([
    p.then(
      () => 'resolved',
      (e: unknown) => String((e as { code?: string }).code ?? e),
    ),
    new Promise<string>((r) => setTimeout(() => r('pending'), ms).unref()),
  ]);
}

describe('stopped while starting', () => {
  it('a channel server closed before it listens rejects its listen() with ERR_LOCKSTEP_PROTOCOL_CLOSED', async () => {
    const server = new ChannelServer({ key: randomBytes(32), vmId: 'x', role: 'primary', epoch: 1 });
    const listening = server.listen(0, '127.0.0.1');
    await server.close();
    expect(await settled(listening)).toBe('ERR_LOCKSTEP_PROTOCOL_CLOSED');
  });

  it('a primary stopped before its logging channel listens rejects start() with ERR_LOCKSTEP_FT_STATE and runs nothing', async () => {
    const machine = new Machine({ clock: 'real' });
    machine.load(mixed);
    try {
      const primary = new FtPrimary({ machine, vmId: 'early', key: randomBytes(32), arbiter: new FileArbiter({ dir: mkdtempSync(join(tmp, 'a-')) }), epoch: 1 });
      const started = primary.start();
      await primary.stop();
      expect(await settled(started)).toBe('ERR_LOCKSTEP_FT_STATE');
      expect(machine.running).toBe(false);
    } finally {
      machine.close();
    }
  });
});
