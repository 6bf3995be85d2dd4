/* Interrupt-driven UART echo: receive interrupts through the PLIC plus a 1 ms CLINT tick, for the
   record/replay tests. Each byte received is echoed at once (letters with their case swapped) and
   folded into an FNV-1a checksum; each completed line reports the tick and minstret at which it
   completed. Runs for 200 ticks or until a 'q' arrives, then prints a summary.

   Without input the output is only the summary (0 bytes, 0 lines, FNV-1a of nothing, 200 ticks),
   the same on any clock. With input, the line reports and the final tick count depend on when the
   bytes arrived: that timing is exactly what a recording must capture and a replay reproduce. */
#include "lockstep.h"

#define TICKS 200u
#define PERIOD (LS_TIMEBASE_HZ / 1000u) /* 1 ms of mtime */

/* NS16550A registers (byte-wide) */
#define UART_RBR ((volatile uint8_t *)(LS_UART_BASE + 0u))
#define UART_IER ((volatile uint8_t *)(LS_UART_BASE + 1u))
#define UART_LSR ((volatile uint8_t *)(LS_UART_BASE + 5u))
#define UART_IER_RX 0x01u
#define UART_LSR_DR 0x01u
#define UART_IRQ 10u

/* PLIC, hart 0 M-mode context (context 0) */
#define PLIC_PRIORITY(irq) ((volatile uint32_t *)(LS_PLIC_BASE + 4u * (irq)))
#define PLIC_ENABLE0 ((volatile uint32_t *)(LS_PLIC_BASE + 0x2000u))
#define PLIC_THRESHOLD0 ((volatile uint32_t *)(LS_PLIC_BASE + 0x200000u))
#define PLIC_CLAIM0 ((volatile uint32_t *)(LS_PLIC_BASE + 0x200004u))

#define FNV_OFFSET 0x811c9dc5u
#define FNV_PRIME 0x01000193u

static volatile uint32_t ticks;
static volatile uint32_t quit;     /* a 'q' arrived: bytes after it are drained but ignored */
static uint32_t bytes;             /* bytes taken (up to and including a 'q') */
static uint32_t lines;             /* '\n' received */
static uint32_t line_len;          /* bytes in the current line, not counting its '\n' */
static uint32_t checksum = FNV_OFFSET;
static volatile uint32_t mtime_sink; /* clock reads land here; never printed */

static uint64_t minstret(void) {
  uint32_t hi, lo;
  do {
    hi = ls_csr_read(minstreth);
    lo = ls_csr_read(minstret);
  } while (ls_csr_read(minstreth) != hi);
  return ((uint64_t)hi << 32) | lo;
}

static char transform(uint8_t c) {
  if (c >= 'a' && c <= 'z') return (char)(c - 'a' + 'A');
  if (c >= 'A' && c <= 'Z') return (char)(c - 'A' + 'a');
  return (char)c;
}

static void take_byte(uint8_t c) {
  if (quit) return;
  bytes++;
  checksum = (checksum ^ c) * FNV_PRIME;
  ls_putc(transform(c));
  if (c == '\n') {
    lines++;
    ls_puts("line ");
    ls_putdec(lines);
    ls_puts(": ");
    ls_putdec(line_len);
    ls_puts(" bytes, tick ");
    ls_putdec(ticks);
    ls_puts(", minstret ");
    ls_puthex64(minstret());
    ls_putc('\n');
    line_len = 0;
  } else {
    line_len++;
  }
  if (c == 'q') quit = 1;
}

static void uart_interrupt(void) {
  uint32_t id = *PLIC_CLAIM0;
  if (id == 0) return; /* nothing pending (another context claimed it, or it went away) */
  if (id == UART_IRQ) {
    while (*UART_LSR & UART_LSR_DR) take_byte(*UART_RBR);
  }
  *PLIC_CLAIM0 = id;
}

static void timer_interrupt(void) {
  ticks++;
  if (ticks < TICKS) {
    /* Re-armed from now, not from the old deadline, so a slow host cannot leave it already due. */
    ls_set_mtimecmp(ls_mtime() + PERIOD);
  } else {
    ls_timer_disable();
    ls_set_mtimecmp(UINT64_MAX);
  }
}

void ls_trap_handler(ls_trap_frame *f) {
  if (f->mcause == (LS_MCAUSE_INTERRUPT | LS_IRQ_M_EXT)) {
    uart_interrupt();
  } else if (f->mcause == (LS_MCAUSE_INTERRUPT | LS_IRQ_M_TIMER)) {
    timer_interrupt();
  } else {
    ls_report_trap(f);
  }
}

int main(void) {
  /* UART receive interrupt, routed through the PLIC to hart 0's M-mode context. */
  *PLIC_PRIORITY(UART_IRQ) = 1;
  *PLIC_ENABLE0 = 1u << UART_IRQ;
  *PLIC_THRESHOLD0 = 0;
  *UART_IER = UART_IER_RX;

  ls_set_mtimecmp(ls_mtime() + PERIOD);
  ls_csr_set(mie, LS_MIE_MEIE | LS_MIE_MTIE);

  /* Check-then-sleep with MIE clear (as in timer.c): WFI wakes on a pending enabled interrupt, which
     is taken once MIE is set again, so no interrupt can slip in between the check and the WFI. */
  ls_csr_clear(mstatus, LS_MSTATUS_MIE);
  uint64_t prev = ls_mtime();
  while (ticks < TICKS && !quit) {
    __asm__ volatile("wfi");
    ls_csr_set(mstatus, LS_MSTATUS_MIE);
    ls_csr_clear(mstatus, LS_MSTATUS_MIE);
    /* Exercise clock reads; the result is folded into a sink that never reaches the output. */
    uint64_t now = ls_mtime();
    mtime_sink = mtime_sink + (now >= prev ? 1u : 0u);
    prev = now;
  }
  /* Stop both interrupt sources before the summary so nothing more arrives or prints. */
  *UART_IER = 0;
  ls_csr_clear(mie, LS_MIE_MEIE | LS_MIE_MTIE);

  if (line_len != 0) ls_putc('\n'); /* end a partial line (e.g. "...q") */
  ls_puts("echo: ");
  ls_putdec(bytes);
  ls_puts(" bytes, ");
  ls_putdec(lines);
  ls_puts(" lines, checksum ");
  ls_puthex(checksum);
  ls_puts(", ");
  ls_putdec(ticks);
  ls_puts(" ticks\n");
  return 0;
}
