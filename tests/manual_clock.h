// tests/manual_clock.h — a steady clock that moves only when a test advances it, for the roster
// and monitor tests that check states over time.
#pragma once

#include <chrono>
#include <functional>

namespace fe::test {

class ManualClock {
 public:
  using Clock = std::chrono::steady_clock;
  std::function<Clock::time_point()> function() {
    return [this] { return now_; };
  }
  void advance(double seconds) {
    now_ += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  }

 private:
  Clock::time_point now_{};
};

}  // namespace fe::test
