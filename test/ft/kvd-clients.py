#!/usr/bin/python3
# A stock memcached client load for test/ft/linux-kvd-failover.test.ts (run in the client namespace):
# several pymemcache clients, each on ONE persistent TCP connection for the whole run, each writing
# unique values and incrementing its own counter, recording every acknowledged write and incr result,
# and counting every connection error, reset and reconnect (pymemcache reconnects silently: a changed
# socket is counted). Prints progress as JSON lines; on `stop <kill times>` on stdin it stops, reads
# everything back over the same connections, and prints the verdict and the outage around each kill.
# With `keys` > 0 each client cycles through that many keys, so that the live set stays bounded however
# long the run (a soak of hundreds of failovers would otherwise fill the cache and its log, and a cache
# evicts): each key is read back before it is overwritten and must hold the last value acknowledged for
# it, so a lost write is caught then, not only by the read-back at the end.
import json
import socket
import sys
import threading
import time

from pymemcache.client.base import Client

# A reply missing this long is an error (counted), never a hang; far above any failover outage.
TIMEOUT = 120.0


class Worker:
    def __init__(self, cid, host, port, keys=0):
        self.cid = cid
        self.keys = keys
        self.lost_before_overwrite = []
        self.checked = 0
        self.acked_writes = 0
        self.client = Client((host, port), connect_timeout=TIMEOUT, timeout=TIMEOUT, no_delay=True, default_noreply=False)
        self.sock = None
        self.connects = 0
        self.errors = []
        self.writes = {}
        self.incrs = []
        self.acks = []  # CLOCK_MONOTONIC of each acknowledged request
        self.requests = 0
        self.stop = False

    def counter(self):
        return 'c:%d' % self.cid

    def note_socket(self):
        """Counts each (re)opened connection: the first is the run's one connection, any other a reconnect."""
        if self.client.sock is not None and self.client.sock is not self.sock:
            self.sock = self.client.sock
            self.connects += 1

    def call(self, what, fn):
        self.requests += 1
        try:
            r = fn()
        except Exception as e:  # pymemcache's own errors and socket errors alike
            self.errors.append('%s: %s: %s' % (what, type(e).__name__, e))
            self.note_socket()
            raise
        self.note_socket()
        self.acks.append(time.monotonic())
        return r

    def run(self):
        try:
            self.call('set counter', lambda: self.client.set(self.counter(), b'0'))
        except Exception:
            return
        j = 0
        while not self.stop:
            key = 'k:%d:%d' % (self.cid, j % self.keys if self.keys else j)
            value = ('v:%d:%d:' % (self.cid, j)).encode() + b'x' * (j % 64)
            try:
                if key in self.writes:
                    got = self.call('get ' + key, lambda: self.client.get(key))
                    self.checked += 1
                    if got != self.writes[key]:
                        self.lost_before_overwrite.append(key)
                if self.call('set ' + key, lambda: self.client.set(key, value)):
                    self.writes[key] = value
                    self.acked_writes += 1
                n = self.call('incr', lambda: self.client.incr(self.counter(), 1))
                self.incrs.append(n)
            except Exception:
                # Counted above; go on (a reconnect is then counted too): the test requires none.
                if len(self.errors) > 100:
                    return
            j += 1

    def verify(self):
        """Reads back every acknowledged write and the counter over the same connection."""
        lost = []
        keys = list(self.writes)
        for i in range(0, len(keys), 100):
            batch = keys[i:i + 100]
            got = self.call('get_many', lambda: self.client.get_many(batch))
            lost += [k for k in batch if got.get(k) != self.writes[k]]
        lost += self.lost_before_overwrite
        raw = self.call('get counter', lambda: self.client.get(self.counter()))
        final = int(raw) if raw is not None else -1  # -1: the counter itself was lost
        expected = list(range(1, len(self.incrs) + 1))
        seq_ok = [int(n) for n in self.incrs] == expected
        repeats = len(self.incrs) - len(set(self.incrs))
        return {
            'client': self.cid,
            'requests': self.requests,
            'acknowledged': len(self.acks),
            'writes': self.acked_writes,
            'keys': len(self.writes),
            'keysChecked': self.checked,
            'lost': len(lost),
            'lostKeys': lost[:10],
            'incrs': len(self.incrs),
            'counter': final,
            'incrSequenceOk': seq_ok,
            'incrRepeats': repeats,
            'appliedTwice': max(0, final - len(self.incrs)),
            'connects': self.connects,
            'reconnects': max(0, self.connects - 1),
            'errors': self.errors[:20],
            'errorCount': len(self.errors),
        }


def outages(workers, kills):
    """For each kill: per client the gap between its last ack before and first ack after; the longest."""
    out = []
    for k in kills:
        worst = 0.0
        for w in workers:
            before = [t for t in w.acks if t <= k]
            after = [t for t in w.acks if t > k]
            if before and after:
                worst = max(worst, after[0] - before[-1])
        out.append(round(worst * 1000, 1))
    return out


def main():
    cfg = json.loads(sys.argv[1])
    workers = [Worker(i, cfg['host'], cfg['port'], cfg.get('keys', 0)) for i in range(cfg['clients'])]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    done = threading.Event()
    kills = []

    def commands():
        for line in sys.stdin:
            if line.startswith('stop'):
                kills.extend(json.loads(line[4:].strip() or '[]'))
                break
        done.set()

    threading.Thread(target=commands, daemon=True).start()
    while not done.wait(0.05):
        print(json.dumps({'progress': [len(w.acks) for w in workers], 'errors': sum(len(w.errors) for w in workers), 'connects': [w.connects for w in workers]}), flush=True)
    for w in workers:
        w.stop = True
    for t in threads:
        t.join(TIMEOUT * 2)
    results = []
    for w in workers:
        try:
            results.append(w.verify())
        except Exception as e:
            results.append({'client': w.cid, 'verifyError': '%s: %s' % (type(e).__name__, e), 'errors': w.errors[:20], 'errorCount': len(w.errors), 'reconnects': max(0, w.connects - 1)})
    print(json.dumps({'result': results, 'outagesMs': outages(workers, kills)}), flush=True)


if __name__ == '__main__':
    main()
