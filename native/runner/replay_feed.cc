// Batch intake for replay: whole-batch validation before any event of it becomes visible.
#include "runner/replay_feed.h"

namespace lockstep {

void ReplayFeed::reset() {
  batches_.clear();
  events_.clear();
  first_batch_ = 0;
  next_lsn_ = 0;
  covered_ = 0;
  started_ = false;
  ended_ = false;
  error_.clear();
}

bool ReplayFeed::add(std::vector<uint8_t>&& batch) {
  if (!error_.empty()) return false;
  BatchDecoder d;
  if (!d.open(batch.data(), batch.size(), next_lsn_)) {
    error_ = d.error();
    return false;
  }
  if (!started_ && !d.base_full()) {
    // Only the first batch of a recording carries the branch count and pc the replay starts from.
    error_ = "batch " + std::to_string(next_lsn_) + ": the first batch lacks the full base a recording starts with (branch count and pc)";
    return false;
  }
  // Decode into a scratch list first: a batch with a bad record contributes nothing.
  std::vector<Event> decoded;
  Event e;
  int r;
  while ((r = d.next(&e)) == 1) decoded.push_back(e);
  if (r < 0) {
    error_ = d.error();
    return false;
  }
  // Check the whole batch against what came before, then take it: a refused batch leaves nothing behind.
  uint64_t covered = covered_;
  bool ended = ended_;
  for (const Event& x : decoded) {
    if (ended) {
      // A recording ends once: whatever follows an end record was not produced by the recorder.
      error_ = "batch " + std::to_string(next_lsn_) + ": " + event_kind_name(x.kind) + " at instret " + std::to_string(x.instret) +
               " follows the log's end record";
      return false;
    }
    if (x.instret < covered) {
      error_ = "batch " + std::to_string(next_lsn_) + ": event at instret " + std::to_string(x.instret) +
               " goes back before instret " + std::to_string(covered);
      return false;
    }
    covered = x.instret;
    ended = x.kind == EventKind::kEnd;
  }
  if (!started_) {
    started_ = true;
    start_ = d.base();
  }
  covered_ = covered;
  ended_ = ended;
  const uint64_t index = first_batch_ + batches_.size();
  batches_.push_back(std::move(batch));  // moving the vector keeps its heap buffer: payload pointers stay valid
  for (const Event& x : decoded) events_.push_back(Pending{x, index});
  next_lsn_++;
  return true;
}

void ReplayFeed::pop() {
  events_.pop_front();
  // Free batches no pending event points into any more.
  const uint64_t keep_from = events_.empty() ? first_batch_ + batches_.size() : events_.front().batch;
  while (first_batch_ < keep_from && !batches_.empty()) {
    batches_.pop_front();
    first_batch_++;
  }
}

}  // namespace lockstep
