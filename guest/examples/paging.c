/* Supervisor mode and Sv32, checked against QEMU: M-mode (a tiny SBI: timer, shutdown) delegates to
   an S-mode kernel that turns on paging and probes it: superpages, a misaligned superpage, faults of
   each access type with their stval, A/D bits set by the walker, R/W/X, SUM and MXR, remapping with
   sfence.vma (by address and by ASID), code written through one virtual alias and run through another,
   an instruction straddling two non-adjacent physical pages, a U-mode process with system calls and a
   fault, and a timer interrupt forwarded from M to S through STIP. Prints only what the architecture
   defines, so lockstep and QEMU must print the same. */
#include "lockstep.h"

#define PAGE 4096u
#define PTE_V 0x01u
#define PTE_R 0x02u
#define PTE_W 0x04u
#define PTE_X 0x08u
#define PTE_U 0x10u
#define PTE_A 0x40u
#define PTE_D 0x80u
#define SSTATUS_SIE (1u << 1)
#define SSTATUS_SPP (1u << 8)
#define SSTATUS_SUM (1u << 18)
#define SSTATUS_MXR (1u << 19)
#define MIP_STIP (1u << 5)

/* Virtual addresses the S-mode kernel uses (the kernel itself runs at its link address). */
#define VA_TEST 0x40000000u  /* 4 KiB test pages, one second-level table */
#define VA_ALIAS_X (VA_TEST + 0x10000u)
#define VA_ALIAS_W (VA_TEST + 0x11000u)
#define VA_CROSS (VA_TEST + 0x20000u)
#define VA_SUPER 0xc0000000u      /* a 4 MiB superpage onto RAM */
#define VA_BAD_SUPER 0xc0400000u  /* a superpage leaf with PPN[0] != 0 */

/* SBI-like calls from S to M (a7). */
#define SBI_SET_TIMER 0u
#define SBI_SHUTDOWN 8u
/* System calls from U to S (a7). */
#define SYS_PUTC 64u
#define SYS_EXIT 93u

/* Page tables and test pages: each a page of its own in the image. */
static uint32_t root[1024] __attribute__((aligned(PAGE)));
static uint32_t kernel_table[1024] __attribute__((aligned(PAGE)));
static uint32_t uart_table[1024] __attribute__((aligned(PAGE)));
static uint32_t test_dev_table[1024] __attribute__((aligned(PAGE)));
static uint32_t test_table[1024] __attribute__((aligned(PAGE)));
static uint8_t pool[6][PAGE] __attribute__((aligned(PAGE)));
static uint8_t user_stack[PAGE] __attribute__((aligned(PAGE), section(".bss.user")));

/* What the last fault the S handler absorbed was. */
static volatile uint32_t fault_cause, fault_tval;
static volatile uint32_t ticks, tick_cause;

extern char __stack_top[], _end[];
extern char user_text_start[], user_text_end[], user_data_start[], user_data_end[];
uint32_t probe_load(uint32_t va);
uint32_t probe_store(uint32_t va, uint32_t value);
uint32_t probe_exec(uint32_t va);
uint32_t run_user(uint32_t entry, uint32_t sp);
void user_exit_to_s(void);
void user_main(void);
void s_trap_entry(void);

/* ---- U-mode code and data: pages of their own, mapped with U ---- */
__asm__(
    ".section .text.user, \"ax\", @progbits\n"
    ".balign 4096\n"
    ".globl user_text_start\n"
    "user_text_start:\n"
    ".globl user_main\n"
    "user_main:\n"
    "  la s0, user_message\n"       /* print the message through SYS_PUTC */
    "1: lbu a0, 0(s0)\n"
    "  beqz a0, 2f\n"
    "  li a7, 64\n"
    "  ecall\n"
    "  addi s0, s0, 1\n"
    "  j 1b\n"
    "2: la s1, user_counter\n"      /* compute on user data */
    "  li t0, 10\n"
    "3: lw t1, 0(s1)\n"
    "  addi t1, t1, 3\n"
    "  sw t1, 0(s1)\n"
    "  addi t0, t0, -1\n"
    "  bnez t0, 3b\n"
    "  la a0, root\n"               /* a kernel page: the load faults, S resumes at ra */
    "  jal ra, user_probe\n"
    "  mv s2, a0\n"
    "  lw a0, 0(s1)\n"              /* exit with counter + probe result */
    "  add a0, a0, s2\n"
    "  li a7, 93\n"
    "  ecall\n"
    "user_probe:\n"
    "  lw a0, 0(a0)\n"
    "  ret\n"
    ".balign 4096\n"
    ".globl user_text_end\n"
    "user_text_end:\n"
    ".section .data.user, \"aw\", @progbits\n"
    ".balign 4096\n"
    ".globl user_data_start\n"
    "user_data_start:\n"
    "user_message: .asciz \"paging: hello from U-mode through Sv32\\n\"\n"
    ".balign 4\n"
    "user_counter: .word 100\n"
    ".balign 4096\n"
    ".globl user_data_end\n"
    "user_data_end:\n"
    ".text\n");

/* ---- S-mode probes (leaf functions: on a fault the handler returns to ra with a0 = -1) ---- */
__asm__(
    ".text\n"
    ".globl probe_load\n"
    "probe_load: lw a0, 0(a0)\n ret\n"
    ".globl probe_store\n"
    "probe_store: sw a1, 0(a0)\n li a0, 0\n ret\n"
    ".globl probe_exec\n"
    "probe_exec: jr a0\n"
    /* run_user(entry, sp): to U-mode at entry; back here (user_exit_to_s) when it calls SYS_EXIT. */
    ".globl run_user\n"
    "run_user:\n"
    "  addi sp, sp, -64\n"
    "  sw ra, 0(sp)\n sw s0, 4(sp)\n sw s1, 8(sp)\n sw s2, 12(sp)\n sw s3, 16(sp)\n sw s4, 20(sp)\n"
    "  sw s5, 24(sp)\n sw s6, 28(sp)\n sw s7, 32(sp)\n sw s8, 36(sp)\n sw s9, 40(sp)\n sw s10, 44(sp)\n sw s11, 48(sp)\n"
    "  la t0, saved_s_sp\n sw sp, 0(t0)\n"
    "  csrw sscratch, sp\n"         /* traps from U use the S stack below this frame */
    "  csrw sepc, a0\n"
    "  li t0, 0x100\n csrc sstatus, t0\n" /* SPP = U */
    "  mv sp, a1\n"
    "  sret\n"
    ".globl user_exit_to_s\n"
    "user_exit_to_s:\n"
    "  la t0, saved_s_sp\n lw sp, 0(t0)\n"
    "  lw ra, 0(sp)\n lw s0, 4(sp)\n lw s1, 8(sp)\n lw s2, 12(sp)\n lw s3, 16(sp)\n lw s4, 20(sp)\n"
    "  lw s5, 24(sp)\n lw s6, 28(sp)\n lw s7, 32(sp)\n lw s8, 36(sp)\n lw s9, 40(sp)\n lw s10, 44(sp)\n lw s11, 48(sp)\n"
    "  addi sp, sp, 64\n"
    "  ret\n"
    ".data\n"
    ".balign 4\n"
    "saved_s_sp: .word 0\n"
    ".text\n");

/* S-mode trap entry: the SDK's M-mode one with the S CSRs; it also restores sstatus from the frame,
   so the handler can return to S (SPP) from a U-mode trap. sscratch: the S stack while U runs, else 0. */
__asm__(
    ".text\n"
    ".globl s_trap_entry\n"
    ".p2align 2\n"
    "s_trap_entry:\n"
    "  csrrw sp, sscratch, sp\n"
    "  bnez sp, 1f\n"
    "  csrrw sp, sscratch, sp\n"
    "1: addi sp, sp, -144\n"
    "  sw x1, 4(sp)\n sw x3, 12(sp)\n sw x4, 16(sp)\n sw x5, 20(sp)\n sw x6, 24(sp)\n sw x7, 28(sp)\n"
    "  sw x8, 32(sp)\n sw x9, 36(sp)\n sw x10, 40(sp)\n sw x11, 44(sp)\n sw x12, 48(sp)\n sw x13, 52(sp)\n"
    "  sw x14, 56(sp)\n sw x15, 60(sp)\n sw x16, 64(sp)\n sw x17, 68(sp)\n sw x18, 72(sp)\n sw x19, 76(sp)\n"
    "  sw x20, 80(sp)\n sw x21, 84(sp)\n sw x22, 88(sp)\n sw x23, 92(sp)\n sw x24, 96(sp)\n sw x25, 100(sp)\n"
    "  sw x26, 104(sp)\n sw x27, 108(sp)\n sw x28, 112(sp)\n sw x29, 116(sp)\n sw x30, 120(sp)\n sw x31, 124(sp)\n"
    "  csrrw t0, sscratch, zero\n"
    "  bnez t0, 2f\n"
    "  addi t0, sp, 144\n"
    "2: sw t0, 8(sp)\n"
    "  sw zero, 0(sp)\n"
    "  csrr t0, sepc\n sw t0, 128(sp)\n"
    "  csrr t0, scause\n sw t0, 132(sp)\n"
    "  csrr t0, stval\n sw t0, 136(sp)\n"
    "  csrr t0, sstatus\n sw t0, 140(sp)\n"
    "  mv a0, sp\n"
    "  call s_trap\n"
    "  lw t0, 128(sp)\n csrw sepc, t0\n"
    "  lw t0, 140(sp)\n csrw sstatus, t0\n"
    "  andi t0, t0, 0x100\n"        /* back to U: re-arm sscratch with the S stack */
    "  bnez t0, 3f\n"
    "  addi t0, sp, 144\n"
    "  csrw sscratch, t0\n"
    "3: lw x1, 4(sp)\n lw x3, 12(sp)\n lw x4, 16(sp)\n lw x5, 20(sp)\n lw x6, 24(sp)\n lw x7, 28(sp)\n"
    "  lw x8, 32(sp)\n lw x9, 36(sp)\n lw x10, 40(sp)\n lw x11, 44(sp)\n lw x12, 48(sp)\n lw x13, 52(sp)\n"
    "  lw x14, 56(sp)\n lw x15, 60(sp)\n lw x16, 64(sp)\n lw x17, 68(sp)\n lw x18, 72(sp)\n lw x19, 76(sp)\n"
    "  lw x20, 80(sp)\n lw x21, 84(sp)\n lw x22, 88(sp)\n lw x23, 92(sp)\n lw x24, 96(sp)\n lw x25, 100(sp)\n"
    "  lw x26, 104(sp)\n lw x27, 108(sp)\n lw x28, 112(sp)\n lw x29, 116(sp)\n lw x30, 120(sp)\n lw x31, 124(sp)\n"
    "  lw sp, 8(sp)\n"
    "  sret\n");

static uint32_t sbi(uint32_t which, uint32_t arg) {
  register uint32_t a0 __asm__("a0") = arg;
  register uint32_t a7 __asm__("a7") = which;
  __asm__ volatile("ecall" : "+r"(a0) : "r"(a7) : "memory");
  return a0;
}

/* The S-mode handler: timer interrupts, system calls from U, and faults (absorbed: resume at ra). */
void s_trap(ls_trap_frame *f);
void s_trap(ls_trap_frame *f) {
  const uint32_t cause = f->mcause;
  if (cause == (LS_MCAUSE_INTERRUPT | 5u)) {
    ticks++;
    tick_cause = cause;
    __asm__ volatile("csrc sie, %0" ::"r"(MIP_STIP)); /* no more timer interrupts wanted */
    return;
  }
  if (cause == LS_EXC_ECALL_U) {
    if (f->x[17] == SYS_PUTC) {
      ls_putc((char)f->x[10]);
      f->mepc += 4;
      return;
    }
    if (f->x[17] == SYS_EXIT) {
      f->mepc = (uint32_t)(uintptr_t)user_exit_to_s;
      f->mstatus |= SSTATUS_SPP;
      return;
    }
  }
  if (cause & LS_MCAUSE_INTERRUPT) {
    ls_puts("paging: unexpected interrupt ");
    ls_puthex(cause);
    ls_exit(5);
  }
  fault_cause = cause;
  fault_tval = f->mtval;
  f->x[10] = 0xffffffffu;
  f->mepc = f->x[1];
}

static uint32_t pte(uint32_t pa, uint32_t flags) { return ((pa / PAGE) << 10) | flags; }
static uint32_t pa_of(const void *p) { return (uint32_t)(uintptr_t)p; }

static void map(uint32_t *table, uint32_t va, uint32_t pa, uint32_t flags) {
  root[va >> 22] = pte(pa_of(table), PTE_V);
  table[(va >> 12) & 0x3ffu] = pte(pa, flags);
}

static void sfence(uint32_t va) { __asm__ volatile("sfence.vma %0, zero" ::"r"(va) : "memory"); }
static void sfence_all(void) { __asm__ volatile("sfence.vma" ::: "memory"); }

static void report(const char *what, uint32_t v) {
  ls_puts("paging: ");
  ls_puts(what);
  ls_puts(" ");
  ls_puthex(v);
  ls_putc('\n');
}

static void report_fault(const char *what, uint32_t result) {
  ls_puts("paging: ");
  ls_puts(what);
  if (result != 0xffffffffu) {
    ls_puts(" did not fault\n");
    return;
  }
  ls_puts(": cause ");
  ls_putdec(fault_cause);
  ls_puts(" stval ");
  ls_puthex(fault_tval);
  ls_putc('\n');
  fault_cause = fault_tval = 0;
}

static uint32_t *test_leaf(uint32_t va) { return &test_table[(va >> 12) & 0x3ffu]; }

static void s_main(void) {
  ls_csr_write(satp, 0x80000000u | (pa_of(root) / PAGE));
  sfence_all();
  ls_puts("paging: Sv32 on\n");

  /* A superpage alias of RAM reads and writes the kernel's own data. */
  static volatile uint32_t kvar = 0x600dcafe;
  const uint32_t alias = VA_SUPER + (pa_of((const void *)&kvar) - LS_RAM_BASE);
  report("superpage read", probe_load(alias));
  probe_store(alias, 0x12345678);
  report("superpage write, read directly", kvar);
  report_fault("misaligned superpage load", probe_load(VA_BAD_SUPER + 0x10));

  /* Faults on each access type, with stval = the virtual address. */
  report_fault("load from an unmapped page", probe_load(VA_TEST + 0x3f000 + 8));
  report_fault("store to an unmapped page", probe_store(VA_TEST + 0x3f000 + 12, 1));
  report_fault("fetch from an unmapped page", probe_exec(VA_TEST + 0x3f000 + 16));

  /* A and D: set by the walker on the first load and the first store. */
  *test_leaf(VA_TEST) = pte(pa_of(pool[0]), PTE_V | PTE_R | PTE_W);
  sfence(VA_TEST);
  report("pte before access", *test_leaf(VA_TEST) & 0xffu);
  probe_load(VA_TEST);
  report("pte after a load", *test_leaf(VA_TEST) & 0xffu);
  probe_store(VA_TEST + 4, 0xabcdef01);
  report("pte after a store", *test_leaf(VA_TEST) & 0xffu);
  report("stored through the page", ((volatile uint32_t *)pool[0])[1]);

  /* R, W, X and MXR. */
  *test_leaf(VA_TEST + PAGE) = pte(pa_of(pool[1]), PTE_V | PTE_R | PTE_A);
  *test_leaf(VA_TEST + 2 * PAGE) = pte(pa_of(pool[2]), PTE_V | PTE_X | PTE_A);
  sfence_all();
  report_fault("store to a read-only page", probe_store(VA_TEST + PAGE, 1));
  report_fault("load from an execute-only page", probe_load(VA_TEST + 2 * PAGE));
  ls_csr_set(sstatus, SSTATUS_MXR);
  report("load from an execute-only page with MXR", probe_load(VA_TEST + 2 * PAGE));
  ls_csr_clear(sstatus, SSTATUS_MXR);
  report_fault("fetch from a read-only page", probe_exec(VA_TEST + PAGE));

  /* SUM: user pages from S-mode. */
  *test_leaf(VA_TEST + 3 * PAGE) = pte(pa_of(pool[3]), PTE_V | PTE_R | PTE_W | PTE_X | PTE_U);
  sfence(VA_TEST + 3 * PAGE);
  ((volatile uint32_t *)pool[3])[0] = 0x8067; /* c.jr ra; c.nop: returns at once if ever run */
  report_fault("load from a user page without SUM", probe_load(VA_TEST + 3 * PAGE));
  ls_csr_set(sstatus, SSTATUS_SUM);
  /* The fetch first: QEMU 7.2 lets a fetch reuse the translation a SUM load cached, which the
     privileged spec does not allow (S-mode never executes user pages). */
  report_fault("fetch from a user page with SUM", probe_exec(VA_TEST + 3 * PAGE));
  report("load from a user page with SUM", probe_load(VA_TEST + 3 * PAGE));
  ls_csr_clear(sstatus, SSTATUS_SUM);

  /* Remapping: a changed leaf and sfence.vma by address; then with ASIDs, sfence.vma by ASID. */
  ((volatile uint32_t *)pool[4])[0] = 0x44444444;
  ((volatile uint32_t *)pool[5])[0] = 0x55555555;
  *test_leaf(VA_TEST + 4 * PAGE) = pte(pa_of(pool[4]), PTE_V | PTE_R | PTE_W);
  sfence(VA_TEST + 4 * PAGE);
  report("before remapping", probe_load(VA_TEST + 4 * PAGE));
  *test_leaf(VA_TEST + 4 * PAGE) = pte(pa_of(pool[5]), PTE_V | PTE_R | PTE_W);
  sfence(VA_TEST + 4 * PAGE);
  report("after remapping and sfence.vma va", probe_load(VA_TEST + 4 * PAGE));
  ls_csr_write(satp, 0x80000000u | (7u << 22) | (pa_of(root) / PAGE));
  *test_leaf(VA_TEST + 4 * PAGE) = pte(pa_of(pool[4]), PTE_V | PTE_R | PTE_W);
  __asm__ volatile("sfence.vma zero, %0" ::"r"(7u) : "memory");
  report("after remapping and sfence.vma asid", probe_load(VA_TEST + 4 * PAGE));
  report("satp asid", (ls_csr_read(satp) >> 22) & 0x1ffu);

  /* Code written through one alias, run through another, then patched. */
  map(test_table, VA_ALIAS_X, pa_of(pool[2]), PTE_V | PTE_R | PTE_X);
  map(test_table, VA_ALIAS_W, pa_of(pool[2]), PTE_V | PTE_R | PTE_W);
  sfence_all();
  volatile uint32_t *w = (volatile uint32_t *)VA_ALIAS_W;
  w[0] = 0x00100513; /* li a0, 1 */
  w[1] = 0x00008067; /* ret */
  __asm__ volatile("fence.i" ::: "memory");
  report("code run through the other alias", probe_exec(VA_ALIAS_X));
  w[0] = 0x00200513; /* li a0, 2 */
  __asm__ volatile("fence.i" ::: "memory");
  report("patched through the write alias", probe_exec(VA_ALIAS_X));

  /* A 32-bit instruction in the last halfword of a page: the next page unmapped, then mapped to a
     physical page that is not the next one. */
  volatile uint16_t *tail = (volatile uint16_t *)(pool[1] + PAGE - 2);
  volatile uint16_t *head = (volatile uint16_t *)pool[0];
  map(test_table, VA_CROSS, pa_of(pool[1]), PTE_V | PTE_R | PTE_W | PTE_X);
  sfence_all();
  *tail = 0x0513;  /* li a0, 7 = 0x00700513: low half here ... */
  head[0] = 0x0070; /* ... high half on the next virtual page */
  head[1] = 0x8082; /* c.ret */
  __asm__ volatile("fence.i" ::: "memory");
  report_fault("straddling fetch, next page unmapped", probe_exec(VA_CROSS + PAGE - 2));
  map(test_table, VA_CROSS + PAGE, pa_of(pool[0]), PTE_V | PTE_R | PTE_X);
  sfence_all();
  report("straddling fetch across scattered pages", probe_exec(VA_CROSS + PAGE - 2));

  /* A U-mode process: its own pages, system calls, and a fault in it handled by S. */
  const uint32_t result = run_user(pa_of(user_main), pa_of(user_stack) + PAGE);
  report("user exit value", result);
  report("user fault cause", fault_cause);

  /* The timer: M arms mtimecmp for S, forwards the M timer interrupt as STIP, S takes it. */
  ls_csr_set(sie, MIP_STIP);
  sbi(SBI_SET_TIMER, 200);
  ls_csr_set(sstatus, SSTATUS_SIE);
  for (uint32_t i = 0; i < 50000000u && ticks == 0; i++) __asm__ volatile("nop");
  ls_csr_clear(sstatus, SSTATUS_SIE);
  report("timer interrupts taken in S", ticks);
  report("their scause", tick_cause);

  ls_puts("paging: done\n");
  sbi(SBI_SHUTDOWN, 0);
}

/* M-mode: the SBI calls and the timer forwarding. */
void ls_trap_handler(ls_trap_frame *f) {
  if (f->mcause == (LS_MCAUSE_INTERRUPT | LS_IRQ_M_TIMER)) {
    ls_timer_disable();
    ls_csr_set(mip, MIP_STIP);
    return;
  }
  if (f->mcause == 9u) { /* ecall from S */
    f->mepc += 4;
    if (f->x[17] == SBI_SET_TIMER) {
      ls_csr_clear(mip, MIP_STIP);
      ls_set_mtimecmp(ls_mtime() + f->x[10]);
      ls_timer_enable();
      return;
    }
    if (f->x[17] == SBI_SHUTDOWN) ls_exit((int)f->x[10]);
  }
  ls_report_trap(f);
}

int main(void) {
  ls_puts("paging: starting in M-mode\n");
  ls_csr_write(pmpaddr0, 0xffffffffu);
  ls_csr_write(pmpcfg0, 0x1fu);

  /* The kernel: its image with 4 KiB pages at its link address, S-only, except the user pages. */
  for (uint32_t va = LS_RAM_BASE; va < pa_of(__stack_top); va += PAGE) {
    const int user_page = (va >= pa_of(user_text_start) && va < pa_of(user_text_end)) ||
                          (va >= pa_of(user_data_start) && va < pa_of(user_data_end)) || va == pa_of(user_stack);
    map(kernel_table, va, va, PTE_V | PTE_R | PTE_W | PTE_X | (user_page ? PTE_U : 0));
  }
  map(uart_table, LS_UART_BASE, LS_UART_BASE, PTE_V | PTE_R | PTE_W);
  map(test_dev_table, LS_TEST_BASE, LS_TEST_BASE, PTE_V | PTE_R | PTE_W);
  root[VA_SUPER >> 22] = pte(LS_RAM_BASE, PTE_V | PTE_R | PTE_W);
  root[VA_BAD_SUPER >> 22] = pte(LS_RAM_BASE + PAGE, PTE_V | PTE_R | PTE_W);
  root[VA_TEST >> 22] = pte(pa_of(test_table), PTE_V);

  /* Delegate U's ecalls, illegal instructions and page faults, and the S timer, to S. */
  ls_csr_write(medeleg, (1u << 2) | (1u << 8) | (1u << 12) | (1u << 13) | (1u << 15));
  ls_csr_write(mideleg, MIP_STIP);
  ls_csr_write(stvec, pa_of(s_trap_entry));
  ls_csr_write(sscratch, 0);

  uint32_t msp;
  __asm__ volatile("mv %0, sp" : "=r"(msp));
  ls_csr_write(mscratch, msp);
  ls_csr_clear(mstatus, LS_MSTATUS_MPP);
  ls_csr_set(mstatus, 1u << 11); /* MPP = S */
  ls_csr_write(mepc, pa_of(s_main));
  __asm__ volatile("mret");
  __builtin_unreachable();
}
