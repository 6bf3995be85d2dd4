/* Runs a guest's main() as a user process under Sv32, the way an OS would: linked with
   -Wl,--wrap=main, __wrap_main takes over from start.S in M-mode, copies the image to physical pages
   in a scattered order (virtually contiguous, physically not, as a process's pages are), maps it at its
   link address with 4 KiB user pages (plus the UART and the test finisher), opens PMP and drops to
   U-mode at the real main. main's return (an ecall) ends the run with its value as exit code.
   Measures what translation costs a CPU workload; the same ELF runs under QEMU. */
#include "lockstep.h"

#define PAGE 4096u
#define PTE_V 0x01u
#define PTE_R 0x02u
#define PTE_W 0x04u
#define PTE_X 0x08u
#define PTE_U 0x10u
#define USER_COPY (LS_RAM_BASE + 0x100000u) /* physical home of the user copy: the second MiB */
#define SLOTS 256u                          /* pages in that MiB; the image has at most as many */

extern char _end[];
int __real_main(void);

/* Page tables: the root, one second-level table per 4 MiB region used (RAM, UART, finisher). They
   live in the M-mode image, which U-mode neither sees nor uses. */
static uint32_t root[1024] __attribute__((aligned(PAGE)));
static uint32_t ram_table[1024] __attribute__((aligned(PAGE)));
static uint32_t uart_table[1024] __attribute__((aligned(PAGE)));
static uint32_t test_table[1024] __attribute__((aligned(PAGE)));

static uint32_t pte(uint32_t pa, uint32_t flags) { return ((pa / PAGE) << 10) | flags; }

static void map(uint32_t *table, uint32_t va, uint32_t pa, uint32_t flags) {
  root[va >> 22] = pte((uint32_t)(uintptr_t)table, PTE_V);
  table[(va >> 12) & 0x3ffu] = pte(pa, flags);
}

/* main returns here, in U-mode, with its result in a0. */
static void __attribute__((naked, noreturn)) user_return(void) {
  __asm__ volatile("ecall");
}

void ls_trap_handler(ls_trap_frame *f) {
  if (f->mcause == LS_EXC_ECALL_U) ls_exit((int)f->x[10]);
  ls_report_trap(f);
}

int __wrap_main(void) {
  const uint32_t pages = ((uint32_t)(uintptr_t)_end - LS_RAM_BASE + PAGE - 1) / PAGE;
  if (pages > SLOTS) {
    ls_puts("user: image too large\n");
    ls_exit(4);
  }
  /* Page i goes to slot (i * 97) mod 256: a permutation (97 is odd), so neighbours land far apart. */
  for (uint32_t i = 0; i < pages; i++) {
    const uint32_t va = LS_RAM_BASE + i * PAGE;
    const uint32_t pa = USER_COPY + ((i * 97u) % SLOTS) * PAGE;
    const uint32_t *src = (const uint32_t *)(uintptr_t)va;
    uint32_t *dst = (uint32_t *)(uintptr_t)pa;
    for (uint32_t w = 0; w < PAGE / 4; w++) dst[w] = src[w];
    map(ram_table, va, pa, PTE_V | PTE_R | PTE_W | PTE_X | PTE_U);
  }
  map(uart_table, LS_UART_BASE, LS_UART_BASE, PTE_V | PTE_R | PTE_W | PTE_U);
  map(test_table, LS_TEST_BASE, LS_TEST_BASE, PTE_V | PTE_R | PTE_W | PTE_U);

  ls_csr_write(pmpaddr0, 0xffffffffu);
  ls_csr_write(pmpcfg0, 0x1fu); /* all of memory: R | W | X, NAPOT */
  ls_csr_write(satp, 0x80000000u | ((uint32_t)(uintptr_t)root / PAGE));
  __asm__ volatile("sfence.vma" ::: "memory");

  /* The trap entry switches to this (physical) stack on traps from U-mode. */
  uint32_t msp;
  __asm__ volatile("mv %0, sp" : "=r"(msp));
  ls_csr_write(mscratch, msp);
  ls_csr_clear(mstatus, LS_MSTATUS_MPP); /* MPP = U */
  ls_csr_write(mepc, (uint32_t)(uintptr_t)__real_main);
  /* U-mode starts on the copy's stack (same virtual address as start.S's) and returns to user_return. */
  register uint32_t ra __asm__("ra") = (uint32_t)(uintptr_t)user_return;
  __asm__ volatile(
      "la sp, __stack_top\n"
      "mret\n" ::"r"(ra));
  __builtin_unreachable();
}
