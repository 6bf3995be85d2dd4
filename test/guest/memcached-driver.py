#!/usr/bin/python3
# Drives one memcached-compatible server with command sequences for test/guest/memcached-fidelity.test.ts
# (run inside the test's network namespace): reads {host, port, sequences} as JSON on stdin, prints the
# raw replies as JSON. Waits for replies by content (the answer to a trailing sentinel command that no
# sequence sends), never by time; a 120 s bound per reply turns a lost one into an error entry.
import json
import re
import socket
import struct
import sys
import time

BOUND = 120.0


SENTINEL = b'mg --sentinel-- O--sentinel--\r\n'
SENTINEL_REPLY = b'EN O--sentinel--\r\n'


def read_to_mn(s, out):
    """Reads until the reply so far ends with the sentinel's answer; returns it without that."""
    deadline = time.monotonic() + BOUND
    while not out.endswith(SENTINEL_REPLY):
        if time.monotonic() > deadline:
            raise OSError('no sentinel reply within %ds; got %r' % (BOUND, out[-200:]))
        d = s.recv(1 << 20)
        if not d:
            raise OSError('connection closed early; got %r' % out[-200:])
        out += d
    return out[:-len(SENTINEL_REPLY)]


# The CAS of the last item the replies named: `gets`/`gats` lines, or a meta reply's c flag.
CAS = re.compile(rb'(?:^VALUE \S+ \d+ \d+ (\d+)\r$|^(?:HD|VA \d+)(?: \S+)*? c(\d+))', re.M)


def tcp_sequence(host, port, seq):
    s = socket.create_connection((host, port), timeout=BOUND)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    closes = seq.get('closes', False)
    out = b''
    try:
        for chunk in seq['chunks']:
            if '{CAS}' in chunk:
                # A step that needs the CAS just handed out: collect the replies so far first.
                s.sendall(SENTINEL)
                out = read_to_mn(s, out)
                found = CAS.findall(out)
                cas = (found[-1][0] or found[-1][1]).decode() if found else '0'
                chunk = chunk.replace('{CAS}', cas)
            s.sendall(chunk.encode('latin1'))
        if not closes:
            s.sendall(SENTINEL)
    except OSError as e:
        if not closes:
            return {'error': str(e), 'reply': out.decode('latin1')}
    deadline = time.monotonic() + BOUND
    while True:
        if not closes and out.endswith(SENTINEL_REPLY):
            out = out[:-len(SENTINEL_REPLY)]
            break
        if time.monotonic() > deadline:
            return {'error': 'no complete reply within %ds; got %r' % (BOUND, out[-200:])}
        try:
            d = s.recv(1 << 20)
        except ConnectionResetError:
            d = b''
        if not d:
            if not closes:
                return {'error': 'connection closed early; got %r' % out[-200:], 'reply': out.decode('latin1')}
            break
        out += d
    s.close()
    return {'reply': out.decode('latin1')}


def udp_sequence(host, port, seq):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(BOUND)
    u.connect((host, port))
    ids = []
    for i, chunk in enumerate(seq['chunks']):
        rid = 100 + i
        ids.append(rid)
        u.send(struct.pack('>HHHH', rid, 0, 1, 0) + chunk.encode('latin1'))
    u.send(struct.pack('>HHHH', 0xffff, 0, 1, 0) + b'mn\r\n')
    grams = []
    while True:
        try:
            d = u.recv(65536)
        except socket.timeout:
            return {'error': 'no sentinel reply within %ds; got %r' % (BOUND, grams[-3:])}
        rid, n, total, reserved = struct.unpack('>HHHH', d[:8])
        if rid == 0xffff:
            break
        grams.append({'id': rid, 'seq': n, 'total': total, 'reserved': reserved, 'payload': d[8:].decode('latin1')})
    u.close()
    return {'datagrams': grams}


def main():
    job = json.load(sys.stdin)
    host, port = job['host'], job['port']
    if job.get('probe'):
        # Readiness: a version reply over TCP, retried until the bound.
        deadline = time.monotonic() + job['probe']
        last = ''
        while time.monotonic() < deadline:
            try:
                r = tcp_sequence(host, port, {'chunks': ['version\r\n']})
                if r.get('reply', '').startswith('VERSION '):
                    print(json.dumps({'ready': True}))
                    return
                last = repr(r)
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        print(json.dumps({'ready': False, 'last': last}))
        return
    results = []
    for seq in job['sequences']:
        try:
            if seq['transport'] == 'udp':
                results.append(udp_sequence(host, port, seq))
            else:
                results.append(tcp_sequence(host, port, seq))
        except OSError as e:
            results.append({'error': 'socket error: %s' % e})
    json.dump(results, sys.stdout)


main()
