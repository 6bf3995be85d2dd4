// BlockFile: one I/O thread per image; requests complete in submission order.
#include "machine/block_file.h"

#include <sys/file.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "machine/thread_name.h"

namespace lockstep {

std::unique_ptr<BlockFile> BlockFile::open(const std::string& path, bool exclusive, std::string* error) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    *error = "cannot open disk image " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  if (exclusive && ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    *error = errno == EWOULDBLOCK ? "disk image " + path + " is in use by another writer (locked); a second machine writing it would corrupt it"
                                  : "cannot lock disk image " + path + ": " + std::strerror(errno);
    ::close(fd);
    return nullptr;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *error = "disk image " + path + " is not a regular file";
    ::close(fd);
    return nullptr;
  }
  if (st.st_size < 512 || st.st_size % 512 != 0) {
    *error = "disk image " + path + " is " + std::to_string(st.st_size) + " bytes; it must be a non-zero multiple of 512";
    ::close(fd);
    return nullptr;
  }
  return std::unique_ptr<BlockFile>(new BlockFile(fd, static_cast<uint64_t>(st.st_size)));
}

BlockFile::BlockFile(int fd, uint64_t size) : fd_(fd), size_(size) { thread_ = std::thread([this] {
    name_this_thread("lockstep-disk");
    loop();
  }); }

BlockFile::~BlockFile() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
    cv_.notify_all();
  }
  thread_.join();
  ::close(fd_);
}

void BlockFile::submit(Request&& r) {
  std::lock_guard<std::mutex> lock(mu_);
  todo_.push_back(std::move(r));
  busy_++;
  cv_.notify_all();
}

bool BlockFile::take(Request* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (done_.empty()) return false;
  *out = std::move(done_.front());
  done_.pop_front();
  return true;
}

bool BlockFile::idle() {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_ == 0 && done_.empty();
}

void BlockFile::perform(Request& r) {
  bool ok = true;
  const uint64_t span = r.op == Op::kWrite ? r.data.size() : 0;
  switch (r.op) {
    case Op::kRead: {
      r.data.assign(r.length, 0);
      size_t done = 0;
      while (ok && done < r.length) {
        const ssize_t n = pread(fd_, r.data.data() + done, r.length - done, static_cast<off_t>(r.offset + done));
        if (n <= 0 && !(n < 0 && errno == EINTR)) ok = false;
        if (n > 0) done += static_cast<size_t>(n);
      }
      break;
    }
    case Op::kWrite: {
      size_t done = 0;
      while (ok && done < r.data.size()) {
        const ssize_t n = pwrite(fd_, r.data.data() + done, r.data.size() - done, static_cast<off_t>(r.offset + done));
        if (n <= 0 && !(n < 0 && errno == EINTR)) ok = false;
        if (n > 0) done += static_cast<size_t>(n);
      }
      r.data.clear();
      break;
    }
    case Op::kFlush:
      ok = fdatasync(fd_) == 0;
      syncs_.fetch_add(1, std::memory_order_relaxed);
      // A sync owed from a replay failed at go-live: what the guest flushed then may be lost; say so here.
      if (sync_failed_.exchange(false, std::memory_order_relaxed)) ok = false;
      break;
  }
  r.status = ok ? 0 : 1;
  if (r.op == Op::kWrite && ok) {
    // The write reached the file: a disk pre-copy must send these chunks (again).
    std::lock_guard<std::mutex> lock(mu_);
    if (tracking_ && !dirty_.empty()) {
      for (uint64_t c = r.offset / kChunk; span > 0 && c <= (r.offset + span - 1) / kChunk && c < dirty_.size(); c++) dirty_[c] = 1;
    }
  }
}

bool BlockFile::settle_deferred_sync() {
  if (!sync_owed_) return true;
  sync_owed_ = false;
  const bool ok = fdatasync(fd_) == 0;
  syncs_.fetch_add(1, std::memory_order_relaxed);
  if (!ok) sync_failed_.store(true, std::memory_order_relaxed);
  return ok;
}

std::vector<uint32_t> BlockFile::take_dirty(bool first) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint32_t> out;
  const uint32_t n = static_cast<uint32_t>((size_ + kChunk - 1) / kChunk);
  if (first || !tracking_) {
    tracking_ = true;
    dirty_.assign(n, 0);
    for (uint32_t c = 0; c < n; c++) out.push_back(c);
    return out;
  }
  for (uint32_t c = 0; c < n; c++) {
    if (dirty_[c]) {
      out.push_back(c);
      dirty_[c] = 0;
    }
  }
  return out;
}

void BlockFile::loop() {
  for (;;) {
    Request r;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return quit_ || !todo_.empty(); });
      if (todo_.empty()) return;
      r = std::move(todo_.front());
      todo_.pop_front();
    }
    perform(r);
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_.push_back(std::move(r));
      busy_--;
    }
    if (wake_) wake_();
  }
}

}  // namespace lockstep
