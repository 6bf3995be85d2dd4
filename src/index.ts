// Public API of lockstep: re-exports only.
export { Machine, RAM_BASE, WATCHDOG_BASE, DEFAULT_MEMORY, MAX_MEMORY, VIRTUAL_INSTRUCTIONS_PER_TICK } from './machine/machine.js';
export type { LoadInfo, RunOptions, MachineEvents } from './machine/machine.js';
export type { ClockMode, Counters, DebugOptions, DebugStop, Engine, ExitReason, JitStats, MachineOptions, NetStats, ReplayCheck, RunResult, Watchpoint } from './machine/types.js';
export { MAX_CMDLINE_BYTES } from './machine/types.js';
export { parseElf } from './machine/elf.js';
export { committedLinux, checkLinuxIdentity, readLinuxBoot, COMMITTED_LINUX, COMMITTED_LINUX_APPEND, MAX_BOOTARGS_BYTES } from './machine/linux.js';
export type { LinuxBootOptions, LinuxBootFiles, LinuxBootInfo, LinuxIdentity } from './machine/linux.js';
export { buildDeviceTree, decodeDeviceTree, encodeDeviceTree, virtBootLayout } from './machine/device-tree.js';
export type { DeviceTreeConfig, DeviceTree, DeviceTreeNode, BootLayout } from './machine/device-tree.js';
export type { ElfImage, ElfSegment, ElfBounds } from './machine/elf.js';
export { LockstepError, AddonLoadError, ElfError, OptionError, MachineStateError, SnapshotError, ListenError, BootError, MissingPackageError } from './errors.js';
export type { SnapshotErrorCode, BootErrorCode } from './errors.js';
export { Recorder, DEFAULT_HASH_INTERVAL } from './log/recorder.js';
export type { RecorderOptions, RecorderEvents } from './log/recorder.js';
export { Replayer } from './log/replayer.js';
export {
  LogReader,
  LogWriter,
  LogFormatError,
  EventKind,
  EndReason,
  LOG_FORMAT_VERSION,
  parseBatch,
  batchSizeAt,
  batchLsn,
  decodeRecords,
  encodeBatch,
  positionCheck,
} from './log/format.js';
export type { LogMetadata, BatchView, LogEvent, BatchBase, LogWriterOptions, LogReaderOptions } from './log/format.js';
export { checkLog } from './log/check.js';
export type { LogSummary } from './log/check.js';
export { UdpForwarder, GUEST_IP, GATEWAY_IP, GATEWAY_MAC } from './machine/net/udp-forward.js';
export type { UdpForward, UdpForwarderStats } from './machine/net/udp-forward.js';
export { KvClient, LoadGenerator, verifyStore, RegisterHistory, LatencyHistogram, ClientError, CLIENT_CHANNELS, EXACTLY_ONCE_MARK, REPLY_CACHE_WINDOW_MS, MAX_RETRY_WINDOW_MS } from './client/index.js';
export type {
  Endpoint,
  KvClientOptions,
  KvItem,
  KvCasItem,
  StoreOptions,
  StoreResult,
  DeleteResult,
  KvClientCounters,
  LoadOptions,
  LoadResult,
  LoadProgress,
  CounterSummary,
  ReadViolation,
} from './client/index.js';
// Fault tolerance (DESIGN §3).
export { FtPrimary, FtError } from './ft/primary.js';
export type { FtPrimaryOptions, FtPrimaryStats, FtPrimaryEvents, FtCommonOptions, CloneReport, MigrateReport, MigrateSteps } from './ft/primary.js';
export { FtSecondary } from './ft/secondary.js';
export type { FtSecondaryOptions, FtSecondaryEvents, GoLiveReport } from './ft/secondary.js';
export { FT_DEFAULTS, FailureDetector, LagController, describeStatus } from './ft/control.js';
export type { ProtectionStatus, NotProtectedReason } from './ft/control.js';
export { FileArbiter } from './ft/arbiter-file.js';
export { EtcdArbiter } from './ft/arbiter-etcd.js';
export { LocalArbiter } from './ft/arbiter-local.js';
export { ArbiterError, INITIAL_EPOCH } from './ft/arbiter.js';
export type { Arbiter, ArbiterCallOptions, ArbiterKind, ClaimResult, EpochHolder } from './ft/arbiter.js';
export { claimEpoch, newOwnerId } from './ft/claim.js';
export type { ClaimEpochOptions } from './ft/claim.js';
export { createVmMachine, loadVm, attachVmNetwork } from './ft/vm.js';
export type { VmSpec } from './ft/vm.js';
export { loadConfig, parseConfig, validateConfig, ConfigError } from './config/index.js';
export { bindFtMetrics } from './ft/metrics.js';
export { createFtMetrics, startMetricsServer, RefusalLog, createLimitedServer, HTTP_LIMITS } from './observability/index.js';
export type { FtMetrics, FtVmMetrics, MetricsServer, RefusalLogOptions, HttpLimits } from './observability/index.js';
// Cluster placement (DESIGN §4): pure and deterministic.
export { Placement, PlacementInputError, explain as explainPlacement, applyAnswer, applyMoves, describeMove, DEFAULT_BALANCE_OPTIONS, DEFAULT_MAX_FT_VMS, DEFAULT_MAX_FT_VCPUS } from './cluster/placement/index.js';
export type { ClusterSnapshot, HostSpec, VmSpec as PlacementVmSpec, PlacementRule, PlacementOptions, PlacementMode, Rejection, PlaceResult, SecondaryResult, PlacementPlan, BalanceOptions, BalanceResult, Move, Recommendation, EvacuationPlan, AuditResult, PlacementAnswer, Spread, HalfMigration, MigrationResult } from './cluster/placement/index.js';
// The logging channel (DESIGN §3).
export { Channel, ChannelServer, connectChannel, protocolDiagnostics, ProtocolError, PROTOCOL_VERSION, MIN_KEY_BYTES, MessageType } from './protocol/index.js';
export type { ChannelOptions, ChannelTlsOptions, ChannelPeer, Message as ChannelMessage, Role as ChannelRole } from './protocol/index.js';
export { startControlServer, FT_OPERATIONS } from './ft/control-server.js';
export type { ControlServer, ControlServerOptions, FtOperation } from './ft/control-server.js';
export { signControlRequest, controlSigningKey, ControlAuthenticator, ControlAuthError, CONTROL_AUTH_SCHEME, CONTROL_AUTH_WINDOW_MS } from './ft/control-auth.js';
export type { ControlRequest, ControlAuthProblem } from './ft/control-auth.js';
export { callControl, ControlUnreachableError } from './ft/control-client.js';
export type { ControlAnswer } from './ft/control-client.js';
// The cluster (DESIGN §4): host agents, the manager, the cluster store.
export { Agent, Manager, AgentClient, AgentApiError, DirStore, EtcdStore, StoreError, openStore, parseStoreSpec, readInventory, pairView, pairViews, buildSnapshot, desiredVm, configToJson, parseHostRule, defaultCompatId, readEvents, checkMigration, KEYS, MANAGER_ELECTION, CLUSTER_CHANNELS, HeartbeatJudge, parseHeartbeat, readHeartbeats, heartbeatPath } from './cluster/index.js';
export type { AgentOptions, AgentClientOptions, StartRequest, HostInfo, InstanceView, ManagerOptions, ManagerEvents, ManagerMode, Automation, ClusterStore, StoreEntry, HostRecord, InstanceRecord, DesiredVm, ClusterEvent, MaintenanceState, PairView, PairStatus, Inventory, MigrateRequest, MigrationCheck, MigrationRefusal, DatastoreHeartbeat, HeartbeatVerdict } from './cluster/index.js';
export { GdbServer, serveGdb } from './debug/server.js';
export type { GdbServerEvents } from './debug/server.js';
export { GdbSession } from './debug/session.js';
export type { SessionEnd } from './debug/session.js';
export { LiveTarget } from './debug/live-target.js';
export { ReplayTarget, CHECKPOINT_INTERVAL, MAX_CHECKPOINTS } from './debug/replay-target.js';
export type { ReplayTargetOptions } from './debug/replay-target.js';
export type { DebugTarget, DebugPoints, ResumeAction, TargetStop } from './debug/target.js';
