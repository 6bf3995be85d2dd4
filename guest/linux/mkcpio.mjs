// Packs a reproducible initramfs (cpio "newc"): entries in the order given (parents first), inode
// numbers counted from 1, mtime 0, uid/gid 0, no host metadata at all. Plain Node, no dependencies.
//
//   node mkcpio.mjs out.cpio dir:/dev nod:/dev/console:c:5:1:600 file:/init:path/to/init[:755] …
import { readFileSync, writeFileSync } from 'node:fs';

const [, , outPath, ...specs] = process.argv;
if (!outPath || specs.length === 0) {
  console.error('usage: mkcpio.mjs out.cpio dir:/path | file:/path:src[:mode] | nod:/path:c|b:major:minor:mode …');
  process.exit(2);
}

const S_IFDIR = 0o040000, S_IFREG = 0o100000, S_IFCHR = 0o020000, S_IFBLK = 0o060000;
const chunks = [];
let size = 0;
let ino = 1;

function hex8(n) {
  return (n >>> 0).toString(16).padStart(8, '0');
}

function pad4() {
  const p = (4 - (size % 4)) % 4;
  if (p) push(Buffer.alloc(p));
}

function push(b) {
  chunks.push(b);
  size += b.length;
}

function entry(name, mode, data, nlink, rdevMajor = 0, rdevMinor = 0) {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const header =
    '070701' + hex8(ino++) + hex8(mode) + hex8(0) + hex8(0) + hex8(nlink) + hex8(0) + hex8(data.length) +
    hex8(0) + hex8(0) + hex8(rdevMajor) + hex8(rdevMinor) + hex8(nameBytes.length) + hex8(0);
  push(Buffer.from(header, 'ascii'));
  push(nameBytes);
  pad4();
  push(data);
  pad4();
}

for (const spec of specs) {
  const [kind, path, ...rest] = spec.split(':');
  if (!path || !path.startsWith('/')) throw new Error(`mkcpio: bad entry ${JSON.stringify(spec)}`);
  const name = path.slice(1);
  if (kind === 'dir') {
    entry(name, S_IFDIR | 0o755, Buffer.alloc(0), 2);
  } else if (kind === 'file') {
    const [src, mode = '755'] = rest;
    entry(name, S_IFREG | parseInt(mode, 8), readFileSync(src), 1);
  } else if (kind === 'nod') {
    const [type, major, minor, mode] = rest;
    entry(name, (type === 'b' ? S_IFBLK : S_IFCHR) | parseInt(mode, 8), Buffer.alloc(0), 1, Number(major), Number(minor));
  } else {
    throw new Error(`mkcpio: unknown entry kind ${JSON.stringify(kind)}`);
  }
}
ino = 0;
entry('TRAILER!!!', 0, Buffer.alloc(0), 1);
// Whole 512-byte blocks, as cpio(1) writes them.
const tail = (512 - (size % 512)) % 512;
if (tail) push(Buffer.alloc(tail));
writeFileSync(outPath, Buffer.concat(chunks));
