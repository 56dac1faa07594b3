// fed/monitor.h — the server's live view of its participants, and the ways to show it.
//
//   Monitor monitor(names, heartbeat_s, rounds);    // the server thread writes ...
//   monitor.heard_from("alice", message.metrics);    //   on every message from alice
//   monitor.set_round(3);
//   MonitorEndpoint http(monitor, "127.0.0.1:0");    // ... while HTTP threads read snapshots
//   std::cout << render_table(monitor.snapshot());
//
// States, computed from the clock when a snapshot is taken:
//   waiting   never heard from
//   idle      heard from within 1.5 heartbeat intervals, not training
//   training  the same, and its last message carried the figure training = 1
//   late      silent for more than 1.5 intervals: one heartbeat missed, so a stalled or vanished
//             participant shows within about one interval of its last expected heartbeat
//   gone      silent for more than 3 intervals, or marked gone (e.g. its process exited); sticky
//             until it is heard from again; `note` says why
//   left      said goodbye (sticky until heard from again)
// A never-heard participant's seconds_since_heard counts from the Monitor's creation.
//
// Figures are the flat metrics of a participant's messages, merged (a later value of a key
// replaces the earlier one), except "training", which only the last message sets. The renderers
// know these keys: step, loss, tokens_per_second, training, and the resource figures of
// fed/resources.h (cpu_percent, process_cpu_percent, ram_used_bytes, ram_total_bytes, gpu_count,
// gpu<k>_index, gpu<k>_memory_used_bytes, ...); render_json and render_prometheus carry every
// other figure too.
//
// Renderers (deterministic functions of a FederationStatus):
//   render_table       fixed-width text for a terminal: a header line with round r/R and uptime,
//                      then one row per participant; "-" for a figure it did not report. CPU % is
//                      the participant process's (process_cpu_percent); RAM is the machine's;
//                      GPU is the sum of memory used/total over its GPUs and their mean utilisation.
//   render_json        {"round", "rounds", "uptime_s", "participants": [{"name", "state",
//                      "seconds_since_heard", "note", "figures": {...}}]}; NaN figures as null.
//   render_prometheus  text exposition format 0.0.4, every metric a gauge named fedengine_*:
//                      fedengine_round, fedengine_rounds, fedengine_uptime_seconds, and per
//                      participant (label participant="name") fedengine_participant_up (1 unless
//                      gone or left), fedengine_participant_seconds_since_heard,
//                      fedengine_participant_state (one series per state, label state, 1 for the
//                      current one) and fedengine_<figure> for each figure; GPU figures
//                      gpu<k>_<what> become fedengine_gpu_<what> with a label gpu="<NVML index>"
//                      (gpu<k>_index; k without it).
//                      Characters outside [a-zA-Z0-9_] in a figure's name become '_'; a figure
//                      whose name would clash with one of the fixed metrics is left out.
//
// MonitorEndpoint serves a Monitor over HTTP from its own thread until destroyed:
//   GET /metrics  render_prometheus (Content-Type text/plain; version=0.0.4)
//   GET /status   render_json
//   GET /         a short index of the two; anything else is 404.
// The Monitor must outlive its endpoint. An address that cannot be bound throws fe::Error naming it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace fe::fed {

struct ParticipantStatus {
  std::string name;
  std::string state;  // waiting, idle, training, late, gone, left
  double seconds_since_heard = 0;
  std::map<std::string, double> figures;
  std::string note;  // why it is late, gone or left; empty otherwise
};

struct FederationStatus {
  int64_t round = 0, rounds = 0;
  double uptime_s = 0;
  std::vector<ParticipantStatus> participants;
};

class Monitor {
 public:
  using Clock = std::chrono::steady_clock;
  // Tests pass a clock they move by hand.
  Monitor(std::vector<std::string> participant_names, double heartbeat_s, int64_t rounds,
          std::function<Clock::time_point()> now = Clock::now);

  // A message from a participant: merges its figures, restarts its silence clock and clears a
  // gone or left mark. Names not given to the constructor are ignored (the server refuses them).
  void heard_from(const std::string& name, const std::map<std::string, double>& figures);
  void mark_left(const std::string& name);
  void mark_gone(const std::string& name, std::string why);
  void set_round(int64_t round);

  FederationStatus snapshot() const;

 private:
  struct Participant {
    std::string name;
    std::map<std::string, double> figures;
    bool heard = false, training = false, left = false, gone = false;
    std::string gone_why;
    Clock::time_point last_heard;
  };
  Participant* find(const std::string& name);
  ParticipantStatus status_of(const Participant& p, Clock::time_point now) const;

  const double heartbeat_s_;
  const int64_t rounds_;
  const std::function<Clock::time_point()> now_;
  const Clock::time_point started_;
  mutable std::mutex mutex_;
  int64_t round_ = 0;
  std::vector<Participant> participants_;
};

std::string render_table(const FederationStatus& status);
std::string render_json(const FederationStatus& status);
std::string render_prometheus(const FederationStatus& status);

class MonitorEndpoint {
 public:
  // address: "host:port" ("[::1]:port" for IPv6); port 0 picks a free one.
  MonitorEndpoint(const Monitor& monitor, const std::string& address);
  ~MonitorEndpoint();
  MonitorEndpoint(const MonitorEndpoint&) = delete;
  MonitorEndpoint& operator=(const MonitorEndpoint&) = delete;

  int port() const;

 private:
  struct Impl;  // keeps httplib out of this header
  std::unique_ptr<Impl> impl_;
};

}  // namespace fe::fed
