// The GDB remote serial protocol's framing, pure: checksums, binary escapes, run-length encoding and a
// reader that turns a byte stream into packets, acks and interrupts. No sockets and no machine here.
//
//   $<payload>#<two hex digits: sum of the payload's bytes mod 256>
//
// In a payload, `}` escapes the next byte (sent XOR 0x20); `#`, `$`, `}` and `*` are always escaped in
// binary data. A reply may run-length encode: `X*<n>` is X followed by n - 29 more copies of X.
// Outside packets: `+` / `-` acknowledge, and a lone 0x03 byte is an interrupt request (Ctrl-C).

/** The largest payload this side accepts (advertised as `PacketSize` in qSupported). */
export const MAX_PACKET = 0x4000;

/** One thing read from the stream. */
export type PacketEvent =
  /** A whole packet whose checksum matched; `data` is the payload as sent (escapes still in place). */
  | { kind: 'packet'; data: Uint8Array }
  /** The peer acknowledged (`+`) or asked for a resend (`-`) of our last packet. */
  | { kind: 'ack' }
  | { kind: 'nack' }
  /** A 0x03 byte between packets: stop the running target. */
  | { kind: 'interrupt' }
  /** A packet that must be refused: a bad checksum (answered `-`) or one longer than {@link MAX_PACKET}. */
  | { kind: 'bad'; reason: 'checksum' | 'too-long' };

/** The modulo-256 sum of `data`. */
export function checksum(data: Uint8Array): number {
  let sum = 0;
  for (const b of data) sum = (sum + b) & 0xff;
  return sum;
}

const ESCAPED = new Set([0x23, 0x24, 0x7d, 0x2a]); // # $ } *

/** Binary data as it may stand in a packet: `#`, `$`, `}` and `*` become `}` + (byte ^ 0x20). */
export function escapeBinary(data: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (const b of data) {
    if (ESCAPED.has(b)) out.push(0x7d, b ^ 0x20);
    else out.push(b);
  }
  return Uint8Array.from(out);
}

/** Undoes {@link escapeBinary}; undefined for a trailing lone `}` (damaged data). */
export function unescapeBinary(data: Uint8Array): Uint8Array | undefined {
  const out = new Uint8Array(data.length);
  let n = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] === 0x7d) {
      if (++i >= data.length) return undefined;
      out[n++] = data[i]! ^ 0x20;
    } else {
      out[n++] = data[i]!;
    }
  }
  return out.subarray(0, n);
}

/**
 * Run-length encodes a reply payload: a run of 4 or more equal bytes becomes the byte, `*` and a count
 * character (count + 29); counts whose character would be `#`, `$` or `}` are avoided by shortening the
 * run. Escaped data must not be run-length encoded after escaping a `*`, so only plain text goes here.
 */
export function encodeRunLength(payload: Uint8Array): Uint8Array {
  const out: number[] = [];
  let i = 0;
  while (i < payload.length) {
    const b = payload[i]!;
    let run = 1;
    while (i + run < payload.length && payload[i + run] === b && run < 98) run++;
    // `run` copies in all: the byte itself and `repeat` more.
    let repeat = run - 1;
    if (repeat === 6 || repeat === 7) repeat = 5; // '#', '$'
    if (repeat === 96) repeat = 95; // '}', which a reader might take for an escape
    if (repeat >= 3) {
      out.push(b, 0x2a, repeat + 29);
      i += repeat + 1;
    } else {
      out.push(b);
      i += 1;
    }
  }
  return Uint8Array.from(out);
}

/** Expands `X*<n>` runs; undefined for a `*` with nothing before it or no count after it. */
export function decodeRunLength(payload: Uint8Array): Uint8Array | undefined {
  const out: number[] = [];
  for (let i = 0; i < payload.length; i++) {
    const b = payload[i]!;
    if (b !== 0x2a) {
      out.push(b);
      continue;
    }
    if (out.length === 0 || i + 1 >= payload.length) return undefined;
    const count = payload[++i]! - 29;
    if (count < 0) return undefined;
    const prev = out[out.length - 1]!;
    for (let k = 0; k < count; k++) out.push(prev);
  }
  return Uint8Array.from(out);
}

/** A packet ready to send: `$`, the payload, `#` and its checksum. */
export function encodePacket(payload: Uint8Array | string): Uint8Array {
  const body = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  const out = new Uint8Array(body.length + 4);
  out[0] = 0x24;
  out.set(body, 1);
  out[body.length + 1] = 0x23;
  const cs = checksum(body).toString(16).padStart(2, '0');
  out[body.length + 2] = cs.charCodeAt(0);
  out[body.length + 3] = cs.charCodeAt(1);
  return out;
}

const HEX = /^[0-9a-fA-F]{2}$/;

/**
 * Reads packets out of a byte stream fed in arbitrary chunks. Bytes outside a packet other than `+`,
 * `-` and 0x03 are ignored (line noise); a packet that grows past {@link MAX_PACKET} is dropped whole
 * (reported once, its rest skipped up to its `#xx`), so a hostile peer costs at most that much memory.
 */
export class PacketReader {
  #state: 'idle' | 'body' | 'sum1' | 'sum2' = 'idle';
  #body: number[] = [];
  #tooLong = false;
  #sum = '';

  /** Feeds bytes; returns what they completed, in order. */
  push(chunk: Uint8Array): PacketEvent[] {
    const events: PacketEvent[] = [];
    for (const b of chunk) {
      switch (this.#state) {
        case 'idle':
          if (b === 0x24) {
            this.#state = 'body';
            this.#body = [];
            this.#tooLong = false;
          } else if (b === 0x2b) events.push({ kind: 'ack' });
          else if (b === 0x2d) events.push({ kind: 'nack' });
          else if (b === 0x03) events.push({ kind: 'interrupt' });
          break;
        case 'body':
          if (b === 0x23) {
            this.#state = 'sum1';
            this.#sum = '';
          } else if (b === 0x24) {
            // A new packet starts inside this one: the first was cut short; start over.
            this.#body = [];
            this.#tooLong = false;
          } else if (this.#body.length >= MAX_PACKET) {
            this.#tooLong = true;
          } else {
            this.#body.push(b);
          }
          break;
        case 'sum1':
          this.#sum = String.fromCharCode(b);
          this.#state = 'sum2';
          break;
        case 'sum2': {
          this.#sum += String.fromCharCode(b);
          this.#state = 'idle';
          const data = Uint8Array.from(this.#body);
          this.#body = [];
          if (this.#tooLong) events.push({ kind: 'bad', reason: 'too-long' });
          else if (!HEX.test(this.#sum) || parseInt(this.#sum, 16) !== checksum(data)) events.push({ kind: 'bad', reason: 'checksum' });
          else events.push({ kind: 'packet', data });
          break;
        }
      }
    }
    return events;
  }
}

/** Bytes as lowercase hex. */
export function toHex(data: Uint8Array): string {
  let s = '';
  for (const b of data) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Hex text to bytes; undefined unless it is an even number of hex digits. */
export function fromHex(text: string): Uint8Array | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** A 32-bit value as gdb shows RV32 registers in `g`/`p`: 8 hex digits, little-endian byte order. */
export function u32Hex(value: number): string {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0, true);
  return toHex(b);
}

/** Reads {@link u32Hex} text back; undefined unless it is exactly 8 hex digits. */
export function parseU32Hex(text: string): number | undefined {
  const b = text.length === 8 ? fromHex(text) : undefined;
  return b && new DataView(b.buffer).getUint32(0, true);
}
