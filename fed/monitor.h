// fed/monitor.h — the server's live view of its participants, and the ways to show it.
//
//   Roster roster(names, heartbeat_s);                // the server thread writes (fed/roster.h) ...
//   Monitor monitor(roster, rounds);
//   monitor.set_round(3);
//   MonitorEndpoint http(monitor, "127.0.0.1:0");     // ... while HTTP threads read snapshots
//   std::cout << render_table(monitor.snapshot());
//
// The participants' states (waiting, idle, training, late, gone, left) and their merged figures
// come from the Roster; the Monitor adds the round and the uptime (from its creation).
//
// The renderers know these figures: step, loss, tokens_per_second, training, and the resource
// figures of fed/resources.h (cpu_percent, process_cpu_percent, ram_used_bytes, ram_total_bytes,
// gpu_count, gpu<k>_index, gpu<k>_memory_used_bytes, ...); render_json and render_prometheus
// carry every other figure too.
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

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fed/roster.h"

namespace fe::fed {

struct FederationStatus {
  int64_t round = 0, rounds = 0;
  double uptime_s = 0;
  std::vector<ParticipantStatus> participants;
};

class Monitor {
 public:
  // The roster must outlive the Monitor.
  Monitor(const Roster& roster, int64_t rounds);
  void set_round(int64_t round);
  FederationStatus snapshot() const;

 private:
  const Roster& roster_;
  const int64_t rounds_;
  const Roster::Clock::time_point started_;
  std::atomic<int64_t> round_ = 0;
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
