// The bounds on one participant's result (fed/update_bounds.h): update norms against a plain
// double loop, the clip and refuse actions, the round's lower median, the examples a result may
// claim under each partition strategy, where a NaN is; and the config keys of server.max_update_norm
// and server.aggregation, refused with file:line and the key.
#include "fed/update_bounds.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "fed/federation_config.h"
#include "fed/roster.h"
#include "tests/test_util.h"

namespace fe::fed {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

NamedTensors params_of(std::vector<float> a, std::vector<float> b) {
  Tensor ta = Tensor::empty({static_cast<int64_t>(a.size())}, DType::f32);
  Tensor tb = Tensor::empty({static_cast<int64_t>(b.size())}, DType::f32);
  std::copy(a.begin(), a.end(), ta.as<float>());
  std::copy(b.begin(), b.end(), tb.as<float>());
  return {{"a", ta}, {"b", tb}};
}

// global + `scale` along a fixed direction whose norm is 1 (0.6, 0, 0.8).
ClientResult moved(const std::string& name, const NamedTensors& global, double scale) {
  const std::vector<double> direction = {0.6, 0, 0.8};
  NamedTensors params;
  size_t k = 0;
  for (const auto& [tensor, x] : global) {
    Tensor p = x.clone();
    for (int64_t i = 0; i < p.numel(); ++i) p.as<float>()[i] += static_cast<float>(scale * direction[k++]);
    params.emplace_back(tensor, p);
  }
  return {name, params, 1};
}

TEST(UpdateNorm, IsTheL2NormOfTheDifferenceOverAllTensors) {
  const NamedTensors global = params_of({1, 2}, {3});
  const NamedTensors params = params_of({1.5, 0}, {3.25});
  double sum = 0;  // by hand: (0.5)² + (−2)² + (0.25)²
  for (double d : {0.5, -2.0, 0.25}) sum += d * d;
  EXPECT_DOUBLE_EQ(update_norm(global, params), std::sqrt(sum));
  EXPECT_EQ(update_norm(global, global), 0.0);
}

TEST(BoundUpdateNorms, ClipsToTenTimesTheLowerMedianKeepingTheDirection) {
  const NamedTensors global = params_of({0.5, -1}, {2});
  std::vector<ClientResult> results = {moved("a", global, 1.0), moved("b", global, 2.0), moved("c", global, 3.0),
                                       moved("d", global, 1e6)};
  const NamedTensors before = results[3].params;
  const std::vector<NormVerdict> verdicts = bound_update_norms({}, global, results);
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].client_id, "d");
  EXPECT_FALSE(verdicts[0].refused);
  EXPECT_NEAR(verdicts[0].bound, 20.0, 1e-5);  // 10 × the 2nd smallest of 4 norms
  ASSERT_EQ(results.size(), 4u);
  EXPECT_NEAR(update_norm(global, results[3].params), 20.0, 1e-4);
  // The direction is kept: Δ is (0.6, 0, 0.8)·20.
  EXPECT_NEAR(results[3].params[0].second.as<float>()[0], 0.5 + 12.0, 1e-4);
  EXPECT_NEAR(results[3].params[0].second.as<float>()[1], -1.0, 1e-4);
  EXPECT_NEAR(results[3].params[1].second.as<float>()[0], 2.0 + 16.0, 1e-4);
  EXPECT_EQ(before[0].second.as<float>()[0], static_cast<float>(0.5 + 0.6e6));  // the original is untouched
  EXPECT_EQ(update_norm(global, results[0].params), update_norm(global, moved("a", global, 1.0).params));
}

TEST(BoundUpdateNorms, RefuseRemovesAndTwoResultsTakeTheSmallerNorm) {
  const NamedTensors global = params_of({0, 0}, {0});
  std::vector<ClientResult> results = {moved("honest", global, 1.0), moved("hostile", global, 1e6)};
  const std::vector<NormVerdict> verdicts =
      bound_update_norms({.action = NormBoundAction::refuse, .median_multiple = 3}, global, results);
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_TRUE(verdicts[0].refused);
  EXPECT_NEAR(verdicts[0].bound, 3.0, 1e-6);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].client_id, "honest");
}

TEST(BoundUpdateNorms, AbsoluteBoundOffAndAStandingRound) {
  const NamedTensors global = params_of({0, 0}, {0});
  std::vector<ClientResult> results = {moved("a", global, 1.0), moved("b", global, 4.0)};
  const auto verdicts = bound_update_norms({.absolute = 2}, global, results);
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].client_id, "b");
  EXPECT_NEAR(update_norm(global, results[1].params), 2.0, 1e-6);
  std::vector<ClientResult> far = {moved("a", global, 1e9)};
  EXPECT_TRUE(bound_update_norms({.action = NormBoundAction::off, .absolute = 1}, global, far).empty());
  // Nobody moved: the median is 0 and sets no bound.
  std::vector<ClientResult> standing = {moved("a", global, 0), moved("b", global, 0), moved("c", global, 5)};
  EXPECT_TRUE(bound_update_norms({}, global, standing).empty());
}

TEST(NonFiniteReason, NamesTheTensorAndElement) {
  NamedTensors t = params_of({1, 2}, {3});
  EXPECT_EQ(non_finite_reason(t), std::nullopt);
  t[1].second.as<float>()[0] = INFINITY;
  EXPECT_EQ(non_finite_reason(t), "tensor 'b' element 0 is inf");
  t[0].second.as<float>()[1] = NAN;
  EXPECT_EQ(non_finite_reason(t), "tensor 'a' element 1 is nan");
}

class ResultBoundsConfig : public ::testing::Test {
 protected:
  FederationConfig read(const std::string& server, const std::string& top = "",
                        const std::string& participants =
                            "  - {name: a, data: {train: a.jsonl}}\n"
                            "  - {name: b, data: {train: b.jsonl}}\n") {
    std::filesystem::create_directories(dir_.path("base"));
    std::ofstream(dir_.path("f.yaml")) << "model: base\ntokenizer: base\noutput: {dir: out}\n"
                                       << "train: {steps: 3, micro_batch_size: 4, grad_accum_steps: 2}\n"
                                       << top << "server:\n  rounds: 4\n"
                                       << server << "participants:\n"
                                       << participants;
    return read_federation_config(dir_.path("f.yaml"));
  }
  std::string error_of(const std::string& server, const std::string& top = "") {
    try {
      read(server, top);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }
  test::TempDir dir_;
};

// `all`: train.steps global batches (3 steps × 2 micro-batches × 4 rows × 2 ranks); a partition
// strategy: the share the fit message assigns.
TEST_F(ResultBoundsConfig, ExamplesAResultMayClaim) {
  const FederationConfig config =
      read("", "",
           "  - {name: a, data: {train: a.jsonl}, nodes: [{host: localhost, ranks: 2}]}\n"
           "  - {name: b, data: {train: b.jsonl}, partition: {strategy: max_data_volume}}\n");
  Roster roster({"a", "b"}, 1.0);
  roster.heard_from("a", "peer-a", {}, ParticipantVolume{.examples = 10});
  roster.heard_from("b", "peer-b", {}, ParticipantVolume{.examples = 30});
  EXPECT_EQ(max_result_examples(config, roster, "a"), 3 * 2 * 4 * 2);
  EXPECT_EQ(max_result_examples(config, roster, "b"), 30 / 4 + 1);  // ceil(max nⱼ / rounds)
  EXPECT_EQ(round_share(config, roster, "b"), 30 / 4 + 1);
}

TEST_F(ResultBoundsConfig, DefaultsAndChoices) {
  const FederationConfig defaults = read("");
  EXPECT_EQ(defaults.server.max_update_norm.action, NormBoundAction::clip);
  EXPECT_EQ(defaults.server.max_update_norm.median_multiple, 10);
  EXPECT_EQ(defaults.server.aggregation.rule, RobustRule::mean);
  const FederationConfig chosen = read(
      "  max_update_norm: {action: refuse, absolute: 0.5}\n"
      "  aggregation: {rule: krum, byzantine: 0, selected: 2}\n");
  EXPECT_EQ(chosen.server.max_update_norm.action, NormBoundAction::refuse);
  EXPECT_EQ(chosen.server.max_update_norm.absolute, 0.5);
  EXPECT_EQ(chosen.server.aggregation.rule, RobustRule::krum);
  EXPECT_EQ(chosen.server.aggregation.selected, 2);
  EXPECT_EQ(read("  aggregation: {rule: trimmed_mean, trim_fraction: 0.1}\n").server.aggregation.trim_fraction, 0.1);
}

TEST_F(ResultBoundsConfig, MistakesNameTheFileLineAndKey) {
  EXPECT_THAT(error_of("  max_update_norm: {action: shrink}\n"),
              AllOf(HasSubstr("f.yaml:7:"), HasSubstr("server.max_update_norm.action")));
  EXPECT_THAT(error_of("  max_update_norm: {absolute: 1, median_multiple: 5}\n"), HasSubstr("set either absolute"));
  EXPECT_THAT(error_of("  max_update_norm: {median_multiple: 0.5}\n"), HasSubstr("median_multiple"));
  EXPECT_THAT(error_of("  max_update_norm: {median_multple: 5}\n"), HasSubstr("did you mean \"median_multiple\""));
  EXPECT_THAT(error_of("  aggregation: {rule: krum, trim_fraction: 0.1}\n"),
              HasSubstr("trim_fraction: applies to rule: trimmed_mean"));
  EXPECT_THAT(error_of("  aggregation: {rule: trimmed_mean, trim_fraction: 0.5}\n"), HasSubstr("trim_fraction"));
  EXPECT_THAT(error_of("  aggregation: {rule: krum, selected: 3}\n"), HasSubstr("exceeds the 2 participants"));
  EXPECT_THAT(error_of("  aggregation: {rule: mediam}\n"), HasSubstr("server.aggregation.rule"));
  EXPECT_THAT(error_of("  aggregation: {rule: median}\n", "privacy: {mode: server_fixed}\n"),
              HasSubstr("calibrates its noise to the mean"));
}

}  // namespace
}  // namespace fe::fed
