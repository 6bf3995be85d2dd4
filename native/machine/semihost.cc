// RISC-V semihosting (the Arm semihosting calls through the RISC-V trap sequence). Console only:
// every host-file operation is refused, so a guest cannot reach the host's file system.
#include <cstring>
#include <ctime>

#include "machine/machine.h"

namespace lockstep {
namespace {

enum SysOp : uint32_t {
  kOpen = 0x01, kClose = 0x02, kWriteC = 0x03, kWrite0 = 0x04, kWrite = 0x05, kRead = 0x06, kReadC = 0x07,
  kIsError = 0x08, kIsTty = 0x09, kSeek = 0x0A, kFlen = 0x0C, kTmpNam = 0x0D, kRemove = 0x0E, kRename = 0x0F,
  kClock = 0x10, kTime = 0x11, kSystem = 0x12, kErrno = 0x13, kGetCmdline = 0x15, kHeapInfo = 0x16,
  kExit = 0x18, kExitExtended = 0x20, kElapsed = 0x30, kTickFreq = 0x31,
};
constexpr uint32_t kAppExit = 0x20026;  // ADP_Stopped_ApplicationExit
constexpr int32_t kEACCES = 13, kEBADF = 9, kEFAULT = 14;
// Handles: 1 console in, 2 console out, 3 console err, 4 the feature file.
constexpr uint32_t kStdin = 1, kStdout = 2, kStderr = 3, kFeatures = 4;
constexpr uint8_t kFeatureBytes[5] = {'S', 'H', 'F', 'B', 0x03};  // EXIT_EXTENDED, STDOUT_STDERR
constexpr uint32_t kMaxString = 1u << 20;

}  // namespace

int32_t Machine::semihost_open(uint32_t name_addr, uint32_t mode, uint32_t len) {
  char name[32] = {};
  if (len >= sizeof(name) || !guest_read(name_addr, name, len)) {
    semihost_errno_ = len >= sizeof(name) ? kEACCES : kEFAULT;
    return -1;
  }
  if (std::strcmp(name, ":tt") == 0) return mode < 4 ? kStdin : mode < 8 ? kStdout : kStderr;
  if (std::strcmp(name, ":semihosting-features") == 0 && mode < 4) return kFeatures;
  semihost_errno_ = kEACCES;  // host files are not reachable from a guest
  return -1;
}

Mmio Machine::semihost() {
  uint32_t* x = cpu_.x;
  const uint32_t op = x[10], arg = x[11];
  uint32_t a[4] = {};
  auto args = [&](int n) { return guest_read(arg, a, 4u * static_cast<uint32_t>(n)); };
  uint32_t& feature_pos = semihost_feature_pos_;
  int64_t ret = -1;
  switch (op) {
    case kOpen:
      if (args(3)) {
        ret = semihost_open(a[0], a[1], a[2]);
        if (ret == kFeatures) feature_pos = 0;
      }
      break;
    case kClose:
      ret = args(1) && a[0] >= kStdin && a[0] <= kFeatures ? 0 : -1;
      break;
    case kWriteC: {
      uint8_t c;
      if (guest_read(arg, &c, 1)) console(&c, 1);
      ret = 0;
      break;
    }
    case kWrite0: {
      uint8_t buf[256];
      uint32_t addr = arg, total = 0;
      for (;;) {
        uint32_t n = 0;
        bool end = false;
        while (n < sizeof(buf)) {
          if (!guest_read(addr + n, &buf[n], 1) || buf[n] == 0) {
            end = true;
            break;
          }
          n++;
        }
        console(buf, n);
        addr += n;
        total += n;
        if (end || total >= kMaxString) break;
      }
      ret = 0;
      break;
    }
    case kWrite:
      if (!args(3)) break;
      if (a[0] == kStdout || a[0] == kStderr) {
        uint8_t buf[4096];
        uint32_t done = 0;
        while (done < a[2]) {
          const uint32_t n = std::min<uint32_t>(a[2] - done, sizeof(buf));
          if (!guest_read(a[1] + done, buf, n)) break;
          console(buf, n);
          done += n;
        }
        ret = a[2] - done;  // bytes NOT written
      } else {
        semihost_errno_ = kEBADF;
        ret = a[2];
      }
      break;
    case kRead:
      if (!args(3)) break;
      if (a[0] == kFeatures) {
        const uint32_t avail = feature_pos < sizeof(kFeatureBytes) ? sizeof(kFeatureBytes) - feature_pos : 0;
        const uint32_t n = std::min(a[2], avail);
        if (n && !guest_write(a[1], kFeatureBytes + feature_pos, n)) break;
        feature_pos += n;
        ret = a[2] - n;
      } else if (a[0] == kStdin) {
        ret = a[2];  // end of input: console input reaches guests through the UART, which is logged
      } else {
        semihost_errno_ = kEBADF;
      }
      break;
    case kReadC:
      ret = -1;
      break;
    case kIsError:
      ret = args(1) && static_cast<int32_t>(a[0]) < 0 ? 1 : 0;
      break;
    case kIsTty:
      ret = !args(1) ? -1 : (a[0] >= kStdin && a[0] <= kStderr) ? 1 : a[0] == kFeatures ? 0 : -1;
      break;
    case kSeek:
      if (args(2) && a[0] == kFeatures && a[1] <= sizeof(kFeatureBytes)) {
        feature_pos = a[1];
        ret = 0;
      }
      break;
    case kFlen:
      ret = args(1) && a[0] == kFeatures ? static_cast<int64_t>(sizeof(kFeatureBytes)) : -1;
      break;
    case kTmpNam: case kRemove: case kRename: case kSystem:
      semihost_errno_ = kEACCES;
      ret = -1;
      break;
    case kClock:
      ret = static_cast<int64_t>(guest_time() / (kTimebaseHz / 100));  // centiseconds
      break;
    case kTime:
      // Seconds since the epoch. The virtual clock starts at 0; the real one follows the host.
      ret = static_cast<int64_t>(wall_time());
      break;
    case kErrno:
      ret = semihost_errno_;
      break;
    case kGetCmdline: {
      // The block is {buffer, size}; on success the text (NUL-terminated) is in the buffer and its
      // length in the block's second word. A buffer too small fails the call, as the spec says.
      const std::string& text = config_.cmdline;
      const uint32_t len = static_cast<uint32_t>(text.size());
      if (args(2) && a[1] > len && guest_write(a[0], text.c_str(), len + 1) && guest_write(arg + 4, &len, 4)) ret = 0;
      break;
    }
    case kHeapInfo: {
      uint32_t block = 0;
      const uint32_t zeros[4] = {};
      // Zeros mean "unknown": the C library falls back to its linker symbols.
      if (guest_read(arg, &block, 4) && guest_write(block, zeros, sizeof(zeros))) ret = 0;
      break;
    }
    case kExit:
      exit_code_ = arg == kAppExit ? 0 : 1;
      exit_via_ = ExitVia::kSemihosting;
      return Mmio::kExit;
    case kExitExtended:
      if (!args(2)) break;
      exit_code_ = a[0] == kAppExit ? static_cast<int32_t>(a[1]) : 1;
      exit_via_ = ExitVia::kSemihosting;
      return Mmio::kExit;
    case kElapsed: {
      const uint64_t t = guest_time();
      if (guest_write(arg, &t, 8)) ret = 0;
      break;
    }
    case kTickFreq:
      ret = static_cast<int64_t>(kTimebaseHz);
      break;
    default:
      ret = -1;
      break;
  }
  x[10] = static_cast<uint32_t>(ret);
  return Mmio::kOk;
}

}  // namespace lockstep
