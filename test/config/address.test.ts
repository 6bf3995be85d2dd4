// host:port addresses: one parser and one printer for the configuration, the CLI, the cluster and the
// FT halves, IPv6 in brackets both ways.
import { describe, expect, it } from 'vitest';
import { formatHostPort, parseHostPort } from '../../src/config/index.js';

describe('host:port addresses', () => {
  it.each([
    ['127.0.0.1:7400', { host: '127.0.0.1', port: 7400 }],
    ['localhost:0', { host: 'localhost', port: 0 }],
    ['[::1]:7400', { host: '::1', port: 7400 }],
    ['[fe80::1%eth0]:65535', { host: 'fe80::1%eth0', port: 65535 }],
  ])('parses %s and prints it back the same', (text, want) => {
    expect(parseHostPort(text)).toEqual(want);
    expect(formatHostPort(want)).toBe(text);
  });

  it.each(['::1:7400', '127.0.0.1', '127.0.0.1:65536', '[::1]', ':7400', 'a b:1', '[::1]:x', '127.0.0.1:123456'])('refuses %s', (text) => {
    expect(parseHostPort(text)).toBeUndefined();
  });
});
