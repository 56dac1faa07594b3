// fed/run_lock.h — one server per run directory.
//
// A server holds OUTPUT/server.lock from before it opens anything for writing (metrics.jsonl, the
// checkpoint, the adapter) until it ends, so a second server started on the same config fails
// at once with the PID of the one that owns the directory, instead of truncating its metrics.
//
// The lock is flock(2) on the file, not the file's existence: the kernel drops it when the
// process ends, however it ends, so a crashed server's leftover file never blocks the next one.
// The file holds the owner's PID (for the message only). flock locks belong to the open file, so
// a second RunLock on the same directory fails within one process too.
#pragma once

#include <filesystem>

namespace fe::fed {

class RunLock {
 public:
  // Creates `dir` when needed and takes DIR/server.lock; Error naming the lock file and the PID
  // holding it when another process (or another RunLock) owns the directory.
  explicit RunLock(const std::filesystem::path& dir);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

  const std::filesystem::path& file() const { return file_; }

 private:
  std::filesystem::path file_;
  int fd_ = -1;
};

}  // namespace fe::fed
