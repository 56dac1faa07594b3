// engine/metrics_log.h — metrics as JSON Lines: one object per line, flushed as it is written,
// so a crash loses nothing already measured. Used by training runs and the federation server.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"

namespace fe {

class MetricsLog {
 public:
  // append: continue an existing file (a resumed run); otherwise start it afresh.
  explicit MetricsLog(const std::string& path, bool append = false)
      : out_(path, append ? std::ios::app : std::ios::trunc) {
    if (!out_) throw Error(path + ": cannot open the metrics file for writing");
  }
  void write(const nlohmann::json& record) { out_ << record.dump() << std::endl; }

 private:
  std::ofstream out_;
};

}  // namespace fe
