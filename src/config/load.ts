// Loading a configuration file: read it, parse and validate it, then check what it points at (the guest
// ELF, the disk image, TLS files, the key) so that a bad path fails here and not halfway through a start.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { access, open, readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError, type ConfigIssue } from './errors.js';
import { formatFromPath, parseConfig } from './parse.js';
import { CONFIG_LIMITS as L, type FtKeyConfig, type LoadedConfig, type LockstepConfig } from './types.js';

/** Configuration files larger than this are refused (a configuration is a few hundred bytes). */
const MAX_CONFIG_BYTES = 1 << 20;
const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    ENOENT: 'no such file',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EISDIR: 'is a directory',
    ENOTDIR: 'a parent is not a directory',
    ELOOP: 'too many symbolic links',
  };
  return code !== undefined ? `${words[code] ?? (err as Error).message} (${code})` : (err as Error).message;
}

/** Undefined when `path` is a readable regular file; otherwise why not. */
async function unreadableFile(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path);
    if (!st.isFile()) return `${path} is not a regular file`;
    await access(path, constants.R_OK);
    return undefined;
  } catch (err) {
    return `cannot read ${path}: ${describeFsError(err)}`;
  }
}

/** Undefined when `path` is a raw disk image virtio-blk can use: a regular file of whole 512-byte sectors. */
async function badImage(path: string): Promise<string | undefined> {
  const why = await unreadableFile(path);
  if (why) return why;
  const { size } = await stat(path);
  if (size === 0) return `${path} is empty: a disk image holds at least one 512-byte sector (e.g. truncate -s 4M ${path})`;
  if (size % 512 !== 0) {
    return `${path} is ${size} bytes, not a whole number of 512-byte sectors: virtio-blk could not reach its last ${size % 512} bytes (resize it, e.g. truncate -s ${Math.ceil(size / 512) * 512} ${path})`;
  }
  return undefined;
}

/** Undefined when `dir` is an existing directory; otherwise why not (an arbiter directory is never made here). */
async function missingDirectory(dir: string): Promise<string | undefined> {
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) return `${dir} is not a directory`;
    await access(dir, constants.R_OK | constants.W_OK | constants.X_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      return `${dir} does not exist: it must be a directory both halves share (e.g. on NFS), created beforehand — a missing mount must not turn into a local directory each host arbitrates on alone`;
    }
    return `cannot use ${dir}: ${describeFsError(err)}`;
  }
}

type Pem = { certificate: X509Certificate } | { key: KeyObject } | { problem: string };

/** Reads a PEM certificate or private key, or says why it is not one. */
async function readPem(path: string, want: 'certificate' | 'key'): Promise<Pem> {
  const why = await unreadableFile(path);
  if (why) return { problem: why };
  let text: string;
  try {
    text = await readFile(path, 'latin1');
  } catch (err) {
    return { problem: `cannot read ${path}: ${describeFsError(err)}` };
  }
  const begin = want === 'certificate' ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----/;
  if (!begin.test(text)) {
    return { problem: `${path} is not a PEM ${want === 'certificate' ? 'certificate (-----BEGIN CERTIFICATE-----)' : 'private key (-----BEGIN PRIVATE KEY-----)'}` };
  }
  try {
    return want === 'certificate' ? { certificate: new X509Certificate(text) } : { key: createPrivateKey(text) };
  } catch (err) {
    const encrypted = /ENCRYPTED/.test(text) || (err as { code?: string }).code === 'ERR_MISSING_PASSPHRASE';
    return { problem: encrypted ? `${path} is an encrypted private key: lockstep takes unencrypted keys (protect the file instead)` : `${path}: its PEM does not parse: ${(err as Error).message}` };
  }
}

/** The TLS files' problems, by field: each a PEM of the right kind, and the key the certificate's. */
async function tlsProblems(tls: { cert: string; key: string; ca: string }): Promise<{ field: string; why: string }[]> {
  const out: { field: string; why: string }[] = [];
  const cert = await readPem(tls.cert, 'certificate');
  const key = await readPem(tls.key, 'key');
  const ca = await readPem(tls.ca, 'certificate');
  if ('problem' in cert) out.push({ field: 'ft.tls.cert', why: cert.problem });
  if ('problem' in key) out.push({ field: 'ft.tls.key', why: key.problem });
  if ('problem' in ca) out.push({ field: 'ft.tls.ca', why: ca.problem });
  if ('certificate' in cert && 'key' in key && !cert.certificate.checkPrivateKey(key.key)) {
    out.push({ field: 'ft.tls.key', why: `${tls.key} is not the private key of the certificate ${tls.cert}` });
  }
  return out;
}

async function checkGuest(path: string): Promise<string | undefined> {
  const why = await unreadableFile(path);
  if (why) return why;
  const head = new Uint8Array(4);
  try {
    const fh = await open(path, 'r');
    try {
      await fh.read(head, 0, 4, 0);
    } finally {
      await fh.close();
    }
  } catch (err) {
    return `cannot read ${path}: ${describeFsError(err)}`;
  }
  return ELF_MAGIC.every((b, i) => head[i] === b) ? undefined : `${path} is not an ELF file (build it, or point at guest/bin/*.elf or guest/firmware/bin/firmware.elf)`;
}

function hexKey(hex: string, where: string): Uint8Array | string {
  if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length % 2 !== 0 || hex.length < 2 * L.keyBytes) {
    return `${where} must hold an even number of hex digits, at least ${2 * L.keyBytes} (${L.keyBytes} bytes); it holds ${hex.length} characters`;
  }
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

/** The key's bytes, or a message saying why there are none. */
async function keyBytes(key: FtKeyConfig, env: NodeJS.ProcessEnv): Promise<{ field: string; result: Uint8Array | string }> {
  switch (key.source) {
    case 'hex':
      return { field: 'ft.keyHex', result: hexKey(key.hex, 'it') };
    case 'env': {
      const v = env[key.name];
      if (v === undefined || v === '') return { field: 'ft.keyEnv', result: `the environment variable ${key.name} is not set (it must hold the key as hex)` };
      return { field: 'ft.keyEnv', result: hexKey(v.trim(), `the environment variable ${key.name}`) };
    }
    case 'file': {
      const why = await unreadableFile(key.path);
      if (why) return { field: 'ft.keyFile', result: why };
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(await readFile(key.path));
      } catch (err) {
        return { field: 'ft.keyFile', result: `cannot read ${key.path}: ${describeFsError(err)}` };
      }
      // One trailing newline byte (0x0a, as editors and `echo` leave) is not part of the key; nothing
      // else is dropped, so that the key plus one 0x0a ({@link ftKeyFileBytes}) reads back whole, whatever
      // its last byte (dropping a CR before it too cut a random key ending in 0x0d short).
      let end = bytes.length;
      if (end > 0 && bytes[end - 1] === 0x0a) end--;
      if (end < L.keyBytes) {
        return { field: 'ft.keyFile', result: `${key.path} holds ${end} bytes of key; at least ${L.keyBytes} are needed (e.g. head -c 32 /dev/urandom > key)` };
      }
      return { field: 'ft.keyFile', result: bytes.slice(0, end) };
    }
  }
}

/**
 * The bytes of a key file that {@link readFtKey} reads back as exactly `key`: the key and one newline.
 * Whoever writes a key it also holds (a host agent, a test) writes it so: the key written raw would lose
 * its last byte when that is a newline.
 */
export function ftKeyFileBytes(key: Uint8Array): Buffer {
  return Buffer.concat([key, Buffer.from('\n')]);
}

/**
 * Reads the logging channel's pre-shared key from where the configuration says: the file's bytes
 * (one trailing newline, 0x0a, removed), the hex in the configuration, or the hex in an environment variable.
 *
 * @param sourceName how the message of an error names the configuration
 * @throws {ConfigError} naming the key's field when the key is missing, unreadable or shorter than 16 bytes
 */
export async function readFtKey(key: FtKeyConfig, sourceName: string, env: NodeJS.ProcessEnv = process.env): Promise<Uint8Array> {
  const { field, result } = await keyBytes(key, env);
  if (typeof result === 'string') throw new ConfigError(sourceName, [{ field, message: `${field}: ${result}` }]);
  return result;
}

/**
 * Checks what a validated configuration points at: the guest (or the Linux firmware) is a readable ELF
 * file, the kernel, initrd and device tree readable files, the disk image a readable file of whole
 * 512-byte sectors, the TLS files PEM certificates and a private key that belongs to the certificate, a
 * file arbiter's directory exists, and the key can be read. Returns the key (undefined when none is
 * configured).
 *
 * @throws {ConfigError} listing every problem, each naming its field
 */
export async function checkConfigFiles(config: LockstepConfig, sourceName: string, env: NodeJS.ProcessEnv = process.env): Promise<Uint8Array | undefined> {
  const issues: ConfigIssue[] = [];
  const problem = (field: string, why: string | undefined) => {
    if (why !== undefined) issues.push({ field, message: `${field}: ${why}` });
  };
  if (config.vm.guest !== undefined) problem('vm.guest', await checkGuest(config.vm.guest));
  const linux = config.vm.linux;
  if (linux) {
    problem('vm.kernel', await unreadableFile(linux.kernel));
    if (linux.initrd !== undefined) problem('vm.initrd', await unreadableFile(linux.initrd));
    if (linux.bios !== undefined) problem('vm.bios', await checkGuest(linux.bios));
    if (linux.dtb !== undefined) problem('vm.dtb', await unreadableFile(linux.dtb));
  }
  if (config.vm.devices.disk) problem('vm.devices.disk.path', await badImage(config.vm.devices.disk.path));
  const tls = config.ft.tls;
  if (tls) for (const { field, why } of await tlsProblems(tls)) problem(field, why);
  if (config.ft.arbiter?.backend === 'file') problem('ft.arbiter.dir', await missingDirectory(config.ft.arbiter.dir));
  let key: Uint8Array | undefined;
  if (config.ft.key) {
    const { field, result } = await keyBytes(config.ft.key, env);
    if (typeof result === 'string') problem(field, result);
    else key = result;
  }
  if (issues.length > 0) throw new ConfigError(sourceName, issues);
  return key;
}

/**
 * Loads a configuration file: JSON for `.json`, YAML for `.yaml`/`.yml`. Validates it (see
 * docs/config.md), resolves relative paths against the file's directory, and checks the files and
 * the key it names.
 *
 * ```ts
 * const { config, warnings, key } = await loadConfig('vm.yaml');
 * for (const w of warnings) console.error(`WARNING: ${w}`);
 * ```
 *
 * @param env where `ft.keyEnv` is looked up (default `process.env`)
 * @throws {ConfigError} (`ERR_LOCKSTEP_CONFIG_INVALID`) naming the file, and the line and column or the
 *   field's path, for every problem found
 */
export async function loadConfig(path: string, options: { env?: NodeJS.ProcessEnv } = {}): Promise<LoadedConfig> {
  const source = resolve(path);
  const format = formatFromPath(path);
  if (format === undefined) {
    throw new ConfigError(path, [{ field: '', message: 'the file name must end in .json, .yaml or .yml (the extension decides the format)' }]);
  }
  let text: string;
  try {
    const st = await stat(source);
    if (st.isFile() && st.size > MAX_CONFIG_BYTES) {
      throw new ConfigError(path, [{ field: '', message: `the file is ${st.size} bytes; a configuration file is at most ${MAX_CONFIG_BYTES}` }]);
    }
    text = await readFile(source, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(path, [{ field: '', message: `cannot read the configuration file: ${describeFsError(err)}` }], { cause: err });
  }
  const { config, warnings } = parseConfig(text, format, path, dirname(source));
  const key = await checkConfigFiles(config, path, options.env ?? process.env);
  const loaded = { config, warnings, source } as LoadedConfig;
  // Not enumerable: logging or serialising the loaded configuration must not print the secret.
  Object.defineProperty(loaded, 'key', { value: key, enumerable: false });
  return Object.freeze(loaded);
}
