/* Polled NS16550A console: waits for THRE before each byte, so output never depends on
   interrupt timing and needs no driver state. */
#include "lockstep.h"

#define UART_THR 0
#define UART_LSR 5
#define UART_LSR_THRE 0x20u

void ls_putc(char c) {
  volatile uint8_t *uart = (volatile uint8_t *)LS_UART_BASE;
  while ((uart[UART_LSR] & UART_LSR_THRE) == 0) {
  }
  uart[UART_THR] = (uint8_t)c;
}

void ls_write(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) ls_putc(s[i]);
}

void ls_puts(const char *s) {
  while (*s) ls_putc(*s++);
}

static void put_hex_digits(uint64_t v, int digits) {
  static const char hex[] = "0123456789abcdef";
  ls_putc('0');
  ls_putc('x');
  for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) ls_putc(hex[(v >> shift) & 0xf]);
}

void ls_puthex(uint32_t v) { put_hex_digits(v, 8); }
void ls_puthex64(uint64_t v) { put_hex_digits(v, 16); }

void ls_putdec64(uint64_t v) {
  char buf[20];
  int n = 0;
  do {
    buf[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) ls_putc(buf[--n]);
}

void ls_putdec(uint32_t v) {
  char buf[10];
  int n = 0;
  do {
    buf[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) ls_putc(buf[--n]);
}
