/* SBI test payload: an S-mode program that calls every function the firmware offers, provokes the
   traps it forwards, and prints only deterministic facts (error codes, counts), so its output can be
   compared byte for byte between QEMU and lockstep. Ends with an SBI SRST shutdown. */
#include <stdarg.h>
#include <stdint.h>

#define EXT_BASE   0x10u
#define EXT_TIME   0x54494D45u
#define EXT_IPI    0x735049u
#define EXT_RFENCE 0x52464E43u
#define EXT_HSM    0x48534Du
#define EXT_SRST   0x53525354u
#define EXT_DBCN   0x4442434Eu

#define SIE_SSIE (1u << 1)
#define SIE_STIE (1u << 5)
#define SSTATUS_SIE (1u << 1)

struct sbiret {
  int32_t error;
  uint32_t value;
};

static struct sbiret sbi(uint32_t ext, uint32_t fid, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                         uint32_t a4) {
  register uint32_t r0 __asm__("a0") = a0, r1 __asm__("a1") = a1, r2 __asm__("a2") = a2;
  register uint32_t r3 __asm__("a3") = a3, r4 __asm__("a4") = a4, r6 __asm__("a6") = fid,
                    r7 __asm__("a7") = ext;
  __asm__ volatile("ecall" : "+r"(r0), "+r"(r1) : "r"(r2), "r"(r3), "r"(r4), "r"(r6), "r"(r7) : "memory");
  return (struct sbiret){(int32_t)r0, r1};
}

static int32_t legacy(uint32_t ext, uint32_t a0, uint32_t a1) {
  register uint32_t r0 __asm__("a0") = a0, r1 __asm__("a1") = a1, r7 __asm__("a7") = ext;
  __asm__ volatile("ecall" : "+r"(r0), "+r"(r1) : "r"(r7) : "memory");
  return (int32_t)r0;
}

#define csr_read(csr) ({ uint32_t v_; __asm__ volatile("csrr %0, " #csr : "=r"(v_)); v_; })
#define csr_set(csr, v) __asm__ volatile("csrs " #csr ", %0" ::"rK"(v) : "memory")
#define csr_clear(csr, v) __asm__ volatile("csrc " #csr ", %0" ::"rK"(v) : "memory")

static uint64_t rdtime(void) {
  uint32_t hi, lo;
  do {
    hi = csr_read(timeh);
    lo = csr_read(time);
  } while (hi != csr_read(timeh));
  return ((uint64_t)hi << 32) | lo;
}

/* ---- output through DBCN write (one call per line) --------------------------------------------- */

static char line[160];
static uint32_t len;

static void put(char c) {
  if (len < sizeof line) line[len++] = c;
}

static void put_num(uint32_t v, uint32_t base, int neg) {
  char buf[12];
  int n = 0;
  if (neg) put('-');
  do buf[n++] = "0123456789abcdef"[v % base]; while ((v /= base) != 0);
  if (base == 16) put('0'), put('x');
  while (n) put(buf[--n]);
}

static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  len = 0;
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      put(*fmt);
      continue;
    }
    switch (*++fmt) {
      case 'd': {
        const int32_t v = va_arg(ap, int32_t);
        put_num(v < 0 ? (uint32_t)-v : (uint32_t)v, 10, v < 0);
        break;
      }
      case 'u': put_num(va_arg(ap, uint32_t), 10, 0); break;
      case 'x': put_num(va_arg(ap, uint32_t), 16, 0); break;
      case 's':
        for (const char *s = va_arg(ap, const char *); *s; s++) put(*s);
        break;
      default: put(*fmt); break;
    }
  }
  va_end(ap);
  put('\n');
  const struct sbiret r = sbi(EXT_DBCN, 0, len, (uint32_t)(uintptr_t)line, 0, 0, 0);
  if (r.error != 0 || r.value != len) legacy(1, '?', 0);
}

/* ---- traps ------------------------------------------------------------------------------------- */

static volatile uint32_t ticks, ipis, last_cause, faults;
static volatile uint32_t rearm;

uint32_t s_trap(uint32_t cause, uint32_t epc, uint32_t tval) {
  (void)tval;
  if (cause & 0x80000000u) {
    switch (cause & 31u) {
      case 5:
        ticks++;
        if (rearm) {
          rearm--;
          sbi(EXT_TIME, 0, (uint32_t)(rdtime() + 1000), (uint32_t)((rdtime() + 1000) >> 32), 0, 0, 0);
        } else {
          sbi(EXT_TIME, 0, 0xffffffffu, 0xffffffffu, 0, 0, 0); /* far future: clears STIP */
        }
        break;
      case 1:
        ipis++;
        csr_clear(sip, 2u);
        break;
      default:
        say("unexpected interrupt %x", cause);
        break;
    }
    return epc;
  }
  last_cause = cause;
  faults++;
  return epc + 4; /* every instruction the tests fault on is 4 bytes long */
}

/* Waits (WFI) until *counter reaches target; bounded so a missing interrupt fails instead of hangs.
   The check and the WFI run with sstatus.SIE clear, so an interrupt between them is not lost: WFI
   still wakes on it, and it is taken once SIE is set again. */
static int wait_for(volatile uint32_t *counter, uint32_t target) {
  for (uint32_t i = 0; i < 1000000; i++) {
    csr_clear(sstatus, SSTATUS_SIE);
    if (*counter >= target) break;
    __asm__ volatile("wfi");
    csr_set(sstatus, SSTATUS_SIE);
  }
  csr_set(sstatus, SSTATUS_SIE);
  return *counter >= target;
}

static uint32_t load_word(uint32_t addr) {
  uint32_t v;
  __asm__ volatile(".option push\n.option norvc\nlw %0, 0(%1)\n.option pop" : "=r"(v) : "r"(addr) : "memory");
  return v;
}

static void store_word(uint32_t addr, uint32_t v) {
  __asm__ volatile(".option push\n.option norvc\nsw %0, 0(%1)\n.option pop" ::"r"(v), "r"(addr) : "memory");
}

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void s_resume(void);
void after_resume(uint32_t hartid, uint32_t opaque);

static uint32_t dtb_addr;

int main(uint32_t hartid, uint32_t dtb) {
  dtb_addr = dtb;
  legacy(1, 'S', 0);
  legacy(1, '\n', 0);
  say("boot: hart %u, satp %x", hartid, csr_read(satp));

  struct sbiret r = sbi(EXT_BASE, 0, 0, 0, 0, 0, 0);
  say("base: spec_version %d %x", r.error, r.value);
  r = sbi(EXT_BASE, 1, 0, 0, 0, 0, 0);
  say("base: impl_id %d %x", r.error, r.value);
  const uint32_t exts[] = {EXT_BASE, EXT_TIME, EXT_IPI, EXT_RFENCE, EXT_HSM, EXT_SRST, EXT_DBCN, 0, 1, 8,
                           0x504D55u /* PMU */, 0x12345678u};
  for (unsigned i = 0; i < sizeof exts / sizeof exts[0]; i++) {
    r = sbi(EXT_BASE, 3, exts[i], 0, 0, 0, 0);
    say("base: probe %x -> %d %u", exts[i], r.error, r.value);
  }
  for (uint32_t fid = 4; fid <= 6; fid++) say("base: machine id %u -> %d", fid, sbi(EXT_BASE, fid, 0, 0, 0, 0, 0).error);
  say("base: fid 99 -> %d", sbi(EXT_BASE, 99, 0, 0, 0, 0, 0).error);
  say("unknown extension -> %d", sbi(0x0A000000u, 0, 0, 0, 0, 0, 0).error);

  /* The firmware keeps its window away from the kernel: /memreserve/ in the DTB, PMP on access. */
  const uint8_t *fdt = (const uint8_t *)(uintptr_t)dtb;
  const uint8_t *rsv = fdt + be32(fdt + 16);
  say("dtb: first memreserve %x size %x", be32(rsv + 4), be32(rsv + 12));
  faults = 0;
  (void)load_word(0x80000000u);
  say("pmp: load from firmware -> cause %u (%u fault)", last_cause, faults);
  store_word(0x80000100u, 1);
  say("pmp: store to firmware -> cause %u (%u faults)", last_cause, faults);
  (void)csr_read(mhartid);
  say("illegal: csrr mhartid in S -> cause %u (%u faults)", last_cause, faults);

  const uint64_t t0 = rdtime(), t1 = rdtime();
  say("time: readable in S, %s", t1 >= t0 ? "monotonic" : "NOT monotonic");

  csr_set(sie, SIE_STIE | SIE_SSIE);
  csr_set(sstatus, SSTATUS_SIE);
  rearm = 2;
  r = sbi(EXT_TIME, 0, (uint32_t)(rdtime() + 1000), (uint32_t)((rdtime() + 1000) >> 32), 0, 0, 0);
  say("time: set_timer -> %d; three ticks %s", r.error, wait_for(&ticks, 3) ? "arrived" : "MISSING");
  legacy(0, (uint32_t)(rdtime() + 1000), (uint32_t)((rdtime() + 1000) >> 32));
  say("time: legacy set_timer, tick %s", wait_for(&ticks, 4) ? "arrived" : "MISSING");
  say("time: fid 1 -> %d", sbi(EXT_TIME, 1, 0, 0, 0, 0, 0).error);

  r = sbi(EXT_IPI, 0, 1, 0, 0, 0, 0);
  say("ipi: to hart 0 -> %d, %s", r.error, wait_for(&ipis, 1) ? "taken" : "MISSING");
  r = sbi(EXT_IPI, 0, 0, 0xffffffffu, 0, 0, 0);
  say("ipi: to all -> %d, %s", r.error, wait_for(&ipis, 2) ? "taken" : "MISSING");
  say("ipi: to hart 1 -> %d", sbi(EXT_IPI, 0, 2, 0, 0, 0, 0).error);
  static volatile uint32_t mask = 1;
  say("ipi: legacy send_ipi -> %d, %s", legacy(4, (uint32_t)(uintptr_t)&mask, 0), wait_for(&ipis, 3) ? "taken" : "MISSING");
  say("ipi: legacy send_ipi, mask in firmware memory -> %d", legacy(4, 0x80000000u, 0));
  say("ipi: legacy clear_ipi -> %d", legacy(3, 0, 0));

  say("rfence: fence_i -> %d", sbi(EXT_RFENCE, 0, 1, 0, 0, 0, 0).error);
  say("rfence: sfence_vma all -> %d", sbi(EXT_RFENCE, 1, 1, 0, 0, 0xffffffffu, 0).error);
  say("rfence: sfence_vma range -> %d", sbi(EXT_RFENCE, 1, 1, 0, 0x80400000u, 0x3000, 0).error);
  say("rfence: sfence_vma_asid -> %d", sbi(EXT_RFENCE, 2, 0, 0xffffffffu, 0x80400000u, 0x1000, 3).error);
  say("rfence: hfence_gvma -> %d", sbi(EXT_RFENCE, 3, 1, 0, 0, 0, 0).error);
  say("rfence: hart 2 -> %d", sbi(EXT_RFENCE, 0, 4, 0, 0, 0, 0).error);
  say("rfence: legacy remote_fence_i -> %d", legacy(5, 0, 0));

  r = sbi(EXT_HSM, 2, 0, 0, 0, 0, 0);
  say("hsm: status(0) -> %d %u", r.error, r.value);
  say("hsm: status(1) -> %d", sbi(EXT_HSM, 2, 1, 0, 0, 0, 0).error);
  say("hsm: start(0) -> %d", sbi(EXT_HSM, 0, 0, 0x80400000u, 0, 0, 0).error);
  say("hsm: start(3) -> %d", sbi(EXT_HSM, 0, 3, 0x80400000u, 0, 0, 0).error);
  say("hsm: suspend type 7 -> %d", sbi(EXT_HSM, 3, 7, 0, 0, 0, 0).error);
  /* S interrupts off around arming and suspending: a tick taken before the suspend call would
     leave nothing to wake it. A pending STIP still ends the suspend. */
  csr_clear(sstatus, SSTATUS_SIE);
  sbi(EXT_TIME, 0, (uint32_t)(rdtime() + 1000), (uint32_t)((rdtime() + 1000) >> 32), 0, 0, 0);
  r = sbi(EXT_HSM, 3, 0, 0, 0, 0, 0);
  csr_set(sstatus, SSTATUS_SIE);
  say("hsm: retentive suspend -> %d, tick %s", r.error, wait_for(&ticks, 5) ? "arrived" : "MISSING");
  say("hsm: non-retentive suspend, bad address -> %d", sbi(EXT_HSM, 3, 0x80000000u, 0x80000000u, 0, 0, 0).error);
  csr_clear(sstatus, SSTATUS_SIE);
  sbi(EXT_TIME, 0, (uint32_t)(rdtime() + 1000), (uint32_t)((rdtime() + 1000) >> 32), 0, 0, 0);
  r = sbi(EXT_HSM, 3, 0x80000000u, (uint32_t)(uintptr_t)s_resume, 0x1234abcdu, 0, 0);
  say("hsm: non-retentive suspend RETURNED %d", r.error);
  return 0;
}

void after_resume(uint32_t hartid, uint32_t opaque) {
  say("hsm: resumed: a0 %u, a1 %x, sstatus.SIE %u, satp %x", hartid, opaque, csr_read(sstatus) & SSTATUS_SIE,
      csr_read(satp));
  csr_set(sstatus, SSTATUS_SIE);
  wait_for(&ticks, 6);
  say("hsm: tick after resume %s", ticks >= 6 ? "arrived" : "MISSING");

  say("dbcn: write_byte -> %d", sbi(EXT_DBCN, 2, '*', 0, 0, 0, 0).error);
  legacy(1, '\n', 0);
  static char buf[8];
  struct sbiret r = sbi(EXT_DBCN, 1, sizeof buf, (uint32_t)(uintptr_t)buf, 0, 0, 0);
  say("dbcn: read with no input -> %d %u", r.error, r.value);
  say("dbcn: write from firmware memory -> %d", sbi(EXT_DBCN, 0, 4, 0x80000000u, 0, 0, 0).error);
  say("dbcn: write above 4 GiB -> %d", sbi(EXT_DBCN, 0, 4, (uint32_t)(uintptr_t)line, 1, 0, 0).error);
  say("dbcn: write past RAM -> %d", sbi(EXT_DBCN, 0, 0x10000000u, (uint32_t)(uintptr_t)line, 0, 0, 0).error);
  say("dbcn: fid 3 -> %d", sbi(EXT_DBCN, 3, 0, 0, 0, 0, 0).error);
  say("legacy: getchar with no input -> %d", legacy(2, 0, 0));

  say("srst: type 5 -> %d", sbi(EXT_SRST, 0, 5, 0, 0, 0, 0).error);
  say("srst: reason 7 -> %d", sbi(EXT_SRST, 0, 0, 7, 0, 0, 0).error);
  say("srst: shutdown");
  sbi(EXT_SRST, 0, 0, 0, 0, 0, 0);
  say("srst: shutdown RETURNED");
  for (;;) __asm__ volatile("wfi");
}
