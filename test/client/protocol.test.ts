// Frame header and reply parsing: a table of reply bodies per request kind, valid and not.
import { describe, expect, it } from 'vitest';
import { decodeFrameHeader, encodeFrame, keyProblem, parseReply, type ReplyExpectation } from '../../src/client/index.js';
import { isValuesFragment } from '../../src/client/protocol.js';

const get1: ReplyExpectation = { kind: 'values', keys: ['k'], cas: false };
const gets2: ReplyExpectation = { kind: 'values', keys: ['a', 'b'], cas: true };

describe('frame header', () => {
  it('encodes the four big-endian u16 fields and decodes them back', () => {
    const f = encodeFrame(0xbeef, Buffer.from('version\r\n'), 2, 5);
    expect(f.subarray(0, 8).toString('hex')).toBe('beef000200050000');
    expect(decodeFrameHeader(f)).toEqual({ requestId: 0xbeef, sequence: 2, total: 5, reserved: 0 });
    expect(decodeFrameHeader(f.subarray(0, 7))).toBeUndefined();
    expect(decodeFrameHeader(new Uint8Array(f.subarray(1)))?.requestId).toBe(0xef00); // views at an offset read from their own start
  });
});

describe('keys', () => {
  it.each([
    ['plain', undefined],
    ['ünïcode', undefined],
    ['k'.repeat(250), undefined],
    ['', /empty/],
    ['a b', /space/],
    ['a\r\nb', /0x0d/],
    ['a\x7fb', /0x7f/],
    ['é'.repeat(126), /252 bytes/],
  ])('%j → %s', (key, problem) => {
    const p = keyProblem(key);
    if (problem === undefined) expect(p).toBeUndefined();
    else expect(p).toMatch(problem);
  });
});

describe('parseReply', () => {
  const ok: [ReplyExpectation, string, unknown][] = [
    [get1, 'END\r\n', { kind: 'values', items: [] }],
    [get1, 'VALUE k 5 3\r\na\r\n\r\nEND\r\n', { kind: 'values', items: [{ key: 'k', flags: 5, value: Buffer.from('a\r\n'), cas: undefined }] }],
    [gets2, 'VALUE b 0 1 99\r\nx\r\nVALUE a 0 0 18446744073709551615\r\n\r\nEND\r\n', { kind: 'values', items: [{ key: 'b', flags: 0, value: Buffer.from('x'), cas: 99n }, { key: 'a', flags: 0, value: Buffer.alloc(0), cas: (1n << 64n) - 1n }] }],
    [{ kind: 'storage' }, 'NOT_STORED\r\n', { kind: 'status', status: 'NOT_STORED' }],
    [{ kind: 'storage' }, 'EXISTS\r\n', { kind: 'status', status: 'EXISTS' }],
    [{ kind: 'delete' }, 'DELETED\r\n', { kind: 'status', status: 'DELETED' }],
    [{ kind: 'arith' }, '18446744073709551615\r\n', { kind: 'number', value: (1n << 64n) - 1n }],
    [{ kind: 'arith' }, 'NOT_FOUND\r\n', { kind: 'status', status: 'NOT_FOUND' }],
    [{ kind: 'version' }, 'VERSION 1.6.18\r\n', { kind: 'version', version: '1.6.18' }],
    [{ kind: 'stats' }, 'STAT pid 7\r\nSTAT libevent 2.1.12-stable\r\nSTAT empty \r\nEND\r\n', { kind: 'stats', stats: new Map([['pid', '7'], ['libevent', '2.1.12-stable'], ['empty', '']]) }],
    [{ kind: 'storage' }, 'CLIENT_ERROR bad data chunk\r\n', { kind: 'error', type: 'CLIENT_ERROR', message: 'bad data chunk', line: 'CLIENT_ERROR bad data chunk' }],
    [get1, 'ERROR\r\n', { kind: 'error', type: 'ERROR', message: '', line: 'ERROR' }],
  ];
  it.each(ok)('%j accepts %j', (expect_, body, reply) => {
    expect(parseReply(expect_, Buffer.from(body))).toEqual({ ok: true, reply });
  });

  const bad: [ReplyExpectation, string, RegExp][] = [
    [get1, '', /first line/],
    [get1, 'VALUE k 0 1\r\nx\r\n', /truncated after 1 values/],
    [get1, 'VALUE k 0 2\r\nx\r\nEND\r\n', /not followed by|truncated/],
    [get1, 'VALUE k 0 9999999999999999999999\r\nx\r\nEND\r\n', /length/],
    [get1, 'VALUE k 4294967296 1\r\nx\r\nEND\r\n', /flags/],
    [get1, 'VALUE j 0 1\r\nx\r\nEND\r\n', /not asked for/],
    [get1, 'VALUE k 0\r\nEND\r\n', /not a VALUE line/],
    [get1, 'END\r\nEND\r\n', /stray bytes after END/],
    [gets2, 'VALUE a 0 1\r\nx\r\nEND\r\n', /no cas unique/],
    [gets2, 'VALUE a 0 1 -1\r\nx\r\nEND\r\n', /cas/],
    [{ kind: 'storage' }, 'DELETED\r\n', /not a reply to a storage command/],
    [{ kind: 'storage' }, 'STORED', /first line/],
    [{ kind: 'delete' }, 'STORED\r\n', /not a reply to a delete command/],
    [{ kind: 'arith' }, '12a\r\n', /unsigned 64-bit/],
    [{ kind: 'arith' }, '18446744073709551616\r\n', /unsigned 64-bit/],
    [{ kind: 'version' }, 'VERSION \r\n', /not a VERSION line/],
    [{ kind: 'stats' }, 'STAT\r\nEND\r\n', /not a STAT line/],
    [{ kind: 'stats' }, 'STAT a 1\r\n', /no END/],
    [{ kind: 'storage' }, 'SERVER_ERROR x\r\njunk', /stray bytes/],
    [{ kind: 'storage' }, 'SERVER_ERRORS\r\n', /unknown reply line/],
  ];
  it.each(bad)('%j rejects %j', (expect_, body, problem) => {
    const r = parseReply(expect_, Buffer.from(body));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toMatch(problem);
  });

  it('recognises a VALUE-only fragment of a multi-key reply and nothing else', () => {
    expect(isValuesFragment(gets2, Buffer.from('VALUE a 0 1 1\r\nx\r\n'))).toBe(true);
    expect(isValuesFragment(gets2, Buffer.from('VALUE a 0 1 1\r\nx\r\nEND\r\n'))).toBe(false);
    expect(isValuesFragment(gets2, Buffer.from('VALUE a 0 1 1\r\nx'))).toBe(false);
    expect(isValuesFragment(gets2, Buffer.from('VALUE z 0 1 1\r\nx\r\n'))).toBe(false);
    expect(isValuesFragment(gets2, Buffer.alloc(0))).toBe(false);
    expect(isValuesFragment({ kind: 'storage' }, Buffer.from('VALUE a 0 1 1\r\nx\r\n'))).toBe(false);
  });
});
