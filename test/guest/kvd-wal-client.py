#!/usr/bin/python3
# Client for test/guest/kvd-wal.test.ts (run inside the test's network namespace): writes many distinct
# keys to kvd through its write-ahead log, then reads every key back and summarises what it finds. Reads
# {host, port, mode, ...} as JSON on stdin, prints one JSON object. Waits for replies by content, never
# by time (a socket timeout only turns a lost reply into an error).
#
#   mode "load":  {bytes}: sets of distinct keys (values of 40-299 bytes, so several size classes) until
#                 the log records written pass `bytes`; every 10th set also overwrites the key written
#                 200 sets before, every 50th deletes the one written 300 before. Pipelined 100 commands
#                 at a time. Prints {"last": {key: value or null}, "order": [keys by last write]}.
#   mode "check": {last, order}: gets every key, prints the summary the test asserts on, with kvd's
#                 `stats`, `stats items` (per-class evicted) and `stats wal`.
#   mode "burst": {bytes}: `stats reset`, then `noreply` sets of distinct keys with 200-byte values,
#                 `bytes` of records in all, sent at once without waiting, then `mn` (its reply marks the
#                 end). Prints kvd's pid before and after, `stats`, `stats wal`, how many of the burst's
#                 keys are present, and the index of the oldest key present with a wrong value (or -1).
import hashlib
import json
import socket
import sys

PIPELINE = 100
REC_FIXED = 16 + 26  # a SET record's header and fixed body fields (guest/linux/user/kvd.c)


def connect(host, port):
    s = socket.create_connection((host, port), timeout=600)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, s.makefile('rb')


def value(i, gen):
    n = 40 + (i * 37) % 260
    base = b'v%d.%d-' % (i, gen)
    return (base * (n // len(base) + 1))[:n]


def load(host, port, limit):
    s, f = connect(host, port)
    last, seq = {}, {}
    written, i, tick = 0, 0, 0
    while written < limit:
        cmds, ops = [], []
        while len(ops) < PIPELINE:
            key = b'w%06d' % i
            v = value(i, 0)
            cmds.append(b'set %s 0 0 %d\r\n%s\r\n' % (key, len(v), v))
            ops.append(('set', key, v))
            written += REC_FIXED + len(key) + len(v)
            if i % 10 == 0 and i >= 200:
                k = b'w%06d' % (i - 200)
                v = value(i - 200, 1)
                cmds.append(b'set %s 0 0 %d\r\n%s\r\n' % (k, len(v), v))
                ops.append(('set', k, v))
                written += REC_FIXED + len(k) + len(v)
            if i % 50 == 25 and i >= 300:
                k = b'w%06d' % (i - 300)
                cmds.append(b'delete %s\r\n' % k)
                ops.append(('delete', k, None))
            i += 1
        s.sendall(b''.join(cmds))
        for op, key, v in ops:
            line = f.readline()
            if op == 'set':
                if line != b'STORED\r\n':
                    raise SystemExit('set %r: %r' % (key, line))
                last[key] = v
            else:
                if line not in (b'DELETED\r\n', b'NOT_FOUND\r\n'):
                    raise SystemExit('delete %r: %r' % (key, line))
                last[key] = None
            tick += 1
            seq[key] = tick
    s.close()
    order = sorted(last, key=lambda k: seq[k])
    return {'last': {k.decode(): (v.decode() if v is not None else None) for k, v in last.items()},
            'order': [k.decode() for k in order]}


def stats(s, f, sub):
    s.sendall(b'stats %s\r\n' % sub if sub else b'stats\r\n')
    out = {}
    while True:
        line = f.readline().decode().split()
        if not line or line[0] in ('END', 'ERROR'):
            return out
        out[line[1]] = int(line[2]) if line[2].isdigit() else line[2]


def check(host, port, last, order):
    s, f = connect(host, port)
    present = {}
    keys = list(last)
    for at in range(0, len(keys), PIPELINE):
        batch = keys[at:at + PIPELINE]
        s.sendall(b'get ' + b' '.join(k.encode() for k in batch) + b'\r\n')
        while True:
            line = f.readline()
            if line == b'END\r\n':
                break
            _, key, _, n = line.split()
            data = f.read(int(n) + 2)
            present[key.decode()] = data[:-2].decode()
    wrong = [k for k, v in present.items() if last.get(k) != v]
    expected = [k for k in order if last[k] is not None]
    missing = [k for k in expected if k not in present]
    # Eviction order: what is kept must be the most recently written (a suffix of the write order).
    rank = {k: n for n, k in enumerate(expected)}
    oldest_present = min((rank[k] for k in present if k in rank), default=-1)
    newest_missing = max((rank[k] for k in missing), default=-1)
    items = stats(s, f, b'items')
    evicted = sum(v for k, v in items.items() if k.endswith(':evicted'))
    result = {
        'keys': len(keys), 'expected': len(expected), 'present': len(present), 'missing': len(missing),
        'wrong': wrong[:5], 'wrong_count': len(wrong),
        'oldest_present_rank': oldest_present, 'newest_missing_rank': newest_missing,
        'digest': hashlib.sha256(json.dumps(sorted(present.items())).encode()).hexdigest(),
        'stats': stats(s, f, b''), 'class_evicted': evicted, 'wal': stats(s, f, b'wal'),
    }
    s.close()
    return result


def burst(host, port, limit):
    s, f = connect(host, port)
    pid = stats(s, f, b'')['pid']
    s.sendall(b'stats reset\r\n')
    assert f.readline() == b'RESET\r\n'
    cmds, written, n = [], 0, 0
    while written < limit:
        key, v = b'b%06d' % n, (b'%d.' % n * 200)[:200]
        cmds.append(b'set %s 0 0 %d noreply\r\n%s\r\n' % (key, len(v), v))
        written += REC_FIXED + len(key) + len(v)
        n += 1
    s.sendall(b''.join(cmds) + b'mn\r\n')
    line = f.readline()
    if line != b'MN\r\n':
        raise SystemExit('burst: %r instead of MN' % line)
    present, wrong = [], -1
    for at in range(0, n, PIPELINE):
        s.sendall(b'get ' + b' '.join(b'b%06d' % i for i in range(at, min(n, at + PIPELINE))) + b'\r\n')
        while True:
            line = f.readline()
            if line == b'END\r\n':
                break
            _, key, _, size = line.split()
            data = f.read(int(size) + 2)[:-2]
            i = int(key[1:])
            present.append(i)
            if data != (b'%d.' % i * 200)[:200] and wrong < 0:
                wrong = i
    result = {'sets': n, 'present': len(present), 'oldest_present': min(present, default=-1),
              'newest_missing': max(set(range(n)) - set(present), default=-1), 'wrong': wrong,
              'pid_before': pid, 'stats': stats(s, f, b''), 'wal': stats(s, f, b'wal')}
    s.close()
    return result


def main():
    req = json.load(sys.stdin)
    if req['mode'] == 'load':
        out = load(req['host'], req['port'], req['bytes'])
    elif req['mode'] == 'burst':
        out = burst(req['host'], req['port'], req['bytes'])
    else:
        out = check(req['host'], req['port'], req['last'], req['order'])
    json.dump(out, sys.stdout)


main()
