#include "fed/roster.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"

namespace fe::fed {
namespace {

// A participant is late after missing one heartbeat and gone after missing about three; the half
// interval of slack keeps a heartbeat that is merely a little slow from flapping the state.
constexpr double kLateIntervals = 1.5;
constexpr double kGoneIntervals = 3.0;

double seconds_between(Roster::Clock::time_point from, Roster::Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f s", seconds);
  return text;
}

}  // namespace

Roster::Roster(std::vector<std::string> participant_names, double heartbeat_s, std::function<Clock::time_point()> now)
    : heartbeat_s_(heartbeat_s), now_(std::move(now)), started_(now_()) {
  if (!(heartbeat_s > 0))
    throw Error("Roster: the heartbeat interval must be positive, got " + std::to_string(heartbeat_s));
  for (std::string& name : participant_names) records_.push_back({.name = std::move(name)});
}

Roster::Record* Roster::find(const std::string& name) {
  for (Record& r : records_)
    if (r.name == name) return &r;
  return nullptr;
}

const Roster::Record* Roster::find(const std::string& name) const { return const_cast<Roster*>(this)->find(name); }

void Roster::heard_from(const std::string& name, const std::string& peer, const std::map<std::string, double>& figures,
                        std::optional<ParticipantVolume> volume) {
  std::lock_guard lock(mutex_);
  Record* r = find(name);
  if (r == nullptr) return;
  for (const auto& [key, value] : figures) r->figures[key] = value;
  const auto training = figures.find("training");
  r->training = training != figures.end() && training->second == 1;
  if (training == figures.end()) r->figures.erase("training");  // it describes the last message only
  r->peer = peer;
  r->heard = true;
  r->left = r->gone = false;
  r->gone_why.clear();
  if (volume) {
    r->volume = *volume;
    r->joined = true;
  }
  r->last_heard = now_();  // read under the lock, so a snapshot never sees a message from its future
}

void Roster::mark_left(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (Record* r = find(name)) r->left = true;
}

void Roster::mark_gone(const std::string& name, std::string why) {
  std::lock_guard lock(mutex_);
  if (Record* r = find(name)) {
    r->gone = true;
    r->gone_why = std::move(why);
  }
}

void Roster::restore_volumes(std::map<std::string, ParticipantVolume> volumes) {
  std::lock_guard lock(mutex_);
  checkpointed_volumes_ = std::move(volumes);
}

bool Roster::silent_too_long(const Record& r, Clock::time_point now) const {
  return seconds_between(r.last_heard, now) >= kGoneIntervals * heartbeat_s_;
}

bool Roster::alive(const Record& r, Clock::time_point now) const {
  return r.joined && !r.left && !r.gone && !silent_too_long(r, now);
}

bool Roster::joined(const std::string& name) const {
  std::lock_guard lock(mutex_);
  const Record* r = find(name);
  return r != nullptr && r->joined;
}

bool Roster::alive(const std::string& name) const {
  std::lock_guard lock(mutex_);
  const Record* r = find(name);
  return r != nullptr && alive(*r, now_());
}

bool Roster::training(const std::string& name) const {
  std::lock_guard lock(mutex_);
  const Record* r = find(name);
  return r != nullptr && r->training;
}

std::vector<std::string> Roster::alive_names() const {
  std::lock_guard lock(mutex_);
  const Clock::time_point now = now_();
  std::vector<std::string> names;
  for (const Record& r : records_)
    if (alive(r, now)) names.push_back(r.name);
  std::sort(names.begin(), names.end());
  return names;
}

ParticipantVolume Roster::volume_of(const std::string& name) const {
  std::lock_guard lock(mutex_);
  if (const Record* r = find(name); r != nullptr && r->joined) return r->volume;
  const auto it = checkpointed_volumes_.find(name);
  return it == checkpointed_volumes_.end() ? ParticipantVolume{} : it->second;
}

std::string Roster::peer_of(const std::string& name) const {
  std::lock_guard lock(mutex_);
  const Record* r = find(name);
  return r != nullptr && r->joined ? r->peer : std::string();
}

std::map<std::string, std::string> Roster::joined_peers() const {
  std::lock_guard lock(mutex_);
  std::map<std::string, std::string> peers;
  for (const Record& r : records_)
    if (r.joined) peers[r.name] = r.peer;
  return peers;
}

ParticipantStatus Roster::status_of(const Record& r, Clock::time_point now) const {
  ParticipantStatus s{.name = r.name, .figures = r.figures};
  s.seconds_since_heard = seconds_between(r.heard ? r.last_heard : started_, now);
  const auto silent = [&](const char* state) {
    s.state = state;
    s.note = "silent for " + seconds_text(s.seconds_since_heard) + ", heartbeat every " + seconds_text(heartbeat_s_);
  };
  if (r.left) {
    s.state = "left";
    s.note = "said goodbye";
  } else if (r.gone) {
    s.state = "gone";
    s.note = r.gone_why;
  } else if (!r.heard) {
    s.state = "waiting";
  } else if (silent_too_long(r, now)) {
    silent("gone");
  } else if (s.seconds_since_heard > kLateIntervals * heartbeat_s_) {
    silent("late");
  } else {
    s.state = r.training ? "training" : "idle";
  }
  return s;
}

std::vector<ParticipantStatus> Roster::snapshot() const {
  std::lock_guard lock(mutex_);
  const Clock::time_point now = now_();
  std::vector<ParticipantStatus> statuses;
  for (const Record& r : records_) statuses.push_back(status_of(r, now));
  return statuses;
}

}  // namespace fe::fed
