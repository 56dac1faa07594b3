// The robust aggregation rules (fed/robust_aggregation.h) against an independent numpy
// implementation (tests/reference/robust_reference.py, float64): the coordinate-wise median, the
// trimmed mean and Krum's choice; then the wrapper: the strategies' optimizers apply the robust
// aggregate as they would the mean, and a hostile result does not move it.
//
// Without numpy the reference comparison skips, unless FE_REQUIRE_TORCH=1 (CI sets it) makes that
// a failure.
#include "fed/robust_aggregation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/reference_env.h"
#include "tests/test_util.h"

namespace fe::fed {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

const char* kPython = "/usr/bin/python3";

bool numpy_available() {
  static const bool available = std::system((std::string(kPython) + " -c 'import numpy' >/dev/null 2>&1").c_str()) == 0;
  return available;
}

const std::vector<std::pair<std::string, Shape>> kParams = {{"lora_A", {3, 4}}, {"lora_B", {5}}};

NamedTensors random_params(Rng& rng, double scale) {
  NamedTensors params;
  for (const auto& [name, shape] : kParams) params.emplace_back(name, test::random_tensor(shape, rng, scale));
  return params;
}

// n results around a common point, the last `hostile` of them far off in one direction.
std::vector<ClientResult> round_of(Rng& rng, const NamedTensors& global, int n, int hostile) {
  std::vector<ClientResult> results;
  for (int i = 0; i < n; ++i) {
    NamedTensors params = random_params(rng, 0.1);
    for (size_t t = 0; t < params.size(); ++t)
      for (int64_t e = 0; e < params[t].second.numel(); ++e)
        params[t].second.as<double>()[e] += global[t].second.as<double>()[e] + (i >= n - hostile ? 50.0 : 0.0);
    results.push_back({test::numbered("p", i), params, 10 + i});
  }
  return results;
}

std::vector<double> flat(const NamedTensors& params) {
  std::vector<double> values;
  for (const auto& [name, x] : params)
    for (int64_t i = 0; i < x.numel(); ++i) values.push_back(test::element(x, i));
  return values;
}

std::vector<double> flat(const std::vector<Tensor>& tensors) {
  std::vector<double> values;
  for (const Tensor& x : tensors)
    for (int64_t i = 0; i < x.numel(); ++i) values.push_back(test::element(x, i));
  return values;
}

json run_reference(const std::vector<ClientResult>& results, double trim_fraction, int64_t byzantine,
                   const std::vector<int64_t>& selected) {
  json input = {
      {"results", json::array()}, {"trim_fraction", trim_fraction}, {"byzantine", byzantine}, {"selected", selected}};
  for (const ClientResult& r : results) input["results"].push_back(flat(r.params));
  test::TempDir dir;
  std::ofstream(dir.path("in.json")) << input.dump();
  const std::string command = std::string(kPython) + " " FE_SOURCE_DIR "/tests/reference/robust_reference.py " +
                              dir.path("in.json") + " " + dir.path("out.json") + " > " + dir.path("log") + " 2>&1";
  if (std::system(command.c_str()) != 0) {
    std::ifstream log(dir.path("log"));
    ADD_FAILURE() << "the reference script failed:\n" << std::string(std::istreambuf_iterator<char>(log), {});
    return {};
  }
  return json::parse(std::ifstream(dir.path("out.json")));
}

void expect_close(const std::vector<double>& actual, const std::vector<double>& expected, const char* what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i)
    EXPECT_NEAR(actual[i], expected[i], 1e-12 * std::max(1.0, std::abs(expected[i]))) << what << " element " << i;
}

struct Case {
  int n, hostile;
  double trim_fraction;
  int64_t byzantine;
};

class AgainstNumpy : public ::testing::TestWithParam<Case> {};

// Odd and even counts (the median's two definitions), trims that drop 0, 1 and 2 values.
TEST_P(AgainstNumpy, MedianTrimmedMeanAndKrumMatchTheReference) {
  FE_NEED_OR_SKIP(numpy_available(), std::string(kPython) + " cannot import numpy", "FE_REQUIRE_TORCH",
                  "Debian: python3-numpy, scripts/setup.sh");
  const Case c = GetParam();
  Rng rng(7 + static_cast<uint64_t>(c.n));
  const NamedTensors global = random_params(rng, 1.0);
  const std::vector<ClientResult> results = round_of(rng, global, c.n, c.hostile);
  const std::vector<int64_t> selected = {1, 2, c.n - 1};
  const json expected = run_reference(results, c.trim_fraction, c.byzantine, selected);
  ASSERT_FALSE(expected.is_null());

  expect_close(flat(coordinate_median(global, results)), expected["median"].get<std::vector<double>>(), "median");
  expect_close(flat(trimmed_mean(global, results, c.trim_fraction)),
               expected["trimmed_mean"].get<std::vector<double>>(), "trimmed mean");
  for (int64_t m : selected) {
    const std::vector<size_t> chosen = krum_select(global, results, c.byzantine, m);
    EXPECT_EQ(chosen, expected["krum"][std::to_string(m)].get<std::vector<size_t>>()) << "m = " << m;
    if (m > c.n - c.hostile) continue;  // more than the honest results: some hostile must be in
    for (size_t i : chosen) EXPECT_LT(i, static_cast<size_t>(c.n - c.hostile)) << "Krum chose a hostile result";
  }
}

INSTANTIATE_TEST_SUITE_P(Rules, AgainstNumpy,
                         ::testing::Values(Case{7, 1, 0.2, 1}, Case{6, 1, 0.25, 1}, Case{9, 2, 0.3, 2},
                                           Case{4, 0, 0.0, 0}));

// A plain loop, written apart from the implementation: a hostile result 500 units away moves the
// median and the trimmed mean by no more than the honest spread.
TEST(RobustRules, AHostileMinorityDoesNotMoveTheAggregate) {
  Rng rng(3);
  const NamedTensors global = random_params(rng, 1.0);
  std::vector<ClientResult> results = round_of(rng, global, 5, 1);
  for (auto& [name, x] : results.back().params)
    for (int64_t i = 0; i < x.numel(); ++i) x.as<double>()[i] *= 10;
  const std::vector<double> g = flat(global);
  for (const std::vector<double>& aggregate :
       {flat(coordinate_median(global, results)), flat(trimmed_mean(global, results, 0.2))})
    for (size_t i = 0; i < g.size(); ++i) EXPECT_LT(std::abs(aggregate[i] - g[i]), 0.5) << i;
}

TEST(RobustRules, KrumWithOneResultTakesIt) {
  Rng rng(4);
  const NamedTensors global = random_params(rng, 1.0);
  const std::vector<ClientResult> one = round_of(rng, global, 1, 0);
  EXPECT_EQ(krum_select(global, one, 1, 3), std::vector<size_t>{0});
}

TEST(RobustRules, MismatchedResultsAreRefusedNamingTheClient) {
  Rng rng(5);
  const NamedTensors global = random_params(rng, 1.0);
  std::vector<ClientResult> results = round_of(rng, global, 3, 0);
  results[1].params.pop_back();
  EXPECT_THAT([&] { coordinate_median(global, results); }, ThrowsMessage<Error>(HasSubstr("client 'p1'")));
  EXPECT_THAT([&] { krum_select(global, {}, 1, 1); }, ThrowsMessage<Error>(HasSubstr("no client results")));
}

// The wrapped optimizer sees x̂ as the single result it aggregates: RobustStrategy(fedadam) on n
// results equals fedadam on x̂ alone, round after round, bit for bit (state included).
TEST(RobustStrategy, TheOptimizerAppliesTheRobustAggregate) {
  for (const char* name : {"fedavg", "fedprox", "fedadagrad", "fedadam", "fedyogi"}) {
    StrategyOptions options{.name = name, .eta = 0.05};
    RobustStrategy robust(make_strategy(options), {.rule = RobustRule::median});
    const std::unique_ptr<Strategy> plain = make_strategy(options);
    Rng rng(6);
    NamedTensors x = random_params(rng, 1.0), y = x;
    for (int round = 1; round <= 3; ++round) {
      const std::vector<ClientResult> results = round_of(rng, x, 5, 1);
      const std::vector<Tensor> median = coordinate_median(x, results);
      ClientResult single{.client_id = "median", .num_examples = 1};
      for (size_t t = 0; t < x.size(); ++t) single.params.emplace_back(x[t].first, median[t]);
      x = robust.aggregate(round, x, results);
      y = plain->aggregate(round, y, {single});
      ASSERT_EQ(flat(x), flat(y)) << name << " round " << round;
    }
    EXPECT_EQ(robust.name(), std::string(name) + "+median");
    EXPECT_EQ(flat(robust.state()), flat(plain->state())) << name;
    EXPECT_EQ(robust.fit_config(1).size(), plain->fit_config(1).size()) << name;
  }
}

TEST(RobustStrategy, KeepsTheGlobalDtypeAndReportsKrumsChoice) {
  Rng rng(8);
  NamedTensors global;
  for (const auto& [name, x] : random_params(rng, 1.0)) global.emplace_back(name, x.to(DType::f32));
  std::vector<ClientResult> results = round_of(rng, random_params(rng, 1.0), 5, 1);
  for (ClientResult& r : results)
    for (auto& [name, x] : r.params) x = x.to(DType::f32);
  RobustStrategy krum(make_strategy({.name = "fedavg"}), {.rule = RobustRule::krum, .byzantine = 1, .selected = 2});
  const NamedTensors next = krum.aggregate(1, global, results);
  EXPECT_EQ(next[0].second.dtype(), DType::f32);
  ASSERT_EQ(krum.last_selection().size(), 2u);
  for (const std::string& chosen : krum.last_selection()) EXPECT_NE(chosen, "p4");
}

TEST(RobustStrategy, InvalidOptionsAreRefusedNamingTheOption) {
  const auto make = [](RobustOptions o) { RobustStrategy(make_strategy({.name = "fedavg"}), o); };
  EXPECT_THAT([&] { make({.rule = RobustRule::trimmed_mean, .trim_fraction = 0.5}); },
              ThrowsMessage<Error>(HasSubstr("trim_fraction = 0.5")));
  EXPECT_THAT([&] { make({.rule = RobustRule::krum, .byzantine = -1}); }, ThrowsMessage<Error>(HasSubstr("byzantine")));
  EXPECT_THAT([&] { make({.rule = RobustRule::krum, .selected = 0}); }, ThrowsMessage<Error>(HasSubstr("selected")));
  EXPECT_THAT([&] { make({.rule = RobustRule::mean}); }, ThrowsMessage<Error>(HasSubstr("other than mean")));
  EXPECT_THAT([] { parse_robust_rule("medain"); }, ThrowsMessage<Error>(HasSubstr("median, trimmed_mean or krum")));
}

}  // namespace
}  // namespace fe::fed
