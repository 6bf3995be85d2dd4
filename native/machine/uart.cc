// NS16550A register semantics (the subset any driver uses: data, IER, IIR/FCR, LCR, MCR, LSR, SCR).
#include "machine/uart.h"

namespace lockstep {
namespace {
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kIerRx = 0x01, kIerThre = 0x02;
constexpr uint8_t kLsrDr = 0x01, kLsrThre = 0x20, kLsrTemt = 0x40;
}  // namespace

bool Uart::irq() const { return ((s.ier & kIerRx) && !rx_.empty()) || ((s.ier & kIerThre) && s.thre_ip); }

size_t Uart::receive(const uint8_t* data, size_t n) {
  size_t i = 0;
  for (; i < n && rx_.size() < kRxFifo; i++) rx_.push_back(data[i]);
  return i;
}

Mmio Uart::load(uint32_t off, uint32_t* v) {
  uint8_t r = 0;
  switch (off) {
    case 0:
      if (s.lcr & kLcrDlab) {
        r = s.dll;
      } else if (!rx_.empty()) {
        r = rx_.front();
        rx_.pop_front();
      }
      break;
    case 1: r = (s.lcr & kLcrDlab) ? s.dlm : s.ier; break;
    case 2: {
      const uint8_t fifo = (s.fcr & 1) ? 0xC0 : 0;
      if ((s.ier & kIerRx) && !rx_.empty()) {
        r = 0x04 | fifo;
      } else if ((s.ier & kIerThre) && s.thre_ip) {
        r = 0x02 | fifo;
        s.thre_ip = false;  // reading IIR while it reports THRE clears it
      } else {
        r = 0x01 | fifo;
      }
      break;
    }
    case 3: r = s.lcr; break;
    case 4: r = s.mcr; break;
    case 5: r = kLsrThre | kLsrTemt | (rx_.empty() ? 0 : kLsrDr); break;
    case 6: r = 0xB0; break;  // DCD, DSR, CTS asserted (as QEMU reports with a connected backend)
    case 7: r = s.scr; break;
    default: return Mmio::kFault;
  }
  *v = r;
  return Mmio::kOk;
}

Mmio Uart::store(uint32_t off, uint32_t v) {
  const uint8_t b = static_cast<uint8_t>(v);
  switch (off) {
    case 0:
      if (s.lcr & kLcrDlab) {
        s.dll = b;
      } else {
        tx_(b);
        s.thre_ip = true;  // sent at once: the holding register is empty again
      }
      break;
    case 1:
      if (s.lcr & kLcrDlab) {
        s.dlm = b;
      } else {
        if ((b & kIerThre) && !(s.ier & kIerThre)) s.thre_ip = true;
        s.ier = b & 0x0f;
      }
      break;
    case 2:
      s.fcr = b;
      if (b & 0x02) rx_.clear();
      break;
    case 3: s.lcr = b; break;
    case 4: s.mcr = b; break;
    case 7: s.scr = b; break;
    case 5: case 6: break;  // read-only
    default: return Mmio::kFault;
  }
  return Mmio::kOk;
}

}  // namespace lockstep
