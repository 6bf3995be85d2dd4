// The observability module's public surface: diagnostics channels, the Logger interface, the FT metric
// set on a prom-client registry and an opt-in endpoint serving one, a sliding-window rate, refusal
// counting and the limits every HTTP endpoint gets. Re-exports only.
export {
  CHANNEL_NAMES,
  ftChannels,
  logDiagnostics,
  noopLogger,
  type FtCloneMessage,
  type FtFailoverMessage,
  type FtHaltMessage,
  type FtRole,
  type FtStateMessage,
  type FtWarningMessage,
  type LogFn,
  type Logger,
  type TypedChannel,
} from './diagnostics.js';
export {
  LATENCY_BUCKETS_SECONDS,
  LOG_BUDGET_BYTES_PER_SECOND,
  PAUSE_BUCKETS_SECONDS,
  createFtMetrics,
  type CounterChild,
  type FtMetrics,
  type FtVmMetrics,
  type GaugeChild,
  type HistogramChild,
} from './ft-metrics.js';
export { promClient } from './prom-client.js';
export { startMetricsServer, type MetricsServer, type MetricsServerOptions } from './metrics-server.js';
export { Rate } from './rate.js';
export { RefusalLog, type RefusalLogOptions } from './refusals.js';
export { HTTP_LIMITS, createLimitedServer, type HttpLimits, type TlsIdentity } from './http-server.js';
