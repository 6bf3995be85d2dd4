// Feeds a primary's figures into the Prometheus FT metric set (src/observability) on a registry the
// application owns: events for latencies and counts, a timer for the gauges. Nothing global.
import type { FtVmMetrics } from '../observability/index.js';
import type { FtPrimary } from './primary.js';

/** Binds `primary` to `m` until the returned function is called. */
export function bindFtMetrics(primary: FtPrimary, m: FtVmMetrics, intervalMs = 1000): () => void {
  let lastBytes = 0;
  const onAck = (ms: number) => m.ackLatency.observe(ms / 1000);
  const onRelease = (ms: number) => m.outputDelay.observe(ms / 1000);
  const onCloned = (r: { pauseMs: number }) => m.clonePause.observe(r.pauseMs / 1000);
  const onLost = () => m.failovers.inc();
  const rejected = m.rejected('channel');
  const onRejected = () => rejected.inc();
  primary.on('ack', onAck);
  primary.on('release', onRelease);
  primary.on('cloned', onCloned);
  primary.on('secondary-lost', onLost);
  primary.on('rejected', onRejected);
  const sample = () => {
    const s = primary.stats();
    if (s.logBytes > lastBytes) m.logBytes.inc(s.logBytes - lastBytes);
    lastBytes = s.logBytes;
    m.setLogBandwidth(s.logBandwidth);
    m.lagSeconds.set(s.lagSeconds);
    m.lagInstructions.set(s.lagInstructions);
    m.mips.set(s.mips);
    m.setProtected(s.status.protected);
    m.throttleRatio.set(s.throttle);
    m.unackedBytes.set(s.unackedBytes);
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    primary.off('ack', onAck);
    primary.off('release', onRelease);
    primary.off('cloned', onCloned);
    primary.off('secondary-lost', onLost);
    primary.off('rejected', onRejected);
  };
}
