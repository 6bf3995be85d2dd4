/* The console part of the bare-metal SDK's API (guest/sdk/lockstep.h) for a Linux process, so the
   CPU examples in guest/examples/ compile unchanged as user programs and print the same bytes.
   Output is buffered and written to stdout at each newline (every example ends its lines). */
#ifndef LOCKSTEP_COMPAT_H
#define LOCKSTEP_COMPAT_H

#include "lsys.h"

static char ls_out[256];
static unsigned ls_out_len;

static void ls_flush(void) {
  unsigned done = 0;
  while (done < ls_out_len) {
    const ssize_t n = write(1, ls_out + done, ls_out_len - done);
    if (n <= 0) break;
    done += (unsigned)n;
  }
  ls_out_len = 0;
}

static __attribute__((unused)) void ls_putc(char c) {
  ls_out[ls_out_len++] = c;
  if (c == '\n' || ls_out_len == sizeof ls_out) ls_flush();
}

static __attribute__((unused)) void ls_puts(const char *s) {
  while (*s) ls_putc(*s++);
}

static void ls_put_hex_digits(uint64_t v, int digits) {
  ls_puts("0x");
  for (int i = digits - 1; i >= 0; i--) ls_putc("0123456789abcdef"[(v >> (4 * i)) & 15]);
}

static __attribute__((unused)) void ls_puthex(uint32_t v) { ls_put_hex_digits(v, 8); }
static __attribute__((unused)) void ls_puthex64(uint64_t v) { ls_put_hex_digits(v, 16); }

static __attribute__((unused)) void ls_putdec(uint32_t v) {
  char buf[10];
  int n = 0;
  do {
    buf[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) ls_putc(buf[--n]);
}

#endif
