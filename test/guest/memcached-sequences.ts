// The command sequences test/guest/memcached-fidelity.test.ts sends to Debian's memcached and to the
// guest's kvd, and the normalisation applied to both replies before they are compared (version string,
// stats values and CAS numbers only). Pure data: no I/O.

/** One sequence: the bytes sent (each chunk a separate write, or a separate datagram over UDP). */
export interface Sequence {
  name: string;
  transport: 'tcp' | 'udp';
  /** Latin-1 strings; `{CAS}` is replaced by the CAS of the last item the replies so far named. */
  chunks: string[];
  /** The server closes the connection (quit, junk): read to EOF instead of a trailing `mn`. */
  closes?: boolean;
  /** How the reply is normalised beyond version/STAT values/CAS. */
  stats?: 'values' | 'names' | 'none';
}

const CRLF = '\r\n';
const line = (...parts: string[]) => parts.join(' ') + CRLF;
const set = (cmd: string, key: string, value: string, flags = 0, exptime: number | string = 0, extra = '') =>
  `${cmd} ${key} ${flags} ${exptime} ${value.length}${extra ? ' ' + extra : ''}${CRLF}${value}${CRLF}`;
const fill = (n: number, seed: number) => {
  let s = '';
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  for (let i = 0; i < n; i++) s += alphabet[(i * 7 + seed) % alphabet.length];
  return s;
};

/** memcached -I 1m takes an item while 48 + key + 1 + (flags ? 4 : 0) + value + 2 + 8 ≤ 1 MiB. */
export const maxValue = (key: string, flags = 0) => 1048576 - 48 - (key.length + 1) - (flags ? 4 : 0) - 2 - 8;

/** The sequences; `now` is the unix time both servers were told (absolute expiry times). */
export function sequences(now: number): Sequence[] {
  const out: Sequence[] = [];
  let n = 0;
  const tcp = (name: string, ...chunks: string[]) => {
    out.push({ name, transport: 'tcp', chunks });
  };
  const udp = (name: string, ...chunks: string[]) => {
    out.push({ name, transport: 'udp', chunks });
  };
  const k = (s = '') => `t${n++}${s}`;

  // ---- storage commands against existing / missing keys, with and without noreply ----
  for (const cmd of ['set', 'add', 'replace', 'append', 'prepend']) {
    for (const exists of [false, true]) {
      for (const noreply of [false, true]) {
        const key = k();
        tcp(
          `${cmd} ${exists ? 'existing' : 'missing'}${noreply ? ' noreply' : ''}`,
          (exists ? set('set', key, 'old', 5) : '') + set(cmd, key, 'new', 7, 0, noreply ? 'noreply' : '') + line('get', key),
        );
      }
    }
  }
  // ---- cas ----
  {
    const a = k();
    tcp('cas with the current value', set('set', a, 'v1') + line('gets', a), `cas ${a} 3 0 2 {CAS}${CRLF}v2${CRLF}` + line('gets', a));
    const b = k();
    tcp('cas mismatch', set('set', b, 'v1') + `cas ${b} 0 0 2 1${CRLF}v2${CRLF}` + line('get', b));
    tcp('cas on a missing key', `cas ${k()} 0 0 2 12345${CRLF}v2${CRLF}`);
    const c = k();
    tcp('cas 0 on an existing key', set('set', c, 'v1') + `cas ${c} 0 0 2 0${CRLF}v2${CRLF}` + line('get', c));
    const d = k();
    tcp('cas noreply', set('set', d, 'v1') + line('gets', d), `cas ${d} 0 0 2 {CAS} noreply${CRLF}v2${CRLF}` + line('get', d));
    tcp('cas with a bad cas number', `cas ${k()} 0 0 2 abc${CRLF}`);
    tcp('cas with too few tokens', `cas ${k()} 0 0 2${CRLF}`);
    const e = k();
    tcp('cas after the value changed', set('set', e, 'v1') + line('gets', e), set('set', e, 'v3') + `cas ${e} 0 0 2 {CAS}${CRLF}v2${CRLF}` + line('get', e));
    const f = k();
    tcp('append keeps flags and bumps the cas', set('set', f, 'ab', 9) + line('gets', f), set('append', f, 'cd') + line('gets', f));
  }
  // ---- incr / decr ----
  {
    const num = (name: string, value: string, ...cmds: string[]) => {
      const key = k();
      tcp(name, set('set', key, value) + cmds.map((c) => c.replace('$', key)).join('') + line('get', key));
    };
    num('incr', '10', line('incr', '$', '5'));
    num('decr', '10', line('decr', '$', '3'));
    num('decr keeps the length (space padding)', '100', line('decr', '$', '95'), line('incr', '$', '1'));
    num('decr below zero stops at 0', '5', line('decr', '$', '9'));
    num('incr wraps at 2^64', '18446744073709551615', line('incr', '$', '1'));
    num('incr to 2^64 - 1', '18446744073709551614', line('incr', '$', '1'));
    num('incr grows the value', '99', line('incr', '$', '1'));
    num('incr on a non-numeric value', 'abc', line('incr', '$', '1'));
    num('incr on a number followed by text', '12abc', line('incr', '$', '1'));
    num('incr on an empty value', '', line('incr', '$', '1'));
    num('incr on a value with leading spaces', '  7', line('incr', '$', '1'));
    num('incr on a negative number', '-1', line('incr', '$', '1'));
    num('incr with a bad delta', '1', line('incr', '$', 'x'));
    num('incr with a delta over 2^64', '1', line('incr', '$', '18446744073709551616'));
    num('incr with a negative delta', '1', line('incr', '$', '-1'));
    num('incr noreply', '1', line('incr', '$', '1', 'noreply'));
    num('decr noreply', '9', line('decr', '$', '1', 'noreply'));
    num('incr too many tokens', '1', line('incr', '$', '1', 'noreply', 'extra'));
    num('incr a 20-digit value', '12345678901234567890', line('incr', '$', '1'));
    tcp('incr on a missing key', line('incr', k(), '1') + line('decr', k(), '1'));
    tcp('incr with a key too long', line('incr', 'x'.repeat(251), '1'));
  }
  // ---- delete ----
  {
    const a = k();
    tcp('delete', set('set', a, 'v') + line('delete', a) + line('get', a) + line('delete', a));
    const b = k();
    tcp('delete with 0', set('set', b, 'v') + line('delete', b, '0'));
    const c = k();
    tcp('delete with a time', set('set', c, 'v') + line('delete', c, '1') + line('get', c));
    const d = k();
    tcp('delete noreply', set('set', d, 'v') + line('delete', d, 'noreply') + line('get', d));
    const e = k();
    tcp('delete 0 noreply', set('set', e, 'v') + line('delete', e, '0', 'noreply') + line('get', e));
    tcp('delete with too many tokens', line('delete', k(), '0', 'noreply', 'x'));
    tcp('delete with a key too long', line('delete', 'y'.repeat(251)));
  }
  // ---- touch, gat, gats ----
  {
    const a = k();
    tcp('touch', set('set', a, 'v') + line('touch', a, '100') + line('touch', k(), '100') + line('get', a));
    const b = k();
    tcp('touch to the past expires', set('set', b, 'v') + line('touch', b, '-1') + line('get', b));
    const c = k();
    tcp('gat and gats', set('set', c, 'v', 3) + line('gat', '100', c) + line('gats', '100', c, k()));
    tcp('gat with a bad exptime', line('gat', 'soon', k()));
    tcp('gat without keys', line('gat', '100'));
    tcp('touch with a bad exptime', line('touch', k(), 'x'));
    const d = k();
    tcp('gat to the past expires', set('set', d, 'v') + line('gat', '-1', d) + line('get', d));
    tcp('touch noreply', line('touch', k(), '10', 'noreply') + line('version'));
  }
  // ---- expiry rules ----
  {
    const cases: [string, number | string][] = [
      ['negative exptime: expired at once', -1],
      ['exptime of 30 days: relative', 2592000],
      ['exptime just over 30 days: an absolute time long past', 2592001],
      ['absolute exptime in the past', now - 1000],
      ['absolute exptime in the future', now + 100000],
      ['exptime 0: never', 0],
      ['exptime beyond 32 bits wraps', '4294967297'],
      ['exptime that is not a number', 'soon'],
    ];
    for (const [name, e] of cases) {
      const key = k();
      tcp(name, set('set', key, 'v', 0, e) + line('get', key));
    }
  }
  // ---- flags ----
  for (const flags of ['0', '4294967295', '4294967296', '-1', '12x']) {
    const key = k();
    tcp(`flags ${flags}`, `set ${key} ${flags} 0 1${CRLF}v${CRLF}` + line('get', key));
  }
  // ---- malformed commands ----
  tcp('unknown command', line('bogus'));
  tcp('empty line', CRLF);
  tcp('one-letter command', line('g'));
  tcp('upper-case command', line('GET', 'x'));
  tcp('get without a key', line('get'));
  tcp('set with too few tokens', line('set', k(), '0', '0'));
  tcp('set with too many tokens', line('set', k(), '0', '0', '1', 'noreply', 'x'));
  tcp('set with a bad flags token', line('set', k(), 'b', '0', '1'));
  tcp('set with a negative length', line('set', k(), '0', '0', '-1'));
  tcp('set with a 2 GiB length', line('set', k(), '0', '0', '2147483648') + line('version'));
  tcp('set with a length of 2^32 + 1 (truncated)', `set ${k()} 0 0 4294967297${CRLF}v${CRLF}`);
  tcp('set with a bad data chunk', `set ${k()} 0 0 3${CRLF}abcd${CRLF}`);
  tcp('set noreply with a bad length', line('set', k(), '0', '0', 'x', 'noreply') + line('version'));
  tcp('key of 250 bytes', set('set', 'k'.repeat(250), 'v') + line('get', 'k'.repeat(250)));
  tcp('key of 251 bytes (set)', set('set', 'k'.repeat(251), 'v'));
  tcp('key of 251 bytes (get)', line('get', 'k'.repeat(251)));
  tcp('key of 251 bytes in a multi-get', set('set', 'mgk', 'v') + line('get', 'mgk', 'k'.repeat(251), 'mgk'));
  tcp('key of 251 bytes (touch)', line('touch', 'k'.repeat(251), '1'));
  tcp('line ending in a bare newline', `get ${k()}\n`);
  tcp('command with a tab', `get\t${k()}${CRLF}`);
  tcp('spaces around tokens', `  get   ${k()}  ${CRLF}`);
  tcp('shutdown is disabled', line('shutdown'));
  tcp('version', line('version'));
  tcp('verbosity', line('verbosity', '1') + line('verbosity', '0', 'noreply') + line('verbosity'));
  tcp('verbosity with a bad level', line('verbosity', 'loud'));
  // ---- big values ----
  {
    const a = k();
    tcp('the largest value memcached takes', set('set', a, fill(maxValue(a), 1)) + line('get', a));
    const b = k();
    tcp('one byte too large: refused and swallowed', set('set', b, fill(maxValue(b) + 1, 2)) + line('get', b));
    const c = k();
    tcp('a too-large set removes the old value', set('set', c, 'old') + set('set', c, fill(maxValue(c) + 10, 3)) + line('get', c));
    const d = k();
    tcp('a too-large add keeps the old value', set('set', d, 'old') + set('add', d, fill(maxValue(d) + 10, 4)) + line('get', d));
    const e = k();
    tcp('a 600 KB value', set('set', e, fill(600000, 5)) + line('get', e));
    const f = k();
    tcp('append past the item size', set('set', f, fill(maxValue(f) - 1, 6)) + set('append', f, 'xyz') + line('get', f, ''));
    const g = k();
    tcp('value sent byte by byte', `set ${g} 0 0 5${CRLF}`, 'h', 'e', 'l', 'l', 'o', CRLF, line('get', g));
  }
  // ---- pipelining, partial commands, multi-get ----
  {
    const keys = Array.from({ length: 60 }, () => k());
    tcp('pipelined batch of 120 commands', keys.map((key, i) => set('set', key, fill(i * 13, i), i)).join('') + keys.map((key) => line('get', key)).join(''));
    tcp('multi-get of 60 keys (more than 24 tokens)', line('get', ...keys));
    tcp('gets of 30 keys and misses', line('gets', ...keys.slice(0, 30), 'nope1', 'nope2'));
    const p = k();
    tcp('a command split across writes', 'se', `t ${p} 0 0 5\r\nhel`, 'lo\r', '\nget ', `${p}\r\n`);
    const q = k();
    tcp('noreply storm then one get', Array.from({ length: 50 }, (_, i) => set('set', q, String(i), 0, 0, 'noreply')).join('') + line('get', q));
    tcp('a long multi-get line over 2048 bytes', line('get', ...Array.from({ length: 300 }, (_, i) => `long${i}`)));
  }
  // ---- connection handling ----
  tcp('quit', set('set', 'quitkey', 'v') + line('get', 'quitkey') + line('quit') + line('get', 'quitkey'));
  out[out.length - 1]!.closes = true;
  tcp('junk without a newline closes the connection', 'x'.repeat(5000));
  out[out.length - 1]!.closes = true;
  // ---- flush_all ----
  {
    const a = k();
    tcp('flush_all', set('set', a, 'v') + line('flush_all') + line('get', a) + set('set', a, 'w') + line('get', a));
    tcp('flush_all noreply', line('flush_all', 'noreply') + line('version'));
    tcp('flush_all 0', line('flush_all', '0'));
    tcp('flush_all with a bad delay', line('flush_all', 'later'));
    tcp('flush_all with too many tokens', line('flush_all', '1', 'noreply', 'x'));
    const b = k();
    tcp('flush_all with a delay leaves items for now', set('set', b, 'v') + line('flush_all', '100') + line('get', b) + line('flush_all', '0') + line('get', b));
  }
  // ---- stats ----
  out.push({ name: 'stats', transport: 'tcp', chunks: [line('stats')], stats: 'values' });
  out.push({ name: 'stats settings', transport: 'tcp', chunks: [line('stats', 'settings')], stats: 'values' });
  out.push({ name: 'stats items', transport: 'tcp', chunks: [line('stats', 'items')], stats: 'names' });
  out.push({ name: 'stats slabs', transport: 'tcp', chunks: [line('stats', 'slabs')], stats: 'names' });
  out.push({ name: 'stats conns', transport: 'tcp', chunks: [line('stats', 'conns')], stats: 'none' });
  tcp('stats sizes', line('stats', 'sizes'));
  tcp('stats detail usage', line('stats', 'detail') + line('stats', 'detail', 'bogus'));
  tcp('stats detail dump when off', line('stats', 'detail', 'dump'));
  tcp('stats of an unknown kind', line('stats', 'bogus'));
  tcp('stats reset', line('stats', 'reset'));
  // ---- meta commands ----
  {
    tcp('mn', line('mn'));
    const a = k();
    tcp('mg hit with flags', set('set', a, 'hello', 42, 1000) + line('mg', a, 's', 'v', 'f', 't', 'k', 'Oabc', 'c'));
    tcp('mg miss', line('mg', k(), 'v') + line('mg', k(), 'k', 'O123'));
    tcp('mg miss quiet', line('mg', k(), 'v', 'q') + line('version'));
    const b = k();
    tcp('mg hit quiet', set('set', b, 'v') + line('mg', b, 'v', 'q'));
    const c = k();
    tcp('mg without flags', set('set', c, 'v') + line('mg', c));
    tcp('mg duplicate flag', line('mg', k(), 'v', 'v'));
    tcp('mg invalid flag', line('mg', k(), '!'));
    tcp('mg opaque too long', set('set', 'mgo', 'v') + line('mg', 'mgo', 'O' + 'x'.repeat(40)));
    tcp('mg key too long', line('mg', 'k'.repeat(251), 'v'));
    tcp('mg without a key', line('mg'));
    const d = k();
    tcp('mg with T touches', set('set', d, 'v') + line('mg', d, 'T30', 't') + line('mg', d, 't', 'v'));
    tcp('mg with N vivifies', line('mg', 'viv' + n, 'N30', 's', 't') + line('mg', 'viv' + n, 's', 'v'));
    const e = k();
    tcp('mg h and l', set('set', e, 'v') + line('mg', e, 'h', 'l') + line('mg', e, 'h', 'l'));
    tcp('ms', line('ms', k('m'), '2') + 'hi' + CRLF + line('ms', k('m'), '2', 'T100', 'F5', 'k', 'Oxy') + 'hi' + CRLF);
    const f = k();
    tcp('ms then mg', line('ms', f, '3', 'F7') + 'abc' + CRLF + line('mg', f, 'v', 'f', 's'));
    tcp('ms quiet', line('ms', k(), '1', 'q') + 'a' + CRLF + line('version'));
    const g = k();
    tcp('ms add mode on an existing key', set('set', g, 'v') + line('ms', g, '1', 'ME') + 'z' + CRLF + line('get', g));
    const h = k();
    tcp('ms append and prepend modes', set('set', h, 'mid') + line('ms', h, '1', 'MA') + '>' + CRLF + line('ms', h, '1', 'MP') + '<' + CRLF + line('get', h));
    tcp('ms replace mode on a missing key', line('ms', k(), '1', 'MR') + 'z' + CRLF);
    tcp('ms invalid mode', line('ms', k(), '1', 'MX') + 'z' + CRLF + line('version'));
    tcp('ms bad length', line('ms', k(), 'x') + line('version'));
    tcp('ms without a length', line('ms', k()));
    tcp('ms too large', line('ms', 'msbig', String(2000000)) + fill(2000000, 7) + CRLF + line('mg', 'msbig', 'v'));
    const i = k();
    tcp('ms with a cas mismatch', set('set', i, 'v') + line('ms', i, '1', 'C1') + 'z' + CRLF);
    const j = k();
    tcp('ms with the current cas', set('set', j, 'v') + line('mg', j, 'c'), line('ms', j, '1', 'C{CAS}') + 'z' + CRLF + line('mg', j, 'v'));
    tcp('ms bad data chunk', line('ms', k(), '1') + 'zz' + CRLF);
    const l = k();
    tcp('md', set('set', l, 'v') + line('md', l) + line('md', l) + line('md', l, 'q') + line('mg', l, 'v'));
    const m = k();
    tcp('md quiet hit', set('set', m, 'v') + line('md', m, 'q', 'Oab', 'k') + line('mn'));
    const o = k();
    tcp('md cas mismatch', set('set', o, 'v') + line('md', o, 'C1') + line('get', o));
    tcp('md invalid flag', line('md', k(), '!'));
    const p = k();
    tcp('ma', set('set', p, '5') + line('ma', p) + line('ma', p, 'D10', 'v') + line('ma', p, 'MD', 'D3', 'v') + line('get', p));
    tcp('ma miss', line('ma', k()) + line('ma', k(), 'q') + line('version'));
    tcp('ma autovivify', line('ma', 'mav' + n, 'N0', 'J13', 'v') + line('ma', 'mav' + n, 'N0', 'J13', 'v'));
    const q = k();
    tcp('ma non-numeric', set('set', q, 'abc') + line('ma', q));
    tcp('ma invalid mode', line('ma', k(), 'MX'));
    tcp('ma bad delta', line('ma', k(), 'Dx'));
    const r = k();
    tcp('ma quiet hit', set('set', r, '1') + line('ma', r, 'q') + line('get', r));
    const s = k();
    tcp('me', set('set', s, 'v') + line('me', s) + line('me', k()));
    tcp('two-letter m command unknown', line('mz', 'x'));
  }
  // ---- UDP ----
  {
    const a = k(), b = k(), c = k();
    tcp('UDP set-up: values of 1000 and 3000 bytes', set('set', a, fill(1000, 8)) + set('set', b, fill(3000, 9)) + set('set', c, fill(100000, 10)));
    udp('UDP get hit', line('get', a));
    udp('UDP get miss', line('get', k()));
    udp('UDP multi-get spanning datagrams', line('get', a, 'nope', b));
    udp('UDP two misses', line('get', 'nope1', 'nope2'));
    udp('UDP miss then hit', line('get', 'nope', a));
    udp('UDP a 100 KB value', line('get', c));
    udp('UDP set, get and a bad command in one datagram', set('set', k('u'), 'v') + line('get', 'u-none') + line('bogus'));
    udp('UDP noreply set then get', set('set', 'udpq', 'v', 0, 0, 'noreply') + line('get', 'udpq'));
    udp('UDP noreply first, then a miss', set('set', 'udpq2', 'v', 0, 0, 'noreply') + line('get', 'nope', 'nope2'));
    udp('UDP mn', line('mn'));
    udp('UDP mg hit and miss', line('mg', a, 's', 'f') + line('mg', k(), 's'));
    udp('UDP incr', set('set', 'udpn', '41') + line('incr', 'udpn', '1'));
    udp('UDP several datagrams', line('get', a), line('version'), line('get', k()));
    udp('UDP pipelined gets', line('get', a) + line('get', b) + line('get', 'nope'));
    udp('UDP delete and touch', set('set', 'udpd', 'v') + line('touch', 'udpd', '10') + line('delete', 'udpd') + line('delete', 'udpd'));
  }
  return out;
}

/** The reply with the parts that may differ between two correct servers replaced by placeholders. */
export function normalise(reply: string, stats: Sequence['stats']): string {
  let r = reply.replace(/^VERSION .*$/gm, 'VERSION <version>');
  r = r.replace(/^(VALUE \S+ \d+ \d+) \d+\r$/gm, '$1 <cas>\r');
  r = r.replace(/^((?:HD|VA \d+|EN|NS|EX|NF)(?: \S+)*?) c\d+/gm, '$1 c<cas>');
  r = r.replace(/^(ME \S+ .*)cas=\d+/gm, '$1cas=<cas>');
  if (stats === 'values') r = r.replace(/^STAT (\S+) .*\r$/gm, 'STAT $1 <value>\r');
  if (stats === 'names') {
    // Which slab classes hold items depends on memcached's background LRU threads: compare the set of
    // statistic names only.
    const names = new Set([...r.matchAll(/^STAT (?:items:)?(?:\d+:)?(\S+) /gm)].map((m) => m[1]!));
    r = [...names].sort().join(',') + r.slice(r.lastIndexOf('END'));
  }
  if (stats === 'none') r = r.replace(/^STAT .*\r\n/gm, '');
  return r;
}
