// Progress reporting on stderr: one live status line when stderr is a TTY, plain lines otherwise
// (CI logs, pipes). Permanent messages go through log() so they never collide with the status line.

export class Progress {
  readonly #tty = process.stderr.isTTY === true;
  #done = 0;
  #line = '';

  constructor(readonly total: number) {}

  /** Marks the start of step `what` (counts towards the total). */
  step(what: string): void {
    this.#done++;
    const text = `[${this.#done}/${this.total}] ${what}`;
    if (this.#tty) {
      const width = process.stderr.columns ?? 100;
      this.#line = text.length >= width ? text.slice(0, width - 1) : text;
      process.stderr.write(`\r\x1b[2K${this.#line}`);
    } else {
      process.stderr.write(text + '\n');
    }
  }

  /** Rewrites the status line without counting a step (TTY only: piped output gets no such noise). */
  update(what: string): void {
    if (!this.#tty) return;
    const text = `[${this.#done}/${this.total}] ${what}`;
    const width = process.stderr.columns ?? 100;
    this.#line = text.length >= width ? text.slice(0, width - 1) : text;
    process.stderr.write(`\r\x1b[2K${this.#line}`);
  }

  /** A message that stays on screen. */
  log(message: string): void {
    if (this.#tty) process.stderr.write(`\r\x1b[2K${message}\n${this.#line}`);
    else process.stderr.write(message + '\n');
  }

  /** Clears the status line. */
  end(): void {
    if (this.#tty) process.stderr.write('\r\x1b[2K');
    this.#line = '';
  }
}
