// The observability module's public surface: diagnostics channels, the Logger interface, an opt-in
// Prometheus registry and endpoint, the FT metric set, a sliding-window rate, refusal counting and the
// limits every HTTP endpoint gets. Re-exports only.
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
  type FtMetrics,
  type FtVmMetrics,
} from './ft-metrics.js';
export {
  Counter,
  Gauge,
  Histogram,
  PROMETHEUS_CONTENT_TYPE,
  Registry,
  formatValue,
  type CounterChild,
  type GaugeChild,
  type HistogramChild,
  type HistogramOptions,
  type Labels,
  type MetricOptions,
} from './metrics.js';
export { startMetricsServer, type MetricsServer, type MetricsServerOptions } from './metrics-server.js';
export { Rate } from './rate.js';
export { RefusalLog, type RefusalLogOptions } from './refusals.js';
export { HTTP_LIMITS, createLimitedServer, type HttpLimits } from './http-server.js';
