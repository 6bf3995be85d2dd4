// NS16550A UART (QEMU virt, IRQ 10): transmit is instantaneous; receive bytes come from the host.
// No clocking or baud rate: the divisor latch is storage only.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>

#include "cpu/cpu.h"

namespace lockstep {

class Uart {
 public:
  static constexpr uint32_t kBase = 0x10000000, kSize = 0x100, kIrq = 10;
  static constexpr size_t kRxFifo = 16;

  explicit Uart(std::function<void(uint8_t)> tx) : tx_(std::move(tx)) {}

  Mmio load(uint32_t off, uint32_t* v);
  Mmio store(uint32_t off, uint32_t v);
  /// Host input: accepts bytes while the receive FIFO has room; returns how many it took.
  size_t receive(const uint8_t* data, size_t n);
  bool irq() const;
  bool rx_full() const { return rx_.size() >= kRxFifo; }

  struct State {
    uint8_t ier = 0, lcr = 0, mcr = 0, scr = 0, fcr = 0, dll = 0, dlm = 0;
    bool thre_ip = false;  // "transmitter holding register empty" interrupt pending
  } s;
  std::deque<uint8_t> rx_;

 private:
  std::function<void(uint8_t)> tx_;
};

}  // namespace lockstep
