// The replaying side's supply of events: batches handed over by the host, validated and decoded on
// the vCPU thread, consumed in order by the Machine (sync events) and the run loop (async events).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "log/codec.h"
#include "machine/machine.h"

namespace lockstep {

class ReplayFeed final : public ReplaySource {
 public:
  /// Validates and decodes one batch (vCPU thread). False: the batch is damaged, or holds a record
  /// after the log's end record; see error(). Nothing of a refused batch is ever applied.
  bool add(std::vector<uint8_t>&& batch);
  const Event* peek() override { return events_.empty() ? nullptr : &events_.front().e; }
  void pop() override;
  /// The first batch's base (where the recording started), once one arrived.
  bool started() const { return started_; }
  const LogCursor& start() const { return start_; }
  /// Position of the last event received: a live replayer may run this far.
  uint64_t covered() const { return covered_; }
  /// The lsn of the batch holding the next unconsumed event (the next batch expected, if none is
  /// pending). An output the guest produces now was tagged with this lsn or a lower one by the recorder.
  uint64_t next_event_lsn() const { return events_.empty() ? next_lsn_ : events_.front().batch; }
  const std::string& error() const { return error_; }
  void reset();

 private:
  struct Pending {
    Event e;
    uint64_t batch;  // index into batches_ (counted from the first ever added)
  };
  std::deque<std::vector<uint8_t>> batches_;  // storage the events' payload pointers point into
  uint64_t first_batch_ = 0;                  // index of batches_.front()
  std::deque<Pending> events_;
  uint64_t next_lsn_ = 0;
  uint64_t covered_ = 0;
  bool started_ = false;
  bool ended_ = false;  // an end record was added: nothing may follow it
  LogCursor start_{};
  std::string error_;
};

}  // namespace lockstep
