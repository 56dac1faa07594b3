// tests/server_test_util.h — for tests that run a Server in-process and speak to it as
// participants would: a log the test reads while the server writes it, and waiting for a message.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <sstream>
#include <string>

#include "fed/protocol.h"
#include "fed/transport.h"

namespace fe::test {

// A thread-safe log the server writes to while the test reads it.
class SharedLog : public std::stringbuf {
 public:
  std::string text() {
    std::lock_guard lock(mutex_);
    return str();
  }

 protected:
  int sync() override { return 0; }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mutex_);
    return std::stringbuf::xsputn(s, n);
  }
  int_type overflow(int_type c) override {
    std::lock_guard lock(mutex_);
    return std::stringbuf::overflow(c);
  }

 private:
  std::recursive_mutex mutex_;  // xsputn calls overflow
};

// The next message of `type` on `socket` (others are skipped), within about 10 s.
inline fed::Message expect_message(fed::ClientSocket& socket, fed::MessageType type) {
  for (int i = 0; i < 100; ++i)
    if (auto bytes = socket.receive(std::chrono::milliseconds(100))) {
      fed::Message m = fed::decode(*bytes);
      if (m.type == type) return m;
    }
  ADD_FAILURE() << "no " << fed::message_type_name(type) << " message arrived";
  return {};
}

}  // namespace fe::test
