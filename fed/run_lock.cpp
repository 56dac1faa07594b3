#include "fed/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/error.h"

namespace fe::fed {
namespace {

namespace fs = std::filesystem;

// What the owner wrote into the lock file: its PID, or empty while it is still writing it.
std::string owner_of(int fd) {
  char text[32] = {};
  const ssize_t n = pread(fd, text, sizeof text - 1, 0);
  std::string pid = n > 0 ? std::string(text, static_cast<size_t>(n)) : "";
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid;
}

}  // namespace

RunLock::RunLock(const fs::path& dir) : file_(dir / "server.lock") {
  fs::create_directories(dir);
  fd_ = open(file_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error(file_.string() + ": cannot open the run directory's lock file (" + std::strerror(errno) + ")");
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    const std::string owner = owner_of(fd_);
    close(fd_);
    fd_ = -1;
    if (error != EWOULDBLOCK)
      throw Error(file_.string() + ": cannot lock the run directory (" + std::strerror(error) + ")");
    throw Error(dir.string() + " is in use by another fedengine server (PID " + (owner.empty() ? "unknown" : owner) +
                ", lock file " + file_.string() + "): stop that server first, or give this run another output.dir");
  }
  const std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd_, 0) != 0 || pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int error = errno;
    close(fd_);
    fd_ = -1;
    throw Error(file_.string() + ": cannot write the PID into the lock file (" + std::strerror(error) + ")");
  }
}

// The file stays: removing it could race a server that has just opened it and is about to lock.
RunLock::~RunLock() {
  if (fd_ >= 0) close(fd_);
}

}  // namespace fe::fed
