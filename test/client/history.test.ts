// RegisterHistory: which values a read may return, on hand-written interleavings (logical ticks only).
import { describe, expect, it } from 'vitest';
import { RegisterHistory } from '../../src/client/index.js';

describe('RegisterHistory', () => {
  it('a sequential history allows exactly the last acknowledged value', () => {
    const h = new RegisterHistory();
    const r0 = h.beginRead('k');
    expect(h.checkRead(r0, null)).toBeUndefined();
    const w1 = h.beginWrite('k', 'v1');
    h.acknowledge(w1);
    const w2 = h.beginWrite('k', 'v2');
    h.acknowledge(w2);
    const r = h.beginRead('k');
    expect(h.checkRead(r, 'v2')).toBeUndefined();
    expect(h.checkRead(r, 'v1')).toMatchObject({ kind: 'stale', allowed: ['v2'], missAllowed: false });
    expect(h.checkRead(r, null)).toMatchObject({ kind: 'lost' });
    expect(h.checkRead(r, 'never')).toMatchObject({ kind: 'unknown-value' });
    expect(h.allowedNow('k')).toEqual({ values: ['v2'], missAllowed: false });
  });

  it('a write in flight when the read is sent, or sent before its answer, may be seen or not', () => {
    const h = new RegisterHistory();
    const w1 = h.beginWrite('k', 'v1');
    h.acknowledge(w1);
    const w2 = h.beginWrite('k', 'v2'); // in flight
    const r = h.beginRead('k');
    const w3 = h.beginWrite('k', 'v3'); // sent while the read is outstanding
    expect(h.checkRead(r, 'v1')).toBeUndefined();
    expect(h.checkRead(r, 'v2')).toBeUndefined();
    expect(h.checkRead(r, 'v3')).toBeUndefined();
    h.acknowledge(w3);
    h.acknowledge(w2);
    // w2 was sent before w3 was acknowledged: the server may have applied either last.
    const later = h.beginRead('k');
    expect(h.checkRead(later, 'v2')).toBeUndefined();
    expect(h.checkRead(later, 'v3')).toBeUndefined();
    expect(h.checkRead(later, 'v1')).toMatchObject({ kind: 'stale' });
  });

  it('concurrent acknowledged writes are both allowed until a later write overwrites them', () => {
    const h = new RegisterHistory();
    const a = h.beginWrite('k', 'a');
    const b = h.beginWrite('k', 'b');
    h.acknowledge(b);
    h.acknowledge(a);
    expect(h.allowedNow('k').values.sort()).toEqual(['a', 'b']);
    const c = h.beginWrite('k', 'c');
    h.acknowledge(c);
    expect(h.allowedNow('k').values).toEqual(['c']);
  });

  it('a failed write may have been applied: it stays allowed, and a miss stays allowed without acknowledgements', () => {
    const h = new RegisterHistory();
    const w = h.beginWrite('k', 'maybe');
    h.fail(w);
    const r = h.beginRead('k');
    expect(h.checkRead(r, null)).toBeUndefined();
    expect(h.checkRead(r, 'maybe')).toBeUndefined();
    const w2 = h.beginWrite('k', 'sure');
    h.acknowledge(w2);
    const r2 = h.beginRead('k');
    expect(h.checkRead(r2, 'maybe')).toBeUndefined(); // a delayed datagram can still land
    expect(h.checkRead(r2, null)).toMatchObject({ kind: 'lost' });
  });

  it('names a value written to another key and refuses duplicate values', () => {
    const h = new RegisterHistory();
    h.acknowledge(h.beginWrite('a', 'x'));
    expect(h.checkRead(h.beginRead('b'), 'x')).toMatchObject({ kind: 'wrong-key' });
    expect(() => h.beginWrite('b', 'x')).toThrow(RangeError);
  });
});
