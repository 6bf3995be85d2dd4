/* Privilege switching: M-mode opens PMP, drops to U-mode with mret, and services U-mode ecalls
   as a tiny syscall interface (write, exit); also checks that U-mode cannot touch M-mode CSRs. */
#include "lockstep.h"

#define SYS_WRITE 1u /* a0 = buffer, a1 = length; returns length */
#define SYS_EXIT 2u  /* a0 = exit code */

static uint32_t user_stack[1024] __attribute__((aligned(16)));
static uint32_t syscalls;
static uint32_t illegal;

static uint32_t ecall2(uint32_t nr, uint32_t a0, uint32_t a1) {
  register uint32_t r_a0 __asm__("a0") = a0;
  register uint32_t r_a1 __asm__("a1") = a1;
  register uint32_t r_a7 __asm__("a7") = nr;
  __asm__ volatile("ecall" : "+r"(r_a0) : "r"(r_a1), "r"(r_a7) : "memory");
  return r_a0;
}

static void user_print(const char *s) {
  uint32_t n = 0;
  while (s[n]) n++;
  ecall2(SYS_WRITE, (uint32_t)(uintptr_t)s, n);
}

/* Everything below this line until main() runs in U-mode. */
static __attribute__((noreturn, noinline)) void user_main(void) {
  user_print("umode: hello from U-mode\n");
  uint32_t n = ecall2(SYS_WRITE, (uint32_t)(uintptr_t)"umode: write returned its length\n", 33);
  user_print(n == 33 ? "umode: syscall result ok\n" : "umode: syscall result wrong\n");

  /* Reading mstatus from U-mode must raise an illegal-instruction exception, which M-mode skips. */
  uint32_t v = 0x1234;
  __asm__ volatile(".option push\n.option norvc\ncsrr %0, mstatus\n.option pop" : "+r"(v));
  user_print(v == 0x1234 ? "umode: mstatus read was refused\n" : "umode: mstatus read succeeded\n");

  ecall2(SYS_EXIT, 0, 0);
  for (;;) {
  }
}

void ls_trap_handler(ls_trap_frame *f) {
  uint32_t from_user = (f->mstatus & LS_MSTATUS_MPP) == 0;
  if (f->mcause == LS_EXC_ECALL_U && from_user) {
    syscalls++;
    switch (f->x[17]) {
      case SYS_WRITE:
        ls_write((const char *)(uintptr_t)f->x[10], f->x[11]);
        f->x[10] = f->x[11];
        break;
      case SYS_EXIT:
        ls_puts("umode: ");
        ls_putdec(syscalls);
        ls_puts(" syscalls, ");
        ls_putdec(illegal);
        ls_puts(" illegal instruction\n");
        ls_exit((int)f->x[10]);
      default:
        f->x[10] = (uint32_t)-1;
        break;
    }
    f->mepc += 4; /* ecall is never compressed */
    return;
  }
  if (f->mcause == LS_EXC_ILLEGAL && from_user) {
    illegal++;
    f->mepc += 4; /* the probe above is a 32-bit csrr */
    return;
  }
  ls_report_trap(f);
}

int main(void) {
  /* One NAPOT region covering the whole address space with RWX: U-mode may touch anything, but
     without any PMP entry it could touch nothing. */
  ls_csr_write(pmpaddr0, 0xffffffffu);
  ls_csr_write(pmpcfg0, 0x1fu); /* R | W | X | A=NAPOT */

  ls_puts("umode: entering U-mode\n");
  ls_csr_clear(mstatus, LS_MSTATUS_MPP); /* MPP = U */
  ls_csr_write(mepc, (uint32_t)(uintptr_t)user_main);
  /* The trap entry switches to this stack on traps from U-mode. */
  uint32_t msp;
  __asm__ volatile("mv %0, sp" : "=r"(msp));
  ls_csr_write(mscratch, msp);
  __asm__ volatile(
      "mv sp, %0\n"
      "mret\n" ::"r"(&user_stack[1024]));
  __builtin_unreachable();
}
