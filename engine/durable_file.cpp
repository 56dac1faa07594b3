#include "engine/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "kernels/view.h"

namespace fe {

void write_file_whole(const std::string& path, const std::string& text) {
  const std::string staging = path + ".tmp";
  std::ofstream out(staging, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) throw Error(staging + ": cannot write: " + std::strerror(errno));
  out.close();
  std::filesystem::rename(staging, path);
}

void sync_to_disk(const std::string& path, bool contents) {
  namespace fs = std::filesystem;
  if (contents && fs::is_directory(path))
    for (const fs::directory_entry& entry : fs::directory_iterator(path)) sync_to_disk(entry.path().string());
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const bool synced = fd >= 0 && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!synced) throw Error(path + ": cannot flush to disk: " + std::strerror(errno));
}

}  // namespace fe
