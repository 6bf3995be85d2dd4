// Machine snapshots: everything that defines the machine's future (hart, CSRs, counters, devices,
// clock, RAM) in a versioned little-endian format. Restore validates all of it before changing anything.
#include <cstring>

#include "log/codec.h"
#include "machine/machine.h"

namespace lockstep {
namespace {

// Layout (version 5; version 4 lacked the clock section, version 3 also the supervisor section,
// version 2 also the checksum, version 1 also the write segments of pending disk requests):
//   "LKSTSNAP" | u32 version | u32 ram size | u32 flags (bit 0: real clock, bit 1: RAM omitted) | u32 reserved
//   cpu      : 31 x u32 (x1..x31), pc, priv u8, wfi u8, reservation_valid u8, pad u8, instret u64,
//              branches u64, mstatus, mtvec, mepc, mcause, mtval, mscratch, mie, mcounteren, reservation
//              (u32 each), minstret_offset u64, mcycle_offset u64
//   supervisor: mip_sw, medeleg, mideleg, stvec, sscratch, sepc, scause, stval, satp, scounteren (u32
//              each), pmpcfg 16 x u8, pmpaddr 16 x u32
//   machine  : msip u8, timecmp_armed u8, halt_requested u8, pad u8, mtimecmp u64, mtime_offset i64,
//              wfi_skipped u64, clock_raw u64, tohost u32, semihost errno i32, semihost feature pos u32,
//              entropy PRNG state u64
//   uart     : ier lcr mcr scr fcr dll dlm thre_ip (u8 each), rx count u32, rx bytes
//   plic     : sizeof(Plic::State) bytes
//   virtio   : 8 transports (VirtioMmio::save), has-disk u8, then the disk's pending requests
//   clock    : base u64, base instret u64, rate u32 (Machine::guest_time's prediction between logged values)
//   ram      : page count u32, then per non-zero page: index u32, 4096 bytes (absent when RAM is
//              omitted: a clone's final state, whose RAM travelled page by page beforehand)
//   trailer  : "SNAPEND!"
//   checksum : u32 CRC32C of every byte before it, magic to trailer: a snapshot is checked whole before
//              any field of it is believed.
constexpr char kMagic[8] = {'L', 'K', 'S', 'T', 'S', 'N', 'A', 'P'};
constexpr char kTrailer[8] = {'S', 'N', 'A', 'P', 'E', 'N', 'D', '!'};
constexpr uint32_t kVersion = 5;
// Version 4 is still read: its clock section is absent (the prediction starts at clock_raw with no rate).
constexpr uint32_t kOldestVersion = 4;
constexpr size_t kChecksumBytes = 4;
constexpr uint32_t kFlagRealClock = 1, kFlagNoRam = 2;

class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out) : out_(out) {}
  template <typename T>
  void put(T v) {
    const size_t at = out_.size();
    out_.resize(at + sizeof(T));
    std::memcpy(out_.data() + at, &v, sizeof(T));
  }
  void bytes(const void* p, size_t n) { out_.insert(out_.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); }

 private:
  std::vector<uint8_t>& out_;
};

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  template <typename T>
  bool get(T* v) {
    if (n_ - pos_ < sizeof(T)) return false;
    std::memcpy(v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  const uint8_t* take(size_t n) {
    if (n_ - pos_ < n) return nullptr;
    const uint8_t* r = p_ + pos_;
    pos_ += n;
    return r;
  }
  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }

 private:
  const uint8_t* p_;
  size_t n_, pos_ = 0;
};

bool zero_page(const uint8_t* p) {
  uint64_t acc = 0;
  for (uint32_t i = 0; i < kPageSize; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    acc |= w;
  }
  return acc == 0;
}

}  // namespace

std::vector<uint8_t> Machine::save(bool include_ram) const {
  std::vector<uint8_t> out;
  Writer w(out);
  w.bytes(kMagic, 8);
  w.put<uint32_t>(kVersion);
  w.put<uint32_t>(config_.ram_size);
  w.put<uint32_t>((config_.real_clock ? kFlagRealClock : 0u) | (include_ram ? 0u : kFlagNoRam));
  w.put<uint32_t>(0);
  const Cpu& c = cpu_;
  for (int i = 1; i < 32; i++) w.put<uint32_t>(c.x[i]);
  w.put<uint32_t>(c.pc);
  w.put<uint8_t>(static_cast<uint8_t>(c.priv));
  w.put<uint8_t>(c.wfi);
  w.put<uint8_t>(c.reservation_valid);
  w.put<uint8_t>(0);
  w.put<uint64_t>(c.instret);
  w.put<uint64_t>(c.branches);
  for (uint32_t v : {c.mstatus, c.mtvec, c.mepc, c.mcause, c.mtval, c.mscratch, c.mie, c.mcounteren, c.reservation}) w.put<uint32_t>(v);
  w.put<uint64_t>(c.minstret_offset);
  w.put<uint64_t>(c.mcycle_offset);
  for (uint32_t v : {c.mip_sw, c.medeleg, c.mideleg, c.stvec, c.sscratch, c.sepc, c.scause, c.stval, c.satp, c.scounteren}) {
    w.put<uint32_t>(v);
  }
  w.bytes(c.pmpcfg, sizeof(c.pmpcfg));
  for (uint32_t v : c.pmpaddr) w.put<uint32_t>(v);
  w.put<uint8_t>(msip_);
  w.put<uint8_t>(timecmp_armed_);
  w.put<uint8_t>(halt_requested_);
  w.put<uint8_t>(0);
  w.put<uint64_t>(mtimecmp_);
  w.put<int64_t>(mtime_offset_);
  w.put<uint64_t>(wfi_skipped_);
  w.put<uint64_t>(clock_raw_);
  w.put<uint32_t>(tohost_);
  w.put<int32_t>(semihost_errno_);
  w.put<uint32_t>(semihost_feature_pos_);
  w.put<uint64_t>(prng_);
  const Uart::State& u = uart_.s;
  for (uint8_t b : {u.ier, u.lcr, u.mcr, u.scr, u.fcr, u.dll, u.dlm, static_cast<uint8_t>(u.thre_ip)}) w.put<uint8_t>(b);
  w.put<uint32_t>(static_cast<uint32_t>(uart_.rx_.size()));
  for (uint8_t b : uart_.rx_) w.put<uint8_t>(b);
  w.bytes(&plic_.s, sizeof(plic_.s));
  for (const VirtioMmio& t : virtio_) t.save(&out);
  w.put<uint8_t>(blk_ ? 1 : 0);
  if (blk_) blk_->save(&out);
  w.put<uint64_t>(clock_base_);
  w.put<uint64_t>(clock_base_instret_);
  w.put<uint32_t>(clock_rate_);
  if (!include_ram) {
    w.bytes(kTrailer, 8);
    w.put<uint32_t>(crc32c(out.data(), out.size()));
    return out;
  }
  // A page never written (no kDirtyEver) still holds its initial zeros: it is not read at all. Reading
  // it would fault in host memory the guest never touched (most of a large, mostly idle RAM).
  const uint32_t npages = config_.ram_size / kPageSize;
  const std::vector<uint8_t>& dirty = cpu_.dirty();
  auto written = [&](uint32_t p) { return (dirty[p] & kDirtyEver) != 0 && !zero_page(ram_ + static_cast<size_t>(p) * kPageSize); };
  uint32_t nonzero = 0;
  for (uint32_t p = 0; p < npages; p++) nonzero += written(p) ? 1 : 0;
  w.put<uint32_t>(nonzero);
  for (uint32_t p = 0; p < npages; p++) {
    const uint8_t* page = ram_ + static_cast<size_t>(p) * kPageSize;
    if (!written(p)) continue;
    w.put<uint32_t>(p);
    w.bytes(page, kPageSize);
  }
  w.bytes(kTrailer, 8);
  w.put<uint32_t>(crc32c(out.data(), out.size()));
  return out;
}

bool Machine::restore(const uint8_t* data, size_t n, std::string* error, SnapshotProblem* problem) {
  Reader r(data, n);
  SnapshotProblem kind = SnapshotProblem::kCorrupt;
  auto fail = [&](const std::string& what) {
    *error = "snapshot byte " + std::to_string(r.pos()) + ": " + what;
    if (problem) *problem = kind;
    return false;
  };
  const uint8_t* magic = r.take(8);
  if (!magic || std::memcmp(magic, kMagic, 8) != 0) return fail("not a lockstep snapshot (bad magic)");
  uint32_t version, ram_size, flags, reserved;
  if (!r.get(&version) || !r.get(&ram_size) || !r.get(&flags) || !r.get(&reserved)) return fail("truncated header");
  if (version >= 1 && version < kOldestVersion) {
    kind = SnapshotProblem::kVersion;
    return fail("snapshot version " + std::to_string(version) + " was written by an older lockstep; this build reads versions " + std::to_string(kOldestVersion) +
                " to " + std::to_string(kVersion) + " (which carry a checksum): take the snapshot again with this version");
  }
  // The checksum before anything else is believed: a damaged field must not pass for a strange but valid one.
  if (n < r.pos() + kChecksumBytes) return fail("truncated snapshot (no room for its checksum)");
  uint32_t stored;
  std::memcpy(&stored, data + n - kChecksumBytes, kChecksumBytes);
  const uint32_t computed = crc32c(data, n - kChecksumBytes);
  if (stored != computed) {
    char b[160];
    std::snprintf(b, sizeof b, "checksum mismatch (stored 0x%08x, computed 0x%08x over %zu bytes): the snapshot is damaged or truncated", stored, computed,
                  n - kChecksumBytes);
    return fail(b);
  }
  n -= kChecksumBytes;
  r = Reader(data, n);
  r.take(8 + 16);
  if (version > kVersion || version < kOldestVersion) {
    kind = SnapshotProblem::kVersion;
    return fail("snapshot version " + std::to_string(version) + "; this build reads versions " + std::to_string(kOldestVersion) + " to " + std::to_string(kVersion) +
                " (a newer lockstep wrote it?)");
  }
  if ((flags & ~(kFlagRealClock | kFlagNoRam)) != 0) return fail("unknown flags " + std::to_string(flags));
  kind = SnapshotProblem::kMismatch;
  if (ram_size != config_.ram_size) {
    return fail("the snapshot has " + std::to_string(ram_size) + " bytes of RAM, this machine " + std::to_string(config_.ram_size));
  }
  const bool with_ram = (flags & kFlagNoRam) == 0;
  if (((flags & 1) != 0) != config_.real_clock) return fail(std::string("the snapshot was taken with the ") + ((flags & 1) ? "real" : "virtual") + " clock");
  kind = SnapshotProblem::kCorrupt;
  // Parse everything into temporaries first: a bad snapshot must leave the machine untouched.
  struct CpuFields {
    uint32_t x[32] = {};
    uint32_t pc = 0;
    uint8_t priv = 0, wfi = 0, rv = 0, pad = 0;
    uint64_t instret = 0, branches = 0;
    uint32_t csr[9] = {};
    uint64_t minstret_offset = 0, mcycle_offset = 0;
  } cf;
  for (int i = 1; i < 32; i++) if (!r.get(&cf.x[i])) return fail("truncated registers");
  if (!r.get(&cf.pc) || !r.get(&cf.priv) || !r.get(&cf.wfi) || !r.get(&cf.rv) || !r.get(&cf.pad) || !r.get(&cf.instret) ||
      !r.get(&cf.branches)) {
    return fail("truncated hart state");
  }
  for (uint32_t& v : cf.csr) if (!r.get(&v)) return fail("truncated CSRs");
  if (!r.get(&cf.minstret_offset) || !r.get(&cf.mcycle_offset)) return fail("truncated counters");
  if (cf.priv == 2 || cf.priv > 3) return fail("privilege mode " + std::to_string(cf.priv) + " does not exist");
  if (((cf.csr[0] & Cpu::kMstatusMPP) >> 11) == 2) return fail("mstatus.MPP holds the reserved privilege mode 2");
  uint32_t sv[10];
  for (uint32_t& v : sv) if (!r.get(&v)) return fail("truncated supervisor CSRs");
  uint8_t pmpcfg[Cpu::kPmpEntries];
  uint32_t pmpaddr[Cpu::kPmpEntries];
  for (uint8_t& v : pmpcfg) if (!r.get(&v)) return fail("truncated PMP configuration");
  for (uint32_t& v : pmpaddr) if (!r.get(&v)) return fail("truncated PMP addresses");
  if (cf.branches > cf.instret) return fail("more branches than instructions retired");
  uint8_t msip, armed, halt, pad;
  uint64_t mtimecmp, wfi_skipped, clock_raw;
  int64_t mtime_offset;
  uint32_t tohost, feature_pos;
  uint64_t prng;
  int32_t sh_errno;
  if (!r.get(&msip) || !r.get(&armed) || !r.get(&halt) || !r.get(&pad) || !r.get(&mtimecmp) || !r.get(&mtime_offset) ||
      !r.get(&wfi_skipped) || !r.get(&clock_raw) || !r.get(&tohost) || !r.get(&sh_errno) || !r.get(&feature_pos) ||
      !r.get(&prng)) {
    return fail("truncated device state");
  }
  uint8_t ub[8];
  for (uint8_t& b : ub) if (!r.get(&b)) return fail("truncated UART state");
  uint32_t rx_count;
  if (!r.get(&rx_count)) return fail("truncated UART state");
  if (rx_count > Uart::kRxFifo) return fail("UART receive FIFO holds " + std::to_string(rx_count) + " bytes, more than 16");
  const uint8_t* rx = r.take(rx_count);
  if (!rx) return fail("truncated UART FIFO");
  Plic::State plic;
  const uint8_t* pb = r.take(sizeof(plic));
  if (!pb) return fail("truncated PLIC state");
  std::memcpy(&plic, pb, sizeof(plic));
  std::vector<VirtioMmio> virtio = virtio_;
  {
    const uint8_t* p = data + r.pos();
    for (VirtioMmio& t : virtio) {
      if (!t.restore(&p, data + n)) return fail("damaged virtio transport state");
    }
    r.take(static_cast<size_t>(p - (data + r.pos())));
  }
  uint8_t has_blk;
  if (!r.get(&has_blk) || has_blk > 1) return fail("damaged device list");
  if ((has_blk != 0) != (blk_ != nullptr)) {
    kind = SnapshotProblem::kMismatch;
    return fail(has_blk ? "the snapshot has a disk, this machine none" : "this machine has a disk, the snapshot none");
  }
  VirtioBlk blk_tmp(this, &virtio_[1], blk_ ? blk_->capacity_bytes() : 0);
  if (has_blk) {
    const uint8_t* p = data + r.pos();
    if (!blk_tmp.restore(&p, data + n)) return fail("damaged virtio-blk state");
    r.take(static_cast<size_t>(p - (data + r.pos())));
  }
  uint64_t clock_base = 0, clock_base_instret = 0;
  uint32_t clock_rate = 0;
  const bool has_clock_section = version >= 5;
  if (has_clock_section && (!r.get(&clock_base) || !r.get(&clock_base_instret) || !r.get(&clock_rate))) return fail("truncated clock section");
  if (has_clock_section && (clock_base_instret > cf.instret || clock_base > clock_raw)) return fail("clock base after the machine's instret or clock");
  uint32_t pages = 0;
  if (with_ram && !r.get(&pages)) return fail("truncated RAM section");
  const uint32_t npages = config_.ram_size / kPageSize;
  if (pages > npages) return fail(std::to_string(pages) + " RAM pages listed, the machine has " + std::to_string(npages));
  const size_t ram_at = r.pos();
  uint32_t prev = 0;
  for (uint32_t i = 0; i < pages; i++) {
    uint32_t index;
    if (!r.get(&index)) return fail("truncated RAM page index");
    if (index >= npages || (i > 0 && index <= prev)) return fail("RAM page index " + std::to_string(index) + " out of order or range");
    prev = index;
    if (!r.take(kPageSize)) return fail("truncated RAM page " + std::to_string(index));
  }
  const uint8_t* trailer = r.take(8);
  if (!trailer || std::memcmp(trailer, kTrailer, 8) != 0) return fail("missing end marker (truncated or damaged snapshot)");
  if (r.left() != 0) return fail(std::to_string(r.left()) + " unexpected bytes after the end marker");

  // Valid: apply.
  Cpu& c = cpu_;
  for (int i = 1; i < 32; i++) c.x[i] = cf.x[i];
  c.x[0] = 0;
  c.pc = cf.pc & ~1u;
  c.priv = static_cast<Priv>(cf.priv);
  c.wfi = cf.wfi != 0;
  c.reservation_valid = cf.rv != 0;
  c.instret = cf.instret;
  c.branches = cf.branches;
  c.mstatus = cf.csr[0];
  c.mtvec = cf.csr[1];
  c.mepc = cf.csr[2];
  c.mcause = cf.csr[3];
  c.mtval = cf.csr[4];
  c.mscratch = cf.csr[5];
  c.mie = cf.csr[6] & Cpu::kMipMask;
  c.mcounteren = cf.csr[7];
  c.reservation = cf.csr[8];
  c.minstret_offset = cf.minstret_offset;
  c.mcycle_offset = cf.mcycle_offset;
  // Masked as the CSR writes mask them, so a snapshot cannot create state a guest could not.
  c.mip_sw = sv[0] & Cpu::kMipSoftware;
  c.medeleg = sv[1] & Cpu::kMedelegMask;
  c.mideleg = sv[2] & Cpu::kMidelegMask;
  c.stvec = sv[3];
  c.sscratch = sv[4];
  c.sepc = sv[5];
  c.scause = sv[6];
  c.stval = sv[7];
  c.satp = sv[8];
  c.scounteren = sv[9] & 7u;
  for (uint32_t i = 0; i < Cpu::kPmpEntries; i++) {
    c.pmpcfg[i] = pmpcfg[i] & 0x9f;
    c.pmpaddr[i] = pmpaddr[i];
  }
  c.stop_now = false;
  msip_ = msip != 0;
  timecmp_armed_ = armed != 0;
  halt_requested_ = halt != 0;
  mtimecmp_ = mtimecmp;
  mtime_offset_ = mtime_offset;
  wfi_skipped_ = wfi_skipped;
  clock_raw_ = clock_raw;
  clock_base_ = has_clock_section ? clock_base : clock_raw;
  clock_base_instret_ = has_clock_section ? clock_base_instret : cf.instret;
  clock_rate_ = clock_rate;
  // The real clock continues from the snapshot's time rather than jumping to this host's uptime.
  start_ = std::chrono::steady_clock::now() - std::chrono::nanoseconds(clock_raw * (1'000'000'000 / kTimebaseHz));
  set_tohost(tohost);
  semihost_errno_ = sh_errno;
  semihost_feature_pos_ = feature_pos;
  prng_ = prng;
  Uart::State& u = uart_.s;
  u.ier = ub[0]; u.lcr = ub[1]; u.mcr = ub[2]; u.scr = ub[3]; u.fcr = ub[4]; u.dll = ub[5]; u.dlm = ub[6]; u.thre_ip = ub[7] != 0;
  uart_.rx_.assign(rx, rx + rx_count);
  plic_.s = plic;
  virtio_ = virtio;
  if (blk_) {
    std::vector<uint8_t> tmp;
    blk_tmp.save(&tmp);
    const uint8_t* p = tmp.data();
    blk_->restore(&p, tmp.data() + tmp.size());
  }
  if (with_ram) {
    // Only pages ever written can hold anything but zeros: the rest are left untouched (not faulted in).
    const uint32_t npages = config_.ram_size / kPageSize;
    const std::vector<uint8_t>& dirty = cpu_.dirty();
    for (uint32_t p = 0; p < npages; p++) {
      if ((dirty[p] & kDirtyEver) == 0) continue;
      std::memset(ram_ + static_cast<size_t>(p) * kPageSize, 0, kPageSize);
      cpu_.host_wrote(kRamBase + p * kPageSize, kPageSize);
    }
    Reader pr(data + ram_at, n - ram_at);
    for (uint32_t i = 0; i < pages; i++) {
      uint32_t index = 0;
      pr.get(&index);
      std::memcpy(ram_ + static_cast<size_t>(index) * kPageSize, pr.take(kPageSize), kPageSize);
      cpu_.host_wrote(kRamBase + index * kPageSize, kPageSize);
    }
  }
  cpu_.invalidate_all();  // the hart's registers changed under any decoded block it was in
  exit_code_ = 0;
  exit_via_ = ExitVia::kNone;
  divergence_.clear();
  update_irqs();
  return true;
}

}  // namespace lockstep
