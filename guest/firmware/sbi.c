/* lockstep's SBI implementation for one hart: boot hand-off to the kernel, the SBI 2.0 calls (base,
   TIME, IPI, RFENCE, HSM, SRST, DBCN and the legacy ones) and the traps M-mode keeps. Must never
   wedge or crash on a guest's arguments: bad ones get an SBI error, bad addresses a guarded access. */
#include "firmware.h"

#define SBI_SUCCESS                0
#define SBI_ERR_FAILED            -1
#define SBI_ERR_NOT_SUPPORTED     -2
#define SBI_ERR_INVALID_PARAM     -3
#define SBI_ERR_DENIED            -4
#define SBI_ERR_INVALID_ADDRESS   -5
#define SBI_ERR_ALREADY_AVAILABLE -6

#define EXT_BASE   0x10u
#define EXT_TIME   0x54494D45u
#define EXT_IPI    0x735049u
#define EXT_RFENCE 0x52464E43u
#define EXT_HSM    0x48534Du
#define EXT_SRST   0x53525354u
#define EXT_DBCN   0x4442434Eu
#define EXT_LEGACY_LAST 0x08u

#define SBI_SPEC_VERSION  ((2u << 24) | 0u) /* 2.0 */
/* Not an ID from the SBI specification's registry (that lists the projects that asked for one);
   high enough not to collide with it. Reads as "LS". */
#define SBI_IMPL_ID       0x4C53u
#define SBI_IMPL_VERSION  1u

#define FW_DYNAMIC_MAGIC  0x4942534fu
#define FW_DYNAMIC_OPTION_NO_BANNER 1u

uint32_t fw_ram_end;
/* The hart has Sstc and STCE is on: STIP then follows stimecmp, which set_timer writes directly. */
static bool have_sstc;
/* HSM: hart 0 runs from the hand-off on; hart_stop is the only way it stops. */
static const uint32_t hart0_id = 0;

/* ---- console ---------------------------------------------------------------------------------- */

#define UART_THR 0
#define UART_RBR 0
#define UART_LSR 5
#define LSR_DR   0x01
#define LSR_THRE 0x20

void console_putc(char c) {
  /* Unbounded, as in any 16550 driver: QEMU holds THRE low while its host side is backed up, and
     a byte written before THRE rises is lost. */
  while (!(mmio_read8(UART_BASE + UART_LSR) & LSR_THRE)) {
  }
  mmio_write8(UART_BASE + UART_THR, (uint8_t)c);
}

void console_puts(const char *s) {
  while (*s) console_putc(*s++);
}

void console_puthex(uint32_t v) {
  console_puts("0x");
  for (int i = 28; i >= 0; i -= 4) console_putc("0123456789abcdef"[(v >> i) & 15]);
}

int console_getc(void) {
  if (!(mmio_read8(UART_BASE + UART_LSR) & LSR_DR)) return -1;
  return mmio_read8(UART_BASE + UART_RBR);
}

/* ---- end of the machine ----------------------------------------------------------------------- */

void fw_finish(uint32_t code) {
  mmio_write32(FINISHER_BASE, code);
  /* A finisher that ignores the write (none should) leaves the hart parked, not running on. */
  csr_write(mie, 0);
  for (;;) __asm__ volatile("wfi");
}

void fw_fatal(const char *what, uint32_t a, uint32_t b) {
  console_puts("lockstep-sbi: fatal: ");
  console_puts(what);
  console_putc(' ');
  console_puthex(a);
  console_putc(' ');
  console_puthex(b);
  console_putc('\n');
  fw_finish(FINISHER_FAIL | (1u << 16));
}

/* ---- timer ------------------------------------------------------------------------------------ */

static uint64_t read_mtime(void) {
  uint32_t hi, lo;
  do {
    hi = mmio_read32(CLINT_MTIME + 4);
    lo = mmio_read32(CLINT_MTIME);
  } while (hi != mmio_read32(CLINT_MTIME + 4));
  return ((uint64_t)hi << 32) | lo;
}

/* The kernel's timer: M owns mtimecmp and turns its interrupt into STIP (see fw_trap). Writing the
   high half first to all-ones keeps the comparator from matching a half-written value. */
static void set_timer(uint64_t when) {
  if (have_sstc) {
    __asm__ volatile("csrw 0x15d, %0" ::"r"(0xffffffffu)); /* stimecmph */
    __asm__ volatile("csrw 0x14d, %0" ::"r"((uint32_t)when)); /* stimecmp */
    __asm__ volatile("csrw 0x15d, %0" ::"r"((uint32_t)(when >> 32)));
    return;
  }
  mmio_write32(CLINT_MTIMECMP + 4, 0xffffffffu);
  mmio_write32(CLINT_MTIMECMP, (uint32_t)when);
  mmio_write32(CLINT_MTIMECMP + 4, (uint32_t)(when >> 32));
  csr_clear(mip, MIP_STIP);
  csr_set(mie, MIP_MTIP);
}

/* ---- hart masks ------------------------------------------------------------------------------- */

/* SBI 0.2+ hart mask: whether hart 0 is named, or -1 when the mask names a hart that does not exist. */
static int hart0_in_mask(uint32_t mask, uint32_t base) {
  if (base == 0xffffffffu) return 1;
  if (mask == 0) return 0;
  if (base != 0 || mask != 1) return -1;
  return 1;
}

/* Legacy calls pass a pointer (an S-mode virtual address) to the mask; 0 means every hart. PMP
   keeps an S-mode read out of the firmware, but QEMU 7.2 skips PMP for MPRV reads of a page M-mode
   has touched, so an untranslated pointer into the firmware is refused here, the same on both. */
static int legacy_hart0_in_mask(struct frame *f, uint32_t ptr) {
  if (ptr == 0) return 1;
  if ((csr_read(satp) >> 31) == 0 && ptr - RAM_BASE < FW_RESERVED) return -1;
  uint32_t ms = csr_read(mstatus);
  csr_write(mstatus, (ms & ~MSTATUS_MPP) | (f->mstatus & MSTATUS_MPP));
  fw_guard_faulted = 0;
  uint32_t mask = fw_guard_lw_s(ptr);
  if (fw_guard_faulted) return -1;
  return (mask & 1u) != 0;
}

static void sfence_range(uint32_t start, uint32_t size, uint32_t asid, bool with_asid) {
  /* Whole flush for "everything" (size 0 or -1), an overflowing range or more than 64 pages. */
  if (size == 0 || size == 0xffffffffu || start + size < start || size > 64u * 4096u) {
    if (with_asid) __asm__ volatile("sfence.vma zero, %0" ::"r"(asid) : "memory");
    else __asm__ volatile("sfence.vma" ::: "memory");
    return;
  }
  for (uint32_t a = start & ~0xfffu; a < start + size; a += 4096) {
    if (with_asid) __asm__ volatile("sfence.vma %0, %1" ::"r"(a), "r"(asid) : "memory");
    else __asm__ volatile("sfence.vma %0" ::"r"(a) : "memory");
  }
}

/* ---- guest memory (DBCN buffers, resume addresses) --------------------------------------------- */

/* S-mode gives physical addresses; only RAM above the firmware is its to name. */
static bool s_range_ok(uint32_t lo, uint32_t hi, uint32_t len) {
  if (hi != 0) return false;
  if (lo < RAM_BASE + FW_RESERVED || lo >= fw_ram_end) return false;
  return len <= fw_ram_end - lo;
}

/* ---- the calls -------------------------------------------------------------------------------- */

struct ret {
  int32_t error;
  uint32_t value;
};

static bool ext_present(uint32_t ext) {
  switch (ext) {
    case EXT_BASE: case EXT_TIME: case EXT_IPI: case EXT_RFENCE: case EXT_HSM: case EXT_SRST:
    case EXT_DBCN:
      return true;
    default:
      return ext <= EXT_LEGACY_LAST;
  }
}

static struct ret base_call(uint32_t fid, const uint32_t *a) {
  switch (fid) {
    case 0: return (struct ret){SBI_SUCCESS, SBI_SPEC_VERSION};
    case 1: return (struct ret){SBI_SUCCESS, SBI_IMPL_ID};
    case 2: return (struct ret){SBI_SUCCESS, SBI_IMPL_VERSION};
    case 3: return (struct ret){SBI_SUCCESS, ext_present(a[0]) ? 1u : 0u};
    case 4: case 5: case 6: {
      fw_guard_faulted = 0;
      uint32_t v = fw_guard_read_id(fid - 4);
      return (struct ret){SBI_SUCCESS, fw_guard_faulted ? 0u : v};
    }
    default: return (struct ret){SBI_ERR_NOT_SUPPORTED, 0};
  }
}

static struct ret rfence_call(uint32_t fid, const uint32_t *a) {
  int in = hart0_in_mask(a[0], a[1]);
  if (fid > 2) return (struct ret){SBI_ERR_NOT_SUPPORTED, 0}; /* hfence: no H extension */
  if (in < 0) return (struct ret){SBI_ERR_INVALID_PARAM, 0};
  if (in == 0) return (struct ret){SBI_SUCCESS, 0};
  if (fid == 0) __asm__ volatile("fence.i" ::: "memory");
  else sfence_range(a[2], a[3], a[4], fid == 2);
  return (struct ret){SBI_SUCCESS, 0};
}

static struct ret hsm_call(struct frame *f, uint32_t fid, const uint32_t *a) {
  switch (fid) {
    case 0: /* hart_start: the only hart is running */
      return (struct ret){a[0] == hart0_id ? SBI_ERR_ALREADY_AVAILABLE : SBI_ERR_INVALID_PARAM, 0};
    case 1: /* hart_stop: nothing can start it again, so it parks for good */
      csr_write(mie, 0);
      for (;;) __asm__ volatile("wfi");
    case 2: /* hart_get_status */
      if (a[0] != hart0_id) return (struct ret){SBI_ERR_INVALID_PARAM, 0};
      return (struct ret){SBI_SUCCESS, 0 /* STARTED */};
    case 3: { /* hart_suspend */
      const uint32_t type = a[0];
      if (type == 0) { /* default retentive: back here once an enabled interrupt is pending */
        __asm__ volatile("wfi");
        return (struct ret){SBI_SUCCESS, 0};
      }
      if (type == 0x80000000u) { /* default non-retentive: resume at resume_addr, MMU off */
        if (!s_range_ok(a[1], 0, 4) || (a[1] & 1u)) return (struct ret){SBI_ERR_INVALID_ADDRESS, 0};
        __asm__ volatile("wfi");
        csr_write(satp, 0);
        __asm__ volatile("sfence.vma" ::: "memory");
        f->mstatus = (f->mstatus & ~(MSTATUS_MPP | MSTATUS_SIE)) | (PRV_S << MPP_SHIFT);
        f->mepc = a[1] - 4; /* the caller adds 4 for the ecall */
        /* At resume a0 = hart id (0, which is also SBI_SUCCESS) and a1 = opaque. */
        return (struct ret){SBI_SUCCESS, a[2]};
      }
      if ((type >= 0x10000000u && type < 0x80000000u) || type >= 0x90000000u)
        return (struct ret){SBI_ERR_NOT_SUPPORTED, 0};
      return (struct ret){SBI_ERR_INVALID_PARAM, 0};
    }
    default: return (struct ret){SBI_ERR_NOT_SUPPORTED, 0};
  }
}

static struct ret srst_call(uint32_t fid, const uint32_t *a) {
  if (fid != 0) return (struct ret){SBI_ERR_NOT_SUPPORTED, 0};
  const uint32_t type = a[0], reason = a[1];
  if (reason > 1 && reason < 0xE0000000u) return (struct ret){SBI_ERR_INVALID_PARAM, 0};
  switch (type) {
    case 0: /* shutdown: a system-failure reason becomes exit status 1 */
      fw_finish(reason == 0 ? FINISHER_PASS : (FINISHER_FAIL | (1u << 16)));
    case 1: case 2: /* cold and warm reboot */
      fw_finish(FINISHER_RESET);
    default:
      if (type >= 0xF0000000u) return (struct ret){SBI_ERR_NOT_SUPPORTED, 0};
      return (struct ret){SBI_ERR_INVALID_PARAM, 0};
  }
}

static struct ret dbcn_call(uint32_t fid, const uint32_t *a) {
  const uint32_t n = a[0], lo = a[1], hi = a[2];
  switch (fid) {
    case 0: { /* write: all of it (the UART never refuses) */
      if (!s_range_ok(lo, hi, n)) return (struct ret){SBI_ERR_INVALID_PARAM, 0};
      fw_guard_faulted = 0;
      uint32_t i = 0;
      for (; i < n; i++) {
        const uint32_t c = fw_guard_lbu(lo + i);
        if (fw_guard_faulted) break;
        console_putc((char)c);
      }
      return (struct ret){i == n ? SBI_SUCCESS : SBI_ERR_FAILED, i};
    }
    case 1: { /* read: what the UART holds now, without waiting */
      if (!s_range_ok(lo, hi, n)) return (struct ret){SBI_ERR_INVALID_PARAM, 0};
      fw_guard_faulted = 0;
      uint32_t i = 0;
      for (; i < n; i++) {
        const int c = console_getc();
        if (c < 0) break;
        fw_guard_sb(lo + i, (uint32_t)c);
        if (fw_guard_faulted) return (struct ret){SBI_ERR_FAILED, i};
      }
      return (struct ret){SBI_SUCCESS, i};
    }
    case 2: /* write_byte */
      console_putc((char)(n & 0xff));
      return (struct ret){SBI_SUCCESS, 0};
    default:
      return (struct ret){SBI_ERR_NOT_SUPPORTED, 0};
  }
}

/* The SBI 0.1 calls: one return value, in a0. */
static int32_t legacy_call(struct frame *f, uint32_t ext, const uint32_t *a) {
  int in;
  switch (ext) {
    case 0: set_timer(((uint64_t)a[1] << 32) | a[0]); return 0;
    case 1: console_putc((char)a[0]); return 0;
    case 2: return console_getc();
    case 3: csr_clear(mip, MIP_SSIP); return 0;
    case 4:
      if ((in = legacy_hart0_in_mask(f, a[0])) < 0) return SBI_ERR_INVALID_ADDRESS;
      if (in) csr_set(mip, MIP_SSIP);
      return 0;
    case 5: case 6: case 7:
      if ((in = legacy_hart0_in_mask(f, a[0])) < 0) return SBI_ERR_INVALID_ADDRESS;
      if (!in) return 0;
      if (ext == 5) __asm__ volatile("fence.i" ::: "memory");
      else sfence_range(a[1], a[2], a[3], ext == 7);
      return 0;
    default: /* 8: shutdown */
      fw_finish(FINISHER_PASS);
  }
}

static void ecall(struct frame *f) {
  const uint32_t ext = f->x[17], fid = f->x[16];
  const uint32_t *a = &f->x[10];
  struct ret r;
  if (ext <= EXT_LEGACY_LAST) {
    f->x[10] = (uint32_t)legacy_call(f, ext, a);
    f->mepc += 4;
    return;
  }
  switch (ext) {
    case EXT_BASE: r = base_call(fid, a); break;
    case EXT_TIME:
      if (fid == 0) {
        set_timer(((uint64_t)a[1] << 32) | a[0]);
        r = (struct ret){SBI_SUCCESS, 0};
      } else {
        r = (struct ret){SBI_ERR_NOT_SUPPORTED, 0};
      }
      break;
    case EXT_IPI:
      if (fid == 0) {
        const int in = hart0_in_mask(a[0], a[1]);
        if (in > 0) csr_set(mip, MIP_SSIP);
        r = (struct ret){in < 0 ? SBI_ERR_INVALID_PARAM : SBI_SUCCESS, 0};
      } else {
        r = (struct ret){SBI_ERR_NOT_SUPPORTED, 0};
      }
      break;
    case EXT_RFENCE: r = rfence_call(fid, a); break;
    case EXT_HSM: r = hsm_call(f, fid, a); break;
    case EXT_SRST: r = srst_call(fid, a); break;
    case EXT_DBCN: r = dbcn_call(fid, a); break;
    default: r = (struct ret){SBI_ERR_NOT_SUPPORTED, 0}; break;
  }
  f->x[10] = (uint32_t)r.error;
  f->x[11] = r.value;
  f->mepc += 4;
}

/* ---- traps ------------------------------------------------------------------------------------ */

/* Hands a trap M-mode does not handle to S-mode exactly as if it had been delegated. */
static void redirect_to_s(struct frame *f) {
  const uint32_t from = (f->mstatus & MSTATUS_MPP) >> MPP_SHIFT;
  csr_write(sepc, f->mepc);
  csr_write(scause, f->mcause);
  csr_write(stval, f->mtval);
  uint32_t st = f->mstatus & ~(MSTATUS_SPP | MSTATUS_SPIE | MSTATUS_SIE | MSTATUS_MPP);
  if (from == PRV_S) st |= MSTATUS_SPP;
  if (f->mstatus & MSTATUS_SIE) st |= MSTATUS_SPIE;
  st |= PRV_S << MPP_SHIFT;
  f->mstatus = st;
  f->mepc = csr_read(stvec) & ~3u; /* vectored mode applies to interrupts only */
}

/* rdtime / rdtimeh on a hart whose `time` CSR traps: answered from the CLINT's mtime. */
static bool emulate_time(struct frame *f) {
  uint32_t insn = f->mtval;
  if (insn == 0) { /* mtval need not hold the instruction: fetch it as the trapping mode would */
    uint32_t ms = csr_read(mstatus);
    csr_write(mstatus, (ms & ~MSTATUS_MPP) | (f->mstatus & MSTATUS_MPP));
    fw_guard_faulted = 0;
    insn = fw_guard_lhu_x(f->mepc);
    if (!fw_guard_faulted && (insn & 3u) == 3u) insn |= fw_guard_lhu_x(f->mepc + 2) << 16;
    if (fw_guard_faulted) return false;
  }
  /* csrrs rd, time|timeh, x0 */
  const uint32_t csr = insn >> 20;
  if ((insn & 0x000ff07fu) != 0x00002073u || (csr != 0xc01u && csr != 0xc81u)) return false;
  const uint32_t from = (f->mstatus & MSTATUS_MPP) >> MPP_SHIFT;
  if (!(csr_read(mcounteren) & 2u)) return false;
  if (from == PRV_U && !(csr_read(scounteren) & 2u)) return false;
  const uint64_t t = read_mtime();
  const uint32_t rd = (insn >> 7) & 31u;
  if (rd != 0) f->x[rd] = csr == 0xc01u ? (uint32_t)t : (uint32_t)(t >> 32);
  f->mepc += 4;
  return true;
}

extern char fw_guard_begin[], fw_guard_end[];
volatile uint32_t fw_guard_faulted;

void fw_trap(struct frame *f) {
  const uint32_t cause = f->mcause;
  if (cause & CAUSE_INTERRUPT) {
    switch (cause & 0x1fu) {
      case IRQ_MTI: /* the kernel's timer is due: pass it on as STIP until set_timer re-arms */
        csr_clear(mie, MIP_MTIP);
        csr_set(mip, MIP_STIP);
        return;
      case IRQ_MSI:
        mmio_write32(CLINT_MSIP, 0);
        csr_set(mip, MIP_SSIP);
        return;
      default: /* M never enables anything else; a spurious one is ignored by turning it off */
        csr_clear(mie, 1u << (cause & 0x1fu));
        return;
    }
  }
  if (((f->mstatus & MSTATUS_MPP) >> MPP_SHIFT) == PRV_M) {
    if (f->mepc >= (uint32_t)fw_guard_begin && f->mepc < (uint32_t)fw_guard_end) {
      fw_guard_faulted = 1;
      f->x[10] = 0;
      f->mepc += 4;
      return;
    }
    fw_fatal("trap in M-mode, mcause/mepc", cause, f->mepc);
  }
  switch (cause) {
    case CAUSE_SUPERVISOR_ECALL:
      ecall(f);
      return;
    case CAUSE_ILLEGAL:
      if (emulate_time(f)) return;
      redirect_to_s(f);
      return;
    default:
      redirect_to_s(f);
      return;
  }
}

/* ---- boot ------------------------------------------------------------------------------------- */

/* What the kernel may handle itself (as OpenSBI delegates, plus misaligned accesses and access
   faults: the hart performs misaligned loads and stores itself, so only atomics ever raise them).
   Illegal instructions stay here so that `time` can be emulated on a hart that traps it. */
#define MEDELEG ((1u << CAUSE_MISALIGNED_FETCH) | (1u << CAUSE_FETCH_ACCESS) | (1u << CAUSE_BREAKPOINT) | \
                 (1u << CAUSE_MISALIGNED_LOAD) | (1u << CAUSE_LOAD_ACCESS) |                       \
                 (1u << CAUSE_MISALIGNED_STORE) | (1u << CAUSE_STORE_ACCESS) |                      \
                 (1u << CAUSE_USER_ECALL) | (1u << CAUSE_FETCH_PAGE_FAULT) |                        \
                 (1u << CAUSE_LOAD_PAGE_FAULT) | (1u << CAUSE_STORE_PAGE_FAULT))
#define MIDELEG (MIP_SSIP | MIP_STIP | MIP_SEIP)

void fw_boot(uint32_t hartid, uint32_t dtb, uint32_t dyn) {
  uint32_t next_addr = DEFAULT_NEXT_ADDR, next_mode = PRV_S, options = 0;
  if (dyn != 0) {
    fw_guard_faulted = 0;
    const uint32_t magic = fw_guard_lw(dyn);
    if (!fw_guard_faulted && magic == FW_DYNAMIC_MAGIC) {
      next_addr = fw_guard_lw(dyn + 8);
      next_mode = fw_guard_lw(dyn + 12);
      options = fw_guard_lw(dyn + 16);
      if (fw_guard_faulted) fw_fatal("unreadable fw_dynamic_info at", dyn, 0);
    }
  }
  if (next_mode != PRV_S && next_mode != PRV_U) fw_fatal("fw_dynamic_info asks for next_mode", next_mode, 0);

  struct boot_info info = {0, 0, 0};
  const char *dt_problem = fdt_prepare(dtb, &info);
  if (dt_problem != 0) fw_fatal(dt_problem, dtb, 0);
  fw_ram_end = info.ram_end;

  /* Everything but the firmware's own 64 KiB belongs to S and U: entry 0 (no permissions, not
     locked, so M is unaffected) shadows entry 1 (all of memory, RWX). */
  const uint32_t pmp0 = (RAM_BASE >> 2) | ((FW_RESERVED >> 3) - 1u);
  fw_guard_faulted = 0;
  fw_guard_set_pmp(pmp0, 0xffffffffu, 0x18u | (0x1fu << 8));
  const bool have_pmp = !fw_guard_faulted;
  /* A hart with Sstc (QEMU's default CPU advertises it) needs STCE for the kernel to use it; and
     with STCE on, STIP follows stimecmp, so set_timer must write that instead of mtimecmp. */
  fw_guard_faulted = 0;
  (void)fw_guard_read_stimecmp();
  have_sstc = !fw_guard_faulted;
  if (have_sstc) fw_guard_set_menvcfgh(1u << 31);

  mmio_write32(CLINT_MTIMECMP + 4, 0xffffffffu);
  mmio_write32(CLINT_MTIMECMP, 0xffffffffu);
  csr_write(mideleg, MIDELEG);
  csr_write(medeleg, MEDELEG);
  csr_write(mcounteren, 7u); /* cycle, time, instret readable below M */
  csr_write(mie, 0);
  csr_clear(mip, MIP_SSIP | MIP_STIP);
  csr_write(satp, 0);
  uint32_t ms = csr_read(mstatus);
  ms &= ~(MSTATUS_MPP | MSTATUS_MPIE | MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_MPRV);
  ms |= next_mode << MPP_SHIFT;
  csr_write(mstatus, ms);
  csr_write(mepc, next_addr);

  if (!(options & FW_DYNAMIC_OPTION_NO_BANNER)) {
    console_puts("lockstep-sbi: SBI 2.0, hart ");
    console_putc((char)('0' + (hartid & 7)));
    console_puts(", next ");
    console_puthex(next_addr);
    console_puts(next_mode == PRV_S ? " (S-mode), device tree " : " (U-mode), device tree ");
    console_puthex(dtb);
    console_puts(have_pmp ? "\n" : ", no PMP\n");
  }
}
