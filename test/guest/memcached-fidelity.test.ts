// The Linux guest's memcached-compatible service (guest/linux/user/kvd.c) against Debian's memcached:
// the same command sequences over TCP and UDP to both (memcached in the test's network namespace,
// the guest under `lockstep run --linux` on a TAP device there), identical replies required once the
// version string, stats values and CAS numbers are set aside; then stock clients (pymemcache,
// libmemcached's memccapable and memcslap), the write-ahead log across a kill -9, and hostile clients.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DRIVER, PYTHON, ROOT, kvdUnavailable, sh, startKvdGuest, type KvdGuest } from '../helpers/kvd-guest.js';
import { until } from '../helpers/wait.js';
import { normalise, sequences, type Sequence } from './memcached-sequences.js';

const reason =
  kvdUnavailable(['memcached', 'memccapable', 'memcslap']) ??
  (sh(PYTHON, ['-c', 'import pymemcache']).status !== 0 ? 'python3-pymemcache is not installed' : undefined);
if (reason) console.log(`test/guest/memcached-fidelity.test.ts skipped: ${reason}`);

const MC_PORT = 11311; // inside the test's own namespace, so it is free
const ITEM_MIB = 16; // memory for items, both servers (-m)
let guest: KvdGuest | undefined;
let memcached: ChildProcess | undefined;
let dir = '';

interface Result {
  reply?: string;
  datagrams?: { id: number; seq: number; total: number; reserved: number; payload: string }[];
  error?: string;
}

function drive(host: string, port: number, seqs: Sequence[]): Result[] {
  const r = guest!.inNs(PYTHON, [DRIVER], JSON.stringify({ host, port, sequences: seqs }), 600_000);
  if (r.status !== 0) throw new Error(`driver failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Result[];
}

/** One comparable text per sequence: the normalised reply, or for UDP each datagram's header fields
    (request id as "ours"/"other", sequence, total, normalised length) and the normalised payload of
    each run of datagrams. */
function comparable(seq: Sequence, r: Result): string {
  if (r.error) return `ERROR ${r.error}`;
  if (seq.transport === 'tcp') return normalise(r.reply ?? '', seq.stats);
  const runs: string[] = [];
  for (const d of r.datagrams ?? []) {
    if (d.seq === 0) runs.push('');
    runs[runs.length - 1] += d.payload;
  }
  const headers = (r.datagrams ?? []).map((d) => `[${d.id >= 100 && d.id < 100 + seq.chunks.length ? d.id - 100 : 'other'} ${d.seq}/${d.total} ${d.reserved} ${normalise(d.payload, seq.stats).length}]`);
  return headers.join('') + '\n' + runs.map((p) => normalise(p, seq.stats)).join('\n--\n');
}

beforeAll(async () => {
  if (reason) return;
  dir = mkdtempSync(join(tmpdir(), 'lockstep-kvd-'));
  // 256 MiB of RAM leaves the kernel room for thousands of sockets. Both servers get 16 MiB for items
  // (-m 16), so that filling memory to prove eviction takes 25 MB, not the 100 MB that memcached's default
  // 64 MiB would; the disk (256 MiB, sparse) gives each log half far more than that.
  const disk = join(dir, 'wal.img');
  const fd = openSync(disk, 'w');
  ftruncateSync(fd, 256 << 20);
  closeSync(fd);
  guest = await startKvdGuest(String(process.pid % 100000), { disk, memory: '256M', kvdArgs: ['-m', String(ITEM_MIB)] });
  // memcached as Debian ships it, one worker thread so that UDP datagrams are answered in order.
  memcached = spawn('ip', ['netns', 'exec', guest.ns, 'memcached', '-u', 'root', '-l', '127.0.0.1', '-p', String(MC_PORT), '-U', String(MC_PORT), '-t', '1', '-m', String(ITEM_MIB)], { stdio: 'ignore' });
  const probe = guest.inNs(PYTHON, [DRIVER], JSON.stringify({ host: '127.0.0.1', port: MC_PORT, probe: 60 }));
  if (!probe.stdout.includes('"ready": true')) throw new Error(`memcached does not answer: ${probe.stdout}`);
});

afterAll(async () => {
  if (memcached && memcached.exitCode === null) {
    const gone = new Promise((r) => memcached!.once('exit', r));
    memcached.kill('SIGKILL');
    await gone;
  }
  await guest?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(reason !== undefined)('kvd in the Linux guest against memcached 1.6', () => {
  it('answers ≥ 100 command sequences over TCP and UDP exactly as memcached does', () => {
    const seqs = sequences(Math.floor(Date.now() / 1000));
    expect(seqs.length).toBeGreaterThanOrEqual(100);
    const want = drive('127.0.0.1', MC_PORT, seqs);
    const got = drive('10.0.2.15', 11211, seqs);
    const diffs: string[] = [];
    seqs.forEach((s, i) => {
      const a = comparable(s, want[i]!);
      const b = comparable(s, got[i]!);
      if (a !== b) diffs.push(`#${i} ${s.transport} ${s.name}\n  memcached: ${JSON.stringify(a.slice(0, 600))}\n  kvd:       ${JSON.stringify(b.slice(0, 600))}`);
    });
    if (diffs.length) console.log(`guest console tail:\n${guest!.console().slice(-3000)}`);
    console.log(`memcached fidelity: ${seqs.length} sequences (${seqs.filter((s) => s.transport === 'tcp').length} TCP, ${seqs.filter((s) => s.transport === 'udp').length} UDP), ${diffs.length} differ`);
    expect(diffs.join('\n')).toBe('');
  });

  it('serves pymemcache: set, get, incr, cas, delete, get_many', () => {
    const script = `
from pymemcache.client.base import Client
c = Client(('10.0.2.15', 11211), connect_timeout=30, timeout=30)
assert c.version().startswith(b'1.6'), c.version()
assert c.set('py-a', b'alpha', expire=100) is True
assert c.get('py-a') == b'alpha'
assert c.set('py-n', b'41') is True
assert c.incr('py-n', 1) == 42
assert c.decr('py-n', 50) == 0
value, cas = c.gets('py-a')
assert value == b'alpha' and cas is not None
assert c.cas('py-a', b'beta', cas) is True
assert c.cas('py-a', b'gamma', cas) is False
assert c.get('py-a') == b'beta'
assert c.add('py-a', b'x', noreply=False) is False
assert c.append('py-a', b'!', noreply=False) is True and c.get('py-a') == b'beta!'
assert c.set_many({'py-m1': b'1', 'py-m2': b'2', 'py-m3': b'3'}) == []
assert c.get_many(['py-m1', 'py-m2', 'py-m3', 'py-none']) == {'py-m1': b'1', 'py-m2': b'2', 'py-m3': b'3'}
assert c.delete('py-a') is True
assert c.get('py-a') is None
assert c.delete('py-a', noreply=False) is False
assert c.touch('py-m1', 10) is True
big = bytes(range(256)) * 4000
assert c.set('py-big', big) is True and c.get('py-big') == big
print('pymemcache ok')
`;
    const r = guest!.inNs(PYTHON, ['-c', script]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('pymemcache ok');
  });

  it("passes libmemcached's memccapable in ASCII mode", () => {
    const r = guest!.inNs('memccapable', ['-a', '-h', '10.0.2.15', '-p', '11211'], undefined, 300_000);
    const results = [...r.stdout.matchAll(/^(ascii .*?)\s+\[(\w+)\]$/gm)].map((m) => [m[1]!, m[2]!] as const);
    const failed = results.filter(([, v]) => v !== 'pass');
    console.log(`memccapable -a: ${results.length - failed.length} of ${results.length} checks pass${failed.length ? '; failing: ' + failed.map(([n]) => n).join(', ') : ''}`);
    expect(results.length).toBeGreaterThanOrEqual(20);
    expect(failed).toEqual([]);
    expect(r.stdout).toContain('All tests passed');
  });

  it('keeps acknowledged writes across a kill -9 of lockstep (write-ahead log on the disk)', async () => {
    const writes = 'set dur-a 5 0 5\r\nfirst\r\nset dur-b 0 0 1\r\n7\r\nincr dur-b 35\r\nappend dur-a 0 0 4\r\n-two\r\ndelete dur-gone\r\nset dur-gone 0 0 1\r\nx\r\ndelete dur-gone\r\n';
    const before = drive('10.0.2.15', 11211, [{ name: 'writes', transport: 'tcp', chunks: [writes] }]);
    expect(before[0]!.reply).toBe('STORED\r\nSTORED\r\n42\r\nSTORED\r\nNOT_FOUND\r\nSTORED\r\nDELETED\r\n');
    await guest!.restart();
    expect(guest!.console()).toMatch(/kvd: write-ahead log on \/dev\/vda: replayed \d+ records, \d+ items/);
    const after = drive('10.0.2.15', 11211, [{ name: 'reads', transport: 'tcp', chunks: ['get dur-a dur-b dur-gone\r\n'] }]);
    expect(after[0]!.reply).toBe('VALUE dur-a 5 9\r\nfirst-two\r\nVALUE dur-b 0 2\r\n42\r\nEND\r\n');
  });

  it('expires items on the guest clock', async () => {
    const one = (cmd: string) => drive('10.0.2.15', 11211, [{ name: cmd, transport: 'tcp', chunks: [cmd] }])[0]!.reply;
    expect(one('set exp-a 0 2 1\r\nx\r\nmg exp-a t v\r\n')).toMatch(/^STORED\r\nVA 1 t[12]\r\nx\r\n$/);
    await until('exp-a expires (exptime 2 s)', () => one('get exp-a\r\n') === 'END\r\n', { timeoutMs: 60_000, everyMs: 200 });
  });

  it('bounds memory by evicting least recently used items, and the log keeps what memory keeps', async () => {
    // 250 values of 100 KB (25 MB) into 16 MiB: the oldest go, the newest stay, memory stays bounded.
    const script = `
import socket
s = socket.create_connection(('10.0.2.15', 11211), timeout=60)
f = s.makefile('rb')
for i in range(250):
    s.sendall(b'set lru-%d 0 0 100000\\r\\n' % i + bytes([65 + i % 26]) * 100000 + b'\\r\\n')
    assert f.readline() == b'STORED\\r\\n', i
s.sendall(b'stats\\r\\n')
stats = {}
while True:
    line = f.readline().decode().split()
    if line[0] == 'END': break
    stats[line[1]] = line[2]
print(stats['evictions'], stats['curr_items'], stats['limit_maxbytes'])
`;
    const r = guest!.inNs(PYTHON, ['-c', script], undefined, 600_000);
    expect(r.stderr).toBe('');
    const [evictions, items, limit] = r.stdout.trim().split(' ').map(Number);
    console.log(`eviction: 250 sets of 100 KB, ${evictions} evicted, ${items} items left, limit ${limit} bytes`);
    expect(limit).toBe(ITEM_MIB << 20);
    expect(evictions).toBeGreaterThan(0);
    expect(items! * 100_000).toBeLessThanOrEqual(limit!);
    const read = (keys: string[]) => drive('10.0.2.15', 11211, [{ name: 'read', transport: 'tcp', chunks: [`get ${keys.join(' ')}\r\n`] }])[0]!.reply ?? '';
    expect(read(['lru-0', 'lru-1'])).toBe('END\r\n');
    const newest = read(['lru-249']);
    expect(newest.startsWith('VALUE lru-249 0 100000\r\n' + 'P'.repeat(100))).toBe(true);
    // Memory is full of one size class; a value of another size still gets its class's first page, as
    // memcached grants it beyond -m (memcached here was filled the same way).
    const mc = guest!.inNs(PYTHON, ['-c', script.replace("'10.0.2.15', 11211", `'127.0.0.1', ${MC_PORT}`)], undefined, 600_000);
    expect(mc.stderr).toBe('');
    const other = [{ name: 'other class', transport: 'tcp' as const, chunks: [`set lru-other 0 0 3000\r\n${'o'.repeat(3000)}\r\nget lru-other\r\n`] }];
    const kvdOther = drive('10.0.2.15', 11211, other)[0]!.reply;
    expect(kvdOther).toMatch(/^STORED\r\nVALUE lru-other 0 3000\r\n/);
    expect(kvdOther).toBe(drive('127.0.0.1', MC_PORT, other)[0]!.reply);
    await guest!.restart();
    expect(read(['lru-249'])).toBe(newest);
    expect(read(['lru-0'])).toBe('END\r\n');
  });

  it("carries libmemcached's memcslap load with memory full of other sizes: 2000 sets, then 2000 gets, from 4 threads", () => {
    // After the test above, every page belongs to the 100 KB class; memcslap's values (50-5000 bytes)
    // need about 17 other classes. memcslap exits 0 whatever happens: a failed request shows on stderr
    // ("Fatal error for key …") and in fewer keys done (a failed set ends its thread).
    for (const test of ['set', 'get']) {
      const r = guest!.inNs('memcslap', ['--servers=10.0.2.15:11211', '--concurrency=4', '--execute-number=500', `--test=${test}`], undefined, 600_000);
      expect(r.status).toBe(0);
      expect(r.stderr).toBe('');
      if (test === 'get') expect(r.stdout).toMatch(/Time to set +500 keys:/);
      expect(r.stdout).toMatch(new RegExp(`Time to ${test} +2000 keys by +4 threads`));
    }
  });

  it('survives hostile clients: a 2 GiB set, endless garbage, thousands of connections', () => {
    const script = `
import socket, time, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
N = min(3000, hard - 100)
H = ('10.0.2.15', 11211)
def talk(data, want_close=False):
    s = socket.create_connection(H, timeout=60)
    s.sendall(data)
    out = b''
    while not (out.endswith(b'\\r\\n') and not want_close):
        d = s.recv(65536)
        if not d: break
        out += d
    s.close()
    return out
assert talk(b'set huge 0 0 2147483645\\r\\n') == b'SERVER_ERROR object too large for cache\\r\\n'
assert talk(b'set huge 0 0 2147483648\\r\\n') == b'CLIENT_ERROR bad command line format\\r\\n'
# A client that sends garbage without newlines is cut off; one with newlines gets ERROR for each line.
s = socket.create_connection(H, timeout=60)
closed = False
try:
    for i in range(2000):
        s.sendall(b'\\xff' * 4096)
except (BrokenPipeError, ConnectionResetError):
    closed = True
if not closed:
    s.settimeout(60)
    try:
        closed = s.recv(1) == b''
    except ConnectionResetError:
        closed = True
assert closed, 'garbage connection not closed'
s = socket.create_connection(H, timeout=60)
s.sendall(b'garbage\\r\\n' * 1000)
out = b''
while len(out) < 7000:
    d = s.recv(65536)
    if not d: break
    out += d
s.close()
assert out == b'ERROR\\r\\n' * 1000, out[-100:]
# A multi-get asking for 600 000 values in one 1.8 MB line: refused as memcached refuses a get it has no
# memory to answer, instead of queueing 600 000 replies.
assert talk(b'set hk 0 0 1\\r\\nv\\r\\n') == b'STORED\\r\\n'
assert talk(b'get ' + b'hk ' * 600000 + b'\\r\\n') == b'SERVER_ERROR out of memory writing get response\\r\\n'
# N connections at once: kvd serves its -c limit (1024, memcached's default) and tells the rest so;
# every one gets an answer, then all close and the service goes on.
conns = []
for i in range(N):
    conns.append(socket.create_connection(H, timeout=60))
served = refused = 0
for c in conns:
    try:
        c.sendall(b'version\\r\\n')
    except (BrokenPipeError, ConnectionResetError):
        pass
for c in conns:
    r = b''
    try:
        while not r.endswith(b'\\r\\n'):
            d = c.recv(100)
            if not d: break
            r += d
    except ConnectionResetError:
        pass
    if r.startswith(b'VERSION '): served += 1
    elif r == b'ERROR Too many open connections\\r\\n': refused += 1
    else: raise AssertionError(repr(r))
for c in conns:
    c.close()
assert served == min(N, 1024) and served + refused == N, (served, refused)
print('connections', N, 'served', served, 'refused', refused)
# kvd notices the closes in its next rounds; until then a new connection may still be refused.
for attempt in range(600):
    s = socket.create_connection(H, timeout=60)
    s.sendall(b'set after 0 0 2\\r\\nok\\r\\nget after\\r\\n')
    after = b''
    while not after.endswith(b'END\\r\\n') and after != b'ERROR Too many open connections\\r\\n':
        d = s.recv(65536)
        if not d: break
        after += d
    s.close()
    if after != b'ERROR Too many open connections\\r\\n': break
    time.sleep(0.1)
print(after.decode().replace('\\r\\n', '|'))
`;
    const r = guest!.inNs(PYTHON, ['-c', script], undefined, 600_000);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n');
    console.log(`hostile clients: ${lines[0]}`);
    expect(lines[1]).toBe('STORED|VALUE after 0 2|ok|END|');
    expect(guest!.console()).not.toMatch(/kvd (exited|killed)|Kernel panic|Oops/);
  });
});

describe.skipIf(reason !== undefined)('kvd in a fresh 64 MiB guest without a disk, on the virtual clock (CPU time counts guest instructions)', () => {
  let v: KvdGuest | undefined;
  beforeAll(async () => {
    v = await startKvdGuest(`v${process.pid % 100000}`, { clock: 'virtual' });
  });
  afterAll(async () => {
    await v?.remove();
  });

  it("carries memcslap's load with 14 MiB for items: its values need more size classes than there are pages", () => {
    for (const test of ['set', 'get']) {
      const r = v!.inNs('memcslap', ['--servers=10.0.2.15:11211', '--concurrency=4', '--execute-number=500', `--test=${test}`], undefined, 600_000);
      expect(r.status).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(new RegExp(`Time to ${test} +2000 keys by +4 threads`));
    }
    expect(v!.console()).toContain('14 MiB for items');
  });

  it('spends on a get of 600 000 keys about what it spends on one of 150 000: both stop at the same bound, and a line is parsed once', () => {
    // memcached re-measures the rest of a multi-get line (strlen) every 23 keys: quadratic, 87 s of the
    // guest's only loop for the 1.8 MB line. Under the virtual clock the cost is instructions, so the
    // ratio holds on a loaded host.
    const script = `
import socket
H = ('10.0.2.15', 11211)
def talk(data, end):
    s = socket.create_connection(H, timeout=600)
    s.sendall(data)
    out = b''
    while not out.endswith(end):
        d = s.recv(65536)
        if not d: break
        out += d
    s.close()
    return out
def cpu():
    lines = talk(b'stats\\r\\n', b'END\\r\\n').decode().split('\\r\\n')
    st = dict(l.split(' ')[1:3] for l in lines if l.startswith('STAT '))
    return float(st['rusage_user']) + float(st['rusage_system'])
assert talk(b'set hk 0 0 1\\r\\nv\\r\\n', b'\\r\\n') == b'STORED\\r\\n'
costs = []
for n in (150000, 600000):
    before = cpu()
    r = talk(b'get ' + b'hk ' * n + b'\\r\\n', b'\\r\\n')
    assert r == b'SERVER_ERROR out of memory writing get response\\r\\n', r[:100]
    costs.append(cpu() - before)
print(*costs)
`;
    const r = v!.inNs(PYTHON, ['-c', script], undefined, 600_000);
    expect(r.stderr).toBe('');
    const [small, big] = r.stdout.trim().split(' ').map(Number);
    console.log(`kvd CPU (virtual clock): a get of 150 000 keys ${small!.toFixed(3)} s, of 600 000 keys ${big!.toFixed(3)} s`);
    expect(small).toBeGreaterThan(0);
    expect(big).toBeLessThan(2 * small!);
  });
});

describe.skipIf(reason !== undefined)('kvd under lockstep record', () => {
  it('serves the same sequences while recorded, and the replay reproduces the console and state hash', async () => {
    const rdir = mkdtempSync(join(tmpdir(), 'lockstep-kvd-rec-'));
    const disk = join(rdir, 'wal.img');
    const log = join(rdir, 'kvd.log');
    const fd = openSync(disk, 'w');
    ftruncateSync(fd, 16 << 20);
    closeSync(fd);
    const rec = await startKvdGuest(`r${process.pid % 100000}`, { disk, record: log });
    try {
      const seqs = sequences(Math.floor(Date.now() / 1000)).filter((q) => q.transport === 'tcp' && !q.stats);
      const r = rec.inNs(PYTHON, [DRIVER], JSON.stringify({ host: '10.0.2.15', port: 11211, sequences: seqs }), 600_000);
      const replies = JSON.parse(r.stdout) as Result[];
      expect(replies.filter((x) => x.error)).toEqual([]);
      expect(await rec.interrupt()).toBe(130);
      const replay = sh(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'replay', log, '--linux', '--disk', disk, '--net'], undefined, 600_000);
      expect(replay.status, replay.stderr).toBe(0);
      expect(replay.stdout).toBe(rec.console());
      console.log(`record/replay: ${seqs.length} sequences served while recorded; ${replay.stderr.trim().split('\n').pop()}`);
    } finally {
      await rec.remove();
      rmSync(rdir, { recursive: true, force: true });
    }
  });
});
