// The cluster (DESIGN §4): host agents, the manager, the state store and the placement engine.
// Re-exports only.
export * from './placement/index.js';
export { DirStore } from './store/dir-store.js';
export type { DirStoreOptions } from './store/dir-store.js';
export { EtcdStore } from './store/etcd-store.js';
export type { EtcdStoreOptions } from './store/etcd-store.js';
export { StoreError } from './store/store.js';
export type {
  ClusterStore,
  StoreEntry,
  StoreErrorCode,
  JsonValue,
  WatchEvent,
  WatchOptions,
  Unsubscribe,
  LivenessHandle,
  Leadership,
  LeaderInfo,
  CampaignOptions,
} from './store/store.js';
export { Agent } from './agent/agent.js';
export type { AgentOptions, AgentEvents } from './agent/agent.js';
export { AgentClient, AgentApiError, API_PREFIX, FENCE_HEADER, MANAGER_HEADER } from './agent/client.js';
export type { AgentClientOptions, AgentApiCode, StartRequest, ArmMigrationRequest, HostInfo } from './agent/client.js';
export type { InstanceView, VmEvent, VmExit } from './agent/vm-process.js';
export { startSoloVm, SOLO_STATUS } from './agent/solo.js';
export { vmSpecOf } from '../ft/settings.js';
export type { SoloVm, SoloReport } from './agent/solo.js';
export {
  HeartbeatJudge,
  HeartbeatWriter,
  parseHeartbeat,
  readHeartbeats,
  heartbeatPath,
  HEARTBEAT_DIR,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_HEARTBEAT_WINDOW_MS,
} from './datastore/heartbeat.js';
export type { DatastoreHeartbeat, HeartbeatHalf, PoweredOffHalf, HeartbeatState, HeartbeatVerdict, HeartbeatObservation, ParsedHeartbeat } from './datastore/heartbeat.js';
export { Manager, START_BACKOFF_FIRST_MS, START_BACKOFF_MAX_MS } from './manager/manager.js';
export type { ManagerOptions, ManagerEvents, ManagerMode, Automation } from './manager/manager.js';
export {
  KEYS,
  MANAGER_ELECTION,
  HOST_TTL_MS,
  INSTANCE_TTL_MS,
  HOST_ID,
  defaultCompatId,
} from './manager/layout.js';
export type {
  HostRecord,
  InstanceRecord,
  InstanceRole,
  InstanceState,
  DesiredVm,
  VmHostRuleSpec,
  MaintenanceRequest,
  MaintenanceState,
  ManagerEpoch,
  ClusterEvent,
  StartFailure,
  HaSettings,
  MonitorRecord,
  HostGroup,
  ApplyRequest,
  MigrateRequest,
  FtOperationRequest,
  ClusterFtOperation,
  LostHost,
} from './manager/layout.js';
export { DEFAULT_HA_SETTINGS, haSettingsOf, CLUSTER_FT_OPERATIONS } from './manager/layout.js';
export { FT_SUSPENDED, ftOperationRefusal } from './manager/ft-operations.js';
export { admitVm, clusterAdmission } from './manager/ha.js';
export { checkMigration } from './manager/migration.js';
export type { MigrationCheck, MigrationRefusal } from './manager/migration.js';
export { RESTART_PRIORITIES, DEFAULT_RESTART_PRIORITY, priorityRank, restartPriorityOf, restartOrder, waitsFor } from './manager/priority.js';
export type { RestartPriority } from './manager/priority.js';
export { ProgressTracker, resetAllowed, vmMonitoringOf, DEFAULT_VM_MONITORING, MIN_FAILURE_INTERVAL_MS, VM_MONITORING_MODES } from './manager/monitor.js';
export type { VmMonitoringMode, VmMonitoringSettings, ProgressReport, Stall } from './manager/monitor.js';
export { readInventory, parseInventory, pairView, pairViews, buildSnapshot, closeHosts, hostLoads, hostGroupsOf, maintenanceOf, channelOf } from './manager/inventory.js';
export type { Inventory, PairView, PairStatus, SnapshotOptions, BuiltSnapshot, HostLoad } from './manager/inventory.js';
export { CLUSTER_CHANNELS } from './manager/diagnostics.js';
export { EventWriter, readEvents, trimEvents, DEFAULT_EVENT_LIMIT } from './manager/events.js';
export { desiredVm, configToJson, parseHostRule, DEFAULT_VM_MIPS, DEFAULT_VM_LOG_BANDWIDTH } from './manager/desired.js';
export type { DesiredVmOptions } from './manager/desired.js';
export { parseStoreSpec, openStore } from './manager/store-spec.js';
export type { StoreSpec, OpenStoreOptions } from './manager/store-spec.js';
