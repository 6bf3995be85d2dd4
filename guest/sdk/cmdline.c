/* The guest's command line through semihosting, safe on hosts without semihosting (see cmdline.h). */
#include "cmdline.h"

#include "lockstep.h"

/* While ls_cmdline() probes, mtvec points here: a breakpoint trap means the host has no semihosting.
   Skip the ebreak (4 bytes: the marker sequence is never compressed), fail the call with a0 = -1 and
   return into ls_semihost, which then returns normally. Only t0 is used: ls_semihost is an ordinary
   call, so t0 holds nothing live there. */
__asm__(".section .text.ls_cmdline_trap,\"ax\",@progbits\n"
        ".p2align 2\n"
        "ls_cmdline_trap:\n"
        "  csrr t0, mepc\n"
        "  addi t0, t0, 4\n"
        "  csrw mepc, t0\n"
        "  li a0, -1\n"
        "  mret\n"
        ".previous\n");
extern void ls_cmdline_trap(void);

int ls_cmdline(char *buf, size_t size) {
  if (size == 0) return -1;
  buf[0] = 0;
  /* The host writes the text into buf and its length into block[1]. */
  volatile uint32_t block[2] = {(uint32_t)(uintptr_t)buf, (uint32_t)size};
  uint32_t saved = ls_csr_read(mtvec);
  ls_csr_write(mtvec, (uint32_t)(uintptr_t)ls_cmdline_trap);
  uint32_t r = ls_semihost(LS_SYS_GET_CMDLINE, (uint32_t)(uintptr_t)block);
  ls_csr_write(mtvec, saved);
  if (r != 0 || block[1] >= size) {
    buf[0] = 0;
    return -1;
  }
  buf[block[1]] = 0;
  return (int)block[1];
}

const char *ls_cmdline_value(const char *cmdline, const char *name, size_t *len) {
  size_t n = 0;
  while (name[n]) n++;
  const char *p = cmdline;
  while (*p) {
    while (*p == ' ') p++;
    const char *w = p;
    while (*p && *p != ' ') p++;
    size_t wl = (size_t)(p - w);
    if (wl > n && w[n] == '=') {
      size_t i = 0;
      while (i < n && w[i] == name[i]) i++;
      if (i == n) {
        *len = wl - n - 1;
        return w + n + 1;
      }
    }
  }
  return 0;
}
