// The participant roster: states over a hand-moved clock (plus one run on the real clock), the
// alive rule the server samples by (gone after three missed heartbeats, left, marked gone), and
// volumes from joins and from a checkpoint.
#include "fed/roster.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "kernels/view.h"
#include "tests/manual_clock.h"

namespace fe::fed {
namespace {

using test::ManualClock;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const ParticipantStatus& participant(const std::vector<ParticipantStatus>& statuses, const std::string& name) {
  for (const ParticipantStatus& p : statuses)
    if (p.name == name) return p;
  throw std::runtime_error("no participant " + name);
}

std::string state_of(const Roster& roster, const std::string& name) {
  return participant(roster.snapshot(), name).state;
}

const ParticipantVolume kVolume{.examples = 100, .free_memory_bytes = 2e9};

// ---- states ---------------------------------------------------------------------------------------

TEST(RosterStates, WaitingThenIdleThenLateThenGoneUntilHeardFromAgain) {
  ManualClock clock;
  Roster roster({"alice", "bob"}, 1.0, clock.function());
  EXPECT_EQ(state_of(roster, "alice"), "waiting");
  clock.advance(10);
  EXPECT_EQ(state_of(roster, "alice"), "waiting");  // never heard: not late, however long
  EXPECT_DOUBLE_EQ(participant(roster.snapshot(), "alice").seconds_since_heard, 10);

  roster.heard_from("alice", "peer-a", {});
  EXPECT_EQ(state_of(roster, "alice"), "idle");
  clock.advance(1.4);
  EXPECT_EQ(state_of(roster, "alice"), "idle");
  clock.advance(0.2);  // 1.6 intervals: one heartbeat missed
  const ParticipantStatus late = participant(roster.snapshot(), "alice");
  EXPECT_EQ(late.state, "late");
  EXPECT_NEAR(late.seconds_since_heard, 1.6, 1e-9);
  EXPECT_THAT(late.note, HasSubstr("silent for 1.60 s"));
  clock.advance(1.5);  // 3.1 intervals
  const ParticipantStatus gone = participant(roster.snapshot(), "alice");
  EXPECT_EQ(gone.state, "gone");
  EXPECT_THAT(gone.note, HasSubstr("silent for 3.10 s"));

  roster.heard_from("alice", "peer-a", {});
  EXPECT_EQ(state_of(roster, "alice"), "idle");
  EXPECT_EQ(participant(roster.snapshot(), "alice").note, "");
  EXPECT_EQ(state_of(roster, "bob"), "waiting");
}

TEST(RosterStates, TrainingFollowsTheLastMessageAndFiguresMerge) {
  ManualClock clock;
  Roster roster({"alice"}, 1.0, clock.function());
  roster.heard_from("alice", "peer-a", {{"training", 1}, {"step", 3}, {"loss", 2.5}});
  EXPECT_EQ(state_of(roster, "alice"), "training");
  roster.heard_from("alice", "peer-a", {{"step", 4}});
  const ParticipantStatus p = participant(roster.snapshot(), "alice");
  EXPECT_EQ(p.state, "idle");
  const std::map<std::string, double> merged = {{"step", 4}, {"loss", 2.5}};
  EXPECT_EQ(p.figures, merged);
  roster.heard_from("alice", "peer-a", {{"training", 0}});
  EXPECT_EQ(state_of(roster, "alice"), "idle");
}

TEST(RosterStates, MarkGoneIsStickyUntilHeardFrom) {
  ManualClock clock;
  Roster roster({"alice"}, 1.0, clock.function());
  roster.heard_from("alice", "peer-a", {{"training", 1}}, kVolume);
  roster.mark_gone("alice", "its process exited with status 3");
  ParticipantStatus p = participant(roster.snapshot(), "alice");
  EXPECT_EQ(p.state, "gone");
  EXPECT_EQ(p.note, "its process exited with status 3");
  EXPECT_FALSE(roster.alive("alice"));
  clock.advance(0.1);
  EXPECT_EQ(state_of(roster, "alice"), "gone");
  roster.heard_from("alice", "peer-a", {{"training", 1}});
  p = participant(roster.snapshot(), "alice");
  EXPECT_EQ(p.state, "training");
  EXPECT_EQ(p.note, "");
  EXPECT_TRUE(roster.alive("alice"));
}

TEST(RosterStates, MarkLeftIsStickyUntilHeardFrom) {
  ManualClock clock;
  Roster roster({"alice"}, 1.0, clock.function());
  roster.heard_from("alice", "peer-a", {}, kVolume);
  roster.mark_left("alice");
  EXPECT_EQ(state_of(roster, "alice"), "left");
  EXPECT_FALSE(roster.alive("alice"));
  clock.advance(100);
  EXPECT_EQ(state_of(roster, "alice"), "left");  // not gone: it said goodbye
  roster.heard_from("alice", "peer-a", {});
  EXPECT_EQ(state_of(roster, "alice"), "idle");
  EXPECT_TRUE(roster.alive("alice"));
}

TEST(RosterStates, IgnoresUnknownNames) {
  Roster roster({"alice"}, 1.0);
  roster.heard_from("mallory", "peer-m", {{"loss", 1}}, kVolume);
  roster.mark_gone("mallory", "whatever");
  roster.mark_left("mallory");
  ASSERT_EQ(roster.snapshot().size(), 1u);
  EXPECT_EQ(roster.snapshot()[0].name, "alice");
  EXPECT_FALSE(roster.alive("mallory"));
  EXPECT_FALSE(roster.joined("mallory"));
  EXPECT_EQ(roster.volume_of("mallory").examples, 0);
}

TEST(RosterStates, RefusesANonPositiveHeartbeat) {
  EXPECT_THROW(Roster({"alice"}, 0.0), Error);
  EXPECT_THROW(Roster({"alice"}, -1.0), Error);
}

// The real steady clock with a 0.2 s heartbeat; waits are lower bounds, so a loaded machine only
// makes the participant look later, which the checks allow.
TEST(RosterStates, FlagsASilentParticipantOnTheRealClock) {
  Roster roster({"alice"}, 0.2);
  roster.heard_from("alice", "peer-a", {}, kVolume);
  const auto heard = std::chrono::steady_clock::now();
  std::this_thread::sleep_until(heard + std::chrono::milliseconds(350));
  EXPECT_THAT(state_of(roster, "alice"), ::testing::AnyOf("late", "gone"));
  std::this_thread::sleep_until(heard + std::chrono::milliseconds(700));
  EXPECT_EQ(state_of(roster, "alice"), "gone");
  EXPECT_FALSE(roster.alive("alice"));
}

// ---- alive: what the server samples from ----------------------------------------------------------

TEST(RosterAlive, OnlyAJoinedParticipantHeardWithinThreeIntervalsIsAlive) {
  ManualClock clock;
  Roster roster({"alice", "bob", "carol"}, 2.0, clock.function());
  EXPECT_TRUE(roster.alive_names().empty());
  roster.heard_from("carol", "peer-c", {}, kVolume);
  roster.heard_from("alice", "peer-a", {}, kVolume);
  roster.heard_from("bob", "peer-b", {{"train_loss", 1}});           // a result without a join: not joined
  EXPECT_THAT(roster.alive_names(), ElementsAre("alice", "carol"));  // in name order
  EXPECT_FALSE(roster.joined("bob"));
  EXPECT_EQ(roster.peer_of("bob"), "");

  clock.advance(5.9);  // 2.95 intervals
  roster.heard_from("carol", "peer-c", {});
  EXPECT_TRUE(roster.alive("alice"));
  EXPECT_EQ(state_of(roster, "alice"), "late");
  clock.advance(0.1);  // alice: exactly 3 intervals, the gone rule's bound
  EXPECT_FALSE(roster.alive("alice"));
  EXPECT_EQ(state_of(roster, "alice"), "gone");
  EXPECT_THAT(roster.alive_names(), ElementsAre("carol"));

  roster.heard_from("alice", "peer-a2", {});  // a heartbeat brings it back, through its new peer
  EXPECT_TRUE(roster.alive("alice"));
  EXPECT_EQ(roster.peer_of("alice"), "peer-a2");
  const std::map<std::string, std::string> peers = {{"alice", "peer-a2"}, {"carol", "peer-c"}};
  EXPECT_EQ(roster.joined_peers(), peers);
}

// ---- volumes ------------------------------------------------------------------------------------

TEST(RosterVolumes, AJoinSetsTheVolumeAndLaterMessagesWithoutOneKeepIt) {
  Roster roster({"alice"}, 1.0);
  roster.heard_from("alice", "peer-a", {}, kVolume);
  roster.heard_from("alice", "peer-a", {{"free_memory_bytes", 1}});
  EXPECT_EQ(roster.volume_of("alice").examples, 100);
  EXPECT_EQ(roster.volume_of("alice").free_memory_bytes, 2e9);
  roster.heard_from("alice", "peer-a", {}, ParticipantVolume{.examples = 30, .free_memory_bytes = 5});
  EXPECT_EQ(roster.volume_of("alice").examples, 30);
  EXPECT_EQ(roster.volume_of("alice").free_memory_bytes, 5);
}

TEST(RosterVolumes, CheckpointedVolumesStandInUntilTheParticipantJoins) {
  Roster roster({"alice", "bob"}, 1.0);
  roster.restore_volumes({{"alice", {.examples = 500, .free_memory_bytes = 1e9}}, {"bob", {.examples = 70}}});
  EXPECT_EQ(roster.volume_of("alice").examples, 500);
  EXPECT_EQ(roster.volume_of("bob").examples, 70);
  roster.heard_from("bob", "peer-b", {});  // heard, not joined: the checkpoint still speaks for it
  EXPECT_EQ(roster.volume_of("bob").examples, 70);
  roster.heard_from("alice", "peer-a", {}, kVolume);
  EXPECT_EQ(roster.volume_of("alice").examples, 100);
  EXPECT_EQ(roster.volume_of("alice").free_memory_bytes, 2e9);
  roster.mark_left("alice");  // a participant that left keeps the volume it joined with
  EXPECT_EQ(roster.volume_of("alice").examples, 100);
}

}  // namespace
}  // namespace fe::fed
