// Two "hosts" and a client on one layer-2 segment, as network namespaces (the TAP tests and `lockstep
// demo --linux` build it): A and B each have a TAP device (tap0) bridged to their uplink, a switch
// namespace S bridges the uplinks, and C is a client at 10.0.2.2/24. A and B also carry 192.168.77.1
// and .2 for the logging channel. Root and iproute2 needed.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';

export interface L2Hosts {
  ns: { a: string; b: string; c: string; s: string };
  /** Runs a command inside namespace `n`. */
  inNs(n: string, ...args: string[]): SpawnSyncReturns<string>;
  /** Deletes the namespaces. */
  remove(): void;
}

const sh = (cmd: string, args: string[]): SpawnSyncReturns<string> => spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });

/** Builds the segment; returns it, or why it cannot be built here (then nothing is left behind). */
export function setUpL2Hosts(tag: string, needs: string[] = []): L2Hosts | string {
  if (process.platform !== 'linux') return 'TAP devices are Linux only';
  if (process.getuid?.() !== 0) return 'creating network namespaces needs root';
  if (sh('ip', ['-V']).status !== 0) return "'ip' (iproute2) is not installed";
  for (const tool of needs) if (sh(tool, ['-V']).status !== 0) return `'${tool}' is not installed`;
  const ns = { a: `lsA${tag}`, b: `lsB${tag}`, c: `lsC${tag}`, s: `lsS${tag}` };
  const remove = () => {
    for (const n of Object.values(ns)) sh('ip', ['netns', 'del', n]);
  };
  for (const n of Object.values(ns)) {
    const r = sh('ip', ['netns', 'add', n]);
    if (r.status !== 0) {
      remove();
      return `cannot create a network namespace: ${r.stderr.trim()}`;
    }
  }
  const steps: string[][] = [
    ['ip', 'netns', 'exec', ns.s, 'ip', 'link', 'add', 'br0', 'type', 'bridge'],
    ['ip', 'netns', 'exec', ns.s, 'ip', 'link', 'set', 'br0', 'up'],
  ];
  for (const [host, name] of [[ns.a, 'A'], [ns.b, 'B'], [ns.c, 'C']] as const) {
    steps.push(['ip', 'link', 'add', `v${name}${tag}`, 'netns', host, 'type', 'veth', 'peer', 'name', `s${name}${tag}`, 'netns', ns.s]);
    steps.push(['ip', 'netns', 'exec', ns.s, 'ip', 'link', 'set', `s${name}${tag}`, 'master', 'br0', 'up']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'link', 'set', 'lo', 'up']);
  }
  steps.push(['ip', 'netns', 'exec', ns.c, 'ip', 'addr', 'add', '10.0.2.2/24', 'dev', `vC${tag}`]);
  steps.push(['ip', 'netns', 'exec', ns.c, 'ip', 'link', 'set', `vC${tag}`, 'up']);
  // Each host: a bridge joining its uplink and its TAP device; the bridge also carries the host's own
  // address for the logging channel.
  for (const [host, name, ip] of [[ns.a, 'A', '192.168.77.1/24'], [ns.b, 'B', '192.168.77.2/24']] as const) {
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'link', 'add', 'brh', 'type', 'bridge']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'link', 'set', `v${name}${tag}`, 'master', 'brh', 'up']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'link', 'set', 'tap0', 'master', 'brh', 'up']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'addr', 'add', ip, 'dev', 'brh']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'link', 'set', 'brh', 'up']);
  }
  for (const s of steps) {
    const r = sh(s[0]!, s.slice(1));
    if (r.status !== 0) {
      remove();
      return `network set-up failed at '${s.join(' ')}': ${r.stderr.trim()}`;
    }
  }
  return { ns, inNs: (n, ...args) => sh('ip', ['netns', 'exec', n, ...args]), remove };
}
