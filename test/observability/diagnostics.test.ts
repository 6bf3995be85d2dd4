// Diagnostics channels carry FT events to whoever subscribes; logDiagnostics turns them into log lines.
import diagnosticsChannel from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import { CHANNEL_NAMES, ftChannels, logDiagnostics, noopLogger, type Logger } from '../../src/observability/index.js';

function recordingLogger() {
  const lines: [string, Record<string, unknown>, string | undefined][] = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg?: string) => void lines.push([level, obj, msg]);
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { logger, lines };
}

describe('diagnostics', () => {
  it('names the channels lockstep:ft:<event>', () => {
    expect(Object.values(CHANNEL_NAMES)).toEqual(['lockstep:ft:state', 'lockstep:ft:failover', 'lockstep:ft:clone', 'lockstep:ft:halt', 'lockstep:ft:warning']);
    for (const [key, ch] of Object.entries(ftChannels)) expect(ch.name).toBe(CHANNEL_NAMES[key as keyof typeof CHANNEL_NAMES]);
  });

  it('delivers a published message to a plain diagnostics_channel subscriber', () => {
    const seen: unknown[] = [];
    const fn = (m: unknown) => void seen.push(m);
    expect(ftChannels.failover.hasSubscribers).toBe(false);
    diagnosticsChannel.subscribe('lockstep:ft:failover', fn);
    try {
      expect(ftChannels.failover.hasSubscribers).toBe(true);
      ftChannels.failover.publish({ vm: 'kv1', epoch: 3, reason: 'timeout after 600 ms', outageMs: 640 });
    } finally {
      diagnosticsChannel.unsubscribe('lockstep:ft:failover', fn);
    }
    expect(seen).toEqual([{ vm: 'kv1', epoch: 3, reason: 'timeout after 600 ms', outageMs: 640 }]);
    expect(ftChannels.failover.hasSubscribers).toBe(false);
  });

  it('logs every channel at its level until unsubscribed', () => {
    const { logger, lines } = recordingLogger();
    const stop = logDiagnostics(logger);
    ftChannels.state.publish({ vm: 'kv1', role: 'primary', state: 'protected' });
    ftChannels.failover.publish({ vm: 'kv1', epoch: 2, reason: 'connection closed' });
    ftChannels.clone.publish({ vm: 'kv1', phase: 'done', pauseMs: 12 });
    ftChannels.clone.publish({ vm: 'kv1', phase: 'failed', error: 'peer left' });
    ftChannels.halt.publish({ vm: 'kv1', role: 'primary', reason: 'lost the arbiter' });
    ftChannels.warning.publish({ vm: 'kv1', message: 'the output rule is off' });
    stop();
    ftChannels.warning.publish({ message: 'after unsubscribing' });
    expect(lines.map(([level, obj, msg]) => [level, obj['event'], msg])).toEqual([
      ['info', 'ft-state', 'FT state: protected'],
      ['warn', 'ft-failover', 'failover: connection closed'],
      ['info', 'ft-clone', 'clone done'],
      ['error', 'ft-clone', 'clone failed: peer left'],
      ['warn', 'ft-halt', 'halted: lost the arbiter'],
      ['warn', 'ft-warning', 'the output rule is off'],
    ]);
    expect(lines[1]![1]).toMatchObject({ vm: 'kv1', epoch: 2 });
  });

  it('has a no-op logger that accepts the pino call shape', () => {
    expect(() => {
      noopLogger.info({ a: 1 }, 'x');
      noopLogger.error({});
    }).not.toThrow();
    expect(Object.isFrozen(noopLogger)).toBe(true);
  });
});
