/* Exit, timer, counters, semihosting wrappers and the default trap report: the small pieces of the
   virt platform every example shares. */
#include "lockstep.h"

__attribute__((noreturn)) void ls_exit(int code) {
#ifdef LS_REPORT_INSTRET
  ls_puts("[instret ");
  ls_putdec64(ls_instret());
  ls_puts("]\n");
#endif
  volatile uint32_t *finisher = (volatile uint32_t *)LS_TEST_BASE;
  /* 0x3333 with code 0 would still read as "fail" to some tools; 0x5555 is the unambiguous pass. */
  *finisher = code == 0 ? 0x5555u : (((uint32_t)code & 0xffffu) << 16) | 0x3333u;
  for (;;) __asm__ volatile("wfi");
}

/* picolibc's abort() and exit() end here, so a libc failure also reaches the finisher. */
__attribute__((noreturn)) void _exit(int code) { ls_exit(code); }

uint64_t ls_mtime(void) {
  volatile uint32_t *mtime = (volatile uint32_t *)LS_CLINT_MTIME;
  uint32_t hi, lo;
  /* Re-read when the high half ticked between the two loads. */
  do {
    hi = mtime[1];
    lo = mtime[0];
  } while (mtime[1] != hi);
  return ((uint64_t)hi << 32) | lo;
}

void ls_set_mtimecmp(uint64_t when) {
  volatile uint32_t *cmp = (volatile uint32_t *)LS_CLINT_MTIMECMP;
  /* High half to all-ones first so no intermediate value lies in the past and fires early. */
  cmp[1] = 0xffffffffu;
  cmp[0] = (uint32_t)when;
  cmp[1] = (uint32_t)(when >> 32);
}

void ls_timer_enable(void) { ls_csr_set(mie, LS_MIE_MTIE); }
void ls_timer_disable(void) { ls_csr_clear(mie, LS_MIE_MTIE); }

uint64_t ls_instret(void) {
  uint32_t hi, lo;
  do {
    hi = ls_csr_read(instreth);
    lo = ls_csr_read(instret);
  } while (ls_csr_read(instreth) != hi);
  return ((uint64_t)hi << 32) | lo;
}

uint64_t ls_cycle(void) {
  uint32_t hi, lo;
  do {
    hi = ls_csr_read(cycleh);
    lo = ls_csr_read(cycle);
  } while (ls_csr_read(cycleh) != hi);
  return ((uint64_t)hi << 32) | lo;
}

void ls_semihost_write0(const char *s) { ls_semihost(LS_SYS_WRITE0, (uint32_t)(uintptr_t)s); }

__attribute__((noreturn)) void ls_semihost_exit(uint32_t reason) {
  /* On RV32 the parameter is the reason itself, not a pointer to a block (as on AArch32). */
  ls_semihost(LS_SYS_EXIT, reason);
  /* A host without semihosting would return here (or trap); fall back to the finisher. */
  ls_exit(reason == LS_ADP_STOPPED_APPLICATION_EXIT ? 0 : 1);
}

__attribute__((noreturn)) void ls_report_trap(const ls_trap_frame *frame) {
  ls_puts("\ntrap: mcause=");
  ls_puthex(frame->mcause);
  ls_puts(" mepc=");
  ls_puthex(frame->mepc);
  ls_puts(" mtval=");
  ls_puthex(frame->mtval);
  ls_putc('\n');
  ls_exit(3);
}

__attribute__((weak)) void ls_trap_handler(ls_trap_frame *frame) { ls_report_trap(frame); }
