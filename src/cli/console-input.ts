// The guest's UART input from this process's stdin: `--input -`, or a terminal when Linux boots (as
// QEMU's -nographic: raw mode, every key to the guest, Ctrl-A x to quit, Ctrl-A Ctrl-A for a Ctrl-A).
import type { Machine } from '../machine/machine.js';

const CTRL_A = 0x01;

/**
 * Forwards `stdin` to the machine's UART receiver until the returned function is called. On a TTY the
 * terminal is put in raw mode (and restored) and Ctrl-A x calls `quit`.
 */
export function forwardStdin(machine: Machine, stdin: NodeJS.ReadStream, quit: () => void): () => void {
  const tty = stdin.isTTY === true && typeof stdin.setRawMode === 'function';
  let escape = false;
  const onData = (chunk: Buffer): void => {
    if (!tty) {
      machine.input(chunk);
      return;
    }
    const out: number[] = [];
    for (const b of chunk) {
      if (escape) {
        escape = false;
        if (b === 0x78 || b === 0x58) {
          quit();
          return;
        }
        if (b === CTRL_A) out.push(CTRL_A);
        continue;
      }
      if (b === CTRL_A) escape = true;
      else out.push(b);
    }
    if (out.length > 0) machine.input(Uint8Array.from(out));
  };
  if (tty) stdin.setRawMode(true);
  stdin.on('data', onData);
  stdin.resume();
  return () => {
    stdin.removeListener('data', onData);
    if (tty) stdin.setRawMode(false);
    stdin.pause();
  };
}
