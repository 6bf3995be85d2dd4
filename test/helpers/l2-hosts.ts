// The layer-2 segment of network namespaces the TAP tests build (the code lives with the demo, which
// builds the same one): see src/cluster/agent/l2-hosts.ts.
export { setUpL2Hosts, type L2Hosts } from '../../src/cluster/agent/l2-hosts.js';
