#include "apps/output_dir.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include "core/error.h"

namespace fe::cli {

namespace fs = std::filesystem;

OutputDir claim_output_dir(const std::string& dir, const std::string& setting, const std::string& command,
                           const std::function<bool(const std::string&)>& is_own_entry, bool overwrite) {
  std::error_code error;
  const fs::file_status status = fs::status(dir, error);
  if (!fs::exists(status)) return OutputDir::new_or_empty;
  if (!fs::is_directory(status)) throw Error(setting + " " + dir + " is a file, not a directory");
  std::vector<std::string> own, other;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    (is_own_entry && is_own_entry(name) ? own : other).push_back(name);
  }
  if (other.empty()) return own.empty() ? OutputDir::new_or_empty : OutputDir::earlier_output;
  if (overwrite) return OutputDir::claimed_with_overwrite;
  std::sort(other.begin(), other.end());
  std::string names;
  for (size_t i = 0; i < std::min<size_t>(other.size(), 3); ++i) names += (i ? ", " : "") + other[i];
  if (other.size() > 3) names += " and " + std::to_string(other.size() - 3) + " more";
  const std::string what =
      is_own_entry ? "is not empty and not the output of an earlier `fedengine " + command + "`" : "is not empty";
  throw Error(setting + " " + dir + " " + what + " (it holds " + names +
              "): choose a new or empty directory, or pass --overwrite to write into it");
}

}  // namespace fe::cli
