// fed/roster.h — the server's one record of its participants: who is there, how to reach them,
// what they last reported, and whether they count as present.
//
//   Roster roster(names, heartbeat_s);
//   roster.heard_from("alice", peer, message.metrics, volume);  // on every message from alice
//   roster.alive("alice");                                      // the server samples the alive
//   roster.snapshot();                                          // the monitor shows states
//
// The server thread writes; the monitor's HTTP threads read snapshots at the same time, so every
// member takes one lock.
//
// A participant has joined once a message told its volume (a join, or the first heartbeat the
// server heard from it); a result alone does not make it join. It is alive while it has joined,
// has neither left nor been marked gone, and was heard from within the gone interval.
//
// States, computed from the clock when a snapshot is taken:
//   waiting   never heard from
//   idle      heard from within 1.5 heartbeat intervals, not training
//   training  the same, and its last message carried the figure training = 1
//   late      silent for more than 1.5 intervals: one heartbeat missed, so a stalled or vanished
//             participant shows within about one interval of its last expected heartbeat
//   gone      silent for 3 intervals or more, or marked gone (e.g. its process exited); sticky
//             until it is heard from again; `note` says why. A gone participant is not alive.
//   left      said goodbye (sticky until heard from again)
// A never-heard participant's seconds_since_heard counts from the Roster's creation.
//
// Figures are the flat metrics of a participant's messages, merged (a later value of a key
// replaces the earlier one), except "training", which only the last message sets.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "fed/partition.h"

namespace fe::fed {

struct ParticipantStatus {
  std::string name;
  std::string state;  // waiting, idle, training, late, gone, left
  double seconds_since_heard = 0;
  std::map<std::string, double> figures;
  std::string note;  // why it is late, gone or left; empty otherwise
};

class Roster {
 public:
  using Clock = std::chrono::steady_clock;
  // Only these names are ever recorded; messages naming others are ignored (the server refuses
  // them). Tests pass a clock they move by hand. heartbeat_s must be positive.
  Roster(std::vector<std::string> participant_names, double heartbeat_s,
         std::function<Clock::time_point()> now = Clock::now);

  // A message from a participant through `peer` (its ZeroMQ routing id): merges its figures,
  // restarts its silence clock and clears a gone or left mark. `volume`, when given, replaces the
  // one it joined with.
  void heard_from(const std::string& name, const std::string& peer, const std::map<std::string, double>& figures,
                  std::optional<ParticipantVolume> volume = std::nullopt);
  void mark_left(const std::string& name);
  void mark_gone(const std::string& name, std::string why);
  // Volumes a resumed run's checkpoint recorded: volume_of reports them for participants that
  // have not joined this run yet.
  void restore_volumes(std::map<std::string, ParticipantVolume> volumes);

  bool joined(const std::string& name) const;
  bool alive(const std::string& name) const;
  bool training(const std::string& name) const;  // its last message carried training = 1
  std::vector<std::string> alive_names() const;  // in name order
  // As the participant reported it at its last join, or as the checkpoint knew it; {} otherwise.
  ParticipantVolume volume_of(const std::string& name) const;
  std::string peer_of(const std::string& name) const;       // "" before it joined
  std::map<std::string, std::string> joined_peers() const;  // name → routing id

  std::vector<ParticipantStatus> snapshot() const;  // in the order of the constructor's names
  Clock::time_point now() const { return now_(); }
  double heartbeat_s() const { return heartbeat_s_; }

 private:
  struct Record {
    std::string name;
    std::string peer;
    std::map<std::string, double> figures;
    bool heard = false, joined = false, training = false, left = false, gone = false;
    std::string gone_why;
    Clock::time_point last_heard;
    ParticipantVolume volume;
  };
  Record* find(const std::string& name);
  const Record* find(const std::string& name) const;
  bool silent_too_long(const Record& r, Clock::time_point now) const;
  bool alive(const Record& r, Clock::time_point now) const;
  ParticipantStatus status_of(const Record& r, Clock::time_point now) const;

  const double heartbeat_s_;
  const std::function<Clock::time_point()> now_;
  const Clock::time_point started_;
  mutable std::mutex mutex_;
  std::vector<Record> records_;
  std::map<std::string, ParticipantVolume> checkpointed_volumes_;
};

}  // namespace fe::fed
