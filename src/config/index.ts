// The configuration module's public surface: one file (JSON or YAML) describing a fault-tolerant VM,
// validated with messages that name the bad field. Re-exports only.
export { formatHostPort, parseHostPort } from './address.js';
export { ConfigError, type ConfigIssue } from './errors.js';
export { checkConfigFiles, ftKeyFileBytes, loadConfig, readFtKey } from './load.js';
export { formatFromPath, parseConfig, type ConfigFormat } from './parse.js';
export { validateConfig } from './validate.js';
export {
  CONFIG_DEFAULTS,
  CONFIG_LIMITS,
  type ArbiterConfig,
  type DevicesConfig,
  type DiskConfig,
  type EtcdArbiterConfig,
  type FileArbiterConfig,
  type FtCommonConfig,
  type FtConfig,
  type FtDisabledConfig,
  type FtEnabledConfig,
  type FtKeyConfig,
  type HostPort,
  type LoadedConfig,
  type LockstepConfig,
  type MetricsConfig,
  type NetConfig,
  type TapNetConfig,
  type TlsConfig,
  type UdpNetConfig,
  type ValidatedConfig,
  type VmConfig,
} from './types.js';
