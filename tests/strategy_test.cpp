// The aggregation strategies (fed/strategy.h) against an independent numpy implementation
// (tests/reference/strategy_reference.py, float64), plus the properties the server relies on:
// f32 agrees with f64, example counts weight the mean, a checkpointed state resumes bit for bit,
// and bad options or bad client results are refused with a message naming the culprit.
//
// Without numpy the reference comparison skips, unless FE_REQUIRE_TORCH=1 (CI sets it) makes that
// a failure.
#include "fed/strategy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <nlohmann/json.hpp>

#include "tests/reference_env.h"
#include "tests/test_util.h"

namespace fe::fed {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using nlohmann::json;
using test::relative_error;

const char* kPython = "/usr/bin/python3";
constexpr int kRounds = 4;

bool numpy_available() {
  static const bool available =
      std::system((std::string(kPython) + " -c 'import numpy' >/dev/null 2>&1").c_str()) == 0;
  return available;
}

// Adapter-like parameters of several shapes, and participants with different amounts of data.
const std::vector<std::pair<std::string, Shape>> kParams = {
    {"layers.0.lora_A", {4, 6}}, {"layers.0.lora_B", {6, 4}}, {"norm", {5}}, {"cube", {2, 3, 2}}};
const std::vector<std::pair<std::string, int64_t>> kClients = {{"p0", 3}, {"p1", 10}, {"p2", 1}, {"p3", 7}};

NamedTensors random_params(Rng& rng) {
  NamedTensors params;
  for (const auto& [name, shape] : kParams) params.emplace_back(name, test::random_tensor(shape, rng));
  return params;
}

// What a participant returns after training: the global it received, moved a little.
NamedTensors perturbed(const NamedTensors& global, Rng& rng) {
  NamedTensors params;
  for (const auto& [name, x] : global) {
    Tensor moved = test::random_tensor(x.shape(), rng, 0.1);
    for (int64_t i = 0; i < x.numel(); ++i) moved.as<double>()[i] += x.as<double>()[i];
    params.emplace_back(name, moved);
  }
  return params;
}

NamedTensors converted(const NamedTensors& params, DType dtype) {
  NamedTensors out;
  for (const auto& [name, x] : params) out.emplace_back(name, x.to(dtype));
  return out;
}

NamedTensors one_element(double value, DType dtype = DType::f64) {
  Tensor t = Tensor::empty({1}, dtype);
  if (dtype == DType::f64)
    t.as<double>()[0] = value;
  else
    t.as<float>()[0] = static_cast<float>(value);
  return {{"w", t}};
}

// An f64 run of kRounds rounds in which every participant returns the current global plus noise.
struct History {
  NamedTensors initial;
  std::vector<std::vector<ClientResult>> rounds;  // each round's results
  std::vector<NamedTensors> globals;              // the global parameters after each round
};

History simulate(Strategy& strategy, uint64_t seed) {
  Rng rng(seed);
  History run;
  run.initial = random_params(rng);
  NamedTensors global = run.initial;
  for (int round = 1; round <= kRounds; ++round) {
    std::vector<ClientResult> results;
    for (const auto& [id, examples] : kClients) results.push_back({id, perturbed(global, rng), examples});
    global = strategy.aggregate(round, global, results);
    run.rounds.push_back(results);
    run.globals.push_back(global);
  }
  return run;
}

// Rounds [first, last] (1-based) of a recorded run fed to `strategy` in dtype, starting from the
// recorded global before round `first`; the global after round `last`.
NamedTensors replay(Strategy& strategy, const History& run, int first, int last, DType dtype) {
  NamedTensors global = converted(first == 1 ? run.initial : run.globals[first - 2], dtype);
  for (int round = first; round <= last; ++round) {
    std::vector<ClientResult> results = run.rounds[round - 1];
    for (ClientResult& result : results) result.params = converted(result.params, dtype);
    global = strategy.aggregate(round, global, results);
  }
  return global;
}

void expect_bit_identical(const NamedTensors& actual, const NamedTensors& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t t = 0; t < actual.size(); ++t) {
    EXPECT_EQ(actual[t].first, expected[t].first);
    ASSERT_EQ(actual[t].second.nbytes(), expected[t].second.nbytes()) << expected[t].first;
    EXPECT_EQ(std::memcmp(actual[t].second.data(), expected[t].second.data(), expected[t].second.nbytes()), 0)
        << expected[t].first;
  }
}

json nested_list(const Tensor& t, int dim = 0, int64_t offset = 0) {
  if (dim == t.shape().rank()) return test::element(t, offset);
  const int64_t stride = t.numel() / Shape(t.shape().begin(), t.shape().begin() + dim + 1).numel();
  json list = json::array();
  for (int64_t i = 0; i < t.shape()[dim]; ++i) list.push_back(nested_list(t, dim + 1, offset + i * stride));
  return list;
}

void flatten(const json& value, std::vector<double>& out) {
  if (!value.is_array()) return out.push_back(value.get<double>());
  for (const json& item : value) flatten(item, out);
}

json to_json(const NamedTensors& params) {
  json object = json::object();
  for (const auto& [name, x] : params) object[name] = nested_list(x);
  return object;
}

json to_json(const StrategyOptions& o) {
  return {{"name", o.name}, {"eta", o.eta}, {"beta1", o.beta1}, {"beta2", o.beta2}, {"tau", o.tau},
          {"initial_accumulator", o.initial_accumulator}, {"bias_correction", o.bias_correction}};
}

// The reference's globals after every round, shaped like `like`.
std::vector<NamedTensors> reference_globals(const StrategyOptions& options, const History& run, const NamedTensors& like) {
  json input = {{"strategy", to_json(options)}, {"global", to_json(run.initial)}, {"rounds", json::array()}};
  for (const std::vector<ClientResult>& round : run.rounds) {
    json clients = json::array();
    for (const ClientResult& result : round)
      clients.push_back({{"num_examples", result.num_examples}, {"params", to_json(result.params)}});
    input["rounds"].push_back(clients);
  }
  test::TempDir dir;
  std::ofstream(dir.path("in.json")) << input.dump();
  const std::string command = std::string(kPython) + " " FE_SOURCE_DIR "/tests/reference/strategy_reference.py " +
                              dir.path("in.json") + " " + dir.path("out.json") + " > " + dir.path("log") + " 2>&1";
  if (std::system(command.c_str()) != 0) {
    std::ifstream log(dir.path("log"));
    ADD_FAILURE() << "the reference script failed:\n" << std::string(std::istreambuf_iterator<char>(log), {});
    return {};
  }
  const json output = json::parse(std::ifstream(dir.path("out.json")));
  std::vector<NamedTensors> globals;
  for (const json& round : output.at("globals")) {
    NamedTensors global;
    for (const auto& [name, x] : like) {
      std::vector<double> values;
      flatten(round.at(name), values);
      EXPECT_EQ(static_cast<int64_t>(values.size()), x.numel()) << name;
      Tensor t = Tensor::empty(x.shape(), DType::f64);
      std::memcpy(t.data(), values.data(), t.nbytes());
      global.emplace_back(name, t);
    }
    globals.push_back(global);
  }
  return globals;
}

struct Case {
  std::string label;
  StrategyOptions options;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.label; }

Case make_case(std::string label, std::string name, bool bias_correction = false, double initial_accumulator = -1) {
  StrategyOptions o;
  o.name = std::move(name);
  o.proximal_mu = 0.1;
  o.eta = 0.05;
  o.tau = 1e-2;
  o.bias_correction = bias_correction;
  o.initial_accumulator = initial_accumulator;
  return {std::move(label), o};
}

// With v₀ = 1e-2 above most Δ², yogi also takes the branch where v shrinks.
const std::vector<Case> kCases = {
    make_case("fedavg", "fedavg"),
    make_case("fedprox", "fedprox"),
    make_case("fedadagrad", "fedadagrad"),
    make_case("fedadam", "fedadam"),
    make_case("fedadam_bias_correction", "fedadam", true),
    make_case("fedyogi", "fedyogi"),
    make_case("fedyogi_bias_correction", "fedyogi", true),
    make_case("fedyogi_initial_accumulator", "fedyogi", false, 1e-2),
};

class EveryStrategy : public ::testing::TestWithParam<Case> {};

TEST_P(EveryStrategy, MatchesTheNumpyReference) {
  FE_NEED_OR_SKIP(numpy_available(), std::string(kPython) + " cannot import numpy", "FE_REQUIRE_TORCH",
                  "Debian: python3-numpy, scripts/setup.sh");
  const StrategyOptions& options = GetParam().options;
  const History run = simulate(*make_strategy(options), 1);
  const std::vector<NamedTensors> expected = reference_globals(options, run, run.initial);
  ASSERT_EQ(expected.size(), run.globals.size());
  for (size_t round = 0; round < expected.size(); ++round)
    for (size_t t = 0; t < expected[round].size(); ++t)
      EXPECT_LT(relative_error(run.globals[round][t].second, expected[round][t].second), 1e-12)
          << "round " << round + 1 << ", " << expected[round][t].first;
}

TEST_P(EveryStrategy, F32AgreesWithF64) {
  const StrategyOptions& options = GetParam().options;
  const History run = simulate(*make_strategy(options), 2);
  const NamedTensors f32 = replay(*make_strategy(options), run, 1, kRounds, DType::f32);
  for (size_t t = 0; t < f32.size(); ++t) {
    EXPECT_EQ(f32[t].second.dtype(), DType::f32);
    EXPECT_LT(relative_error(f32[t].second, run.globals.back()[t].second), 1e-5) << f32[t].first;
  }
}

TEST_P(EveryStrategy, RestoredStateContinuesBitIdentically) {
  const StrategyOptions& options = GetParam().options;
  const History uninterrupted = simulate(*make_strategy(options), 3);
  auto before = make_strategy(options);
  replay(*before, uninterrupted, 1, 2, DType::f64);
  auto restored = make_strategy(options);
  restored->load_state(before->state());
  expect_bit_identical(replay(*restored, uninterrupted, 3, 3, DType::f64), uninterrupted.globals[2]);
}

INSTANTIATE_TEST_SUITE_P(Strategies, EveryStrategy, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.label; });

TEST(WeightedMean, OfIdenticalParamsReturnsThemExactly) {
  Rng rng(4);
  const NamedTensors params = converted(random_params(rng), DType::f32);
  std::vector<ClientResult> results;
  for (const auto& [id, examples] : kClients) results.push_back({id, params, examples});
  expect_bit_identical(make_strategy({.name = "fedavg"})->aggregate(1, params, results), params);
}

TEST(WeightedMean, WeighsEachClientByItsExamples) {
  // (3·2 + 1·10) / 4 = 4: the client with 3× the examples ends 3× closer (2 away, against 6).
  const NamedTensors mean = weighted_mean(one_element(0), {{"big", one_element(2), 3}, {"small", one_element(10), 1}});
  EXPECT_EQ(mean[0].second.as<double>()[0], 4.0);
}

TEST(WeightedMean, KeepsTheGlobalDtype) {
  for (DType dtype : {DType::f32, DType::f64}) {
    const NamedTensors mean = weighted_mean(one_element(0, dtype), {{"a", one_element(1, DType::f64), 1}});
    EXPECT_EQ(mean[0].second.dtype(), dtype) << dtype_name(dtype);
  }
}

TEST(FedAdagrad, FirstRoundByHand) {
  // Δ = 3; β₁ = 0: m = 3; v = 16 + 9 = 25; x = 0 + 0.5·3 / (5 + 1) = 0.25.
  auto strategy = make_strategy({.name = "fedadagrad", .eta = 0.5, .beta1 = 0, .tau = 1, .initial_accumulator = 16});
  const NamedTensors next = strategy->aggregate(1, one_element(0), {{"a", one_element(3), 5}});
  EXPECT_DOUBLE_EQ(next[0].second.as<double>()[0], 0.25);
}

TEST(StrategyState, IsEmptyBeforeTheFirstRoundThenHoldsMomentsAndStep) {
  auto strategy = make_strategy({.name = "fedadam"});
  EXPECT_TRUE(strategy->state().empty());
  strategy->aggregate(1, one_element(0), {{"a", one_element(1), 1}});
  const NamedTensors state = strategy->state();
  ASSERT_EQ(state.size(), 3u);
  EXPECT_EQ(state[0].first, "m.w");
  EXPECT_EQ(state[1].first, "v.w");
  EXPECT_EQ(state[2].first, "step");
  EXPECT_EQ(state[2].second.dtype(), DType::i64);
  EXPECT_EQ(state[2].second.as<int64_t>()[0], 1);
  EXPECT_TRUE(make_strategy({.name = "fedavg"})->state().empty());
}

TEST(StrategyState, MalformedStateIsRefused) {
  auto source = make_strategy({.name = "fedyogi"});
  source->aggregate(1, one_element(0), {{"a", one_element(1), 1}});
  const NamedTensors good = source->state();  // m.w, v.w, step
  const auto without = [&](size_t index) {
    NamedTensors state = good;
    state.erase(state.begin() + static_cast<std::ptrdiff_t>(index));
    return state;
  };
  const auto with_tensor = [&](size_t index, Tensor replacement) {
    NamedTensors state = good;
    state[index].second = replacement;
    return state;
  };
  auto target = make_strategy({.name = "fedyogi"});
  EXPECT_THAT([&] { target->load_state(without(1)); }, ThrowsMessage<Error>(HasSubstr("'w' has m but no v")));
  EXPECT_THAT([&] { target->load_state(without(2)); }, ThrowsMessage<Error>(HasSubstr("step")));
  EXPECT_THAT([&] { target->load_state({good[2]}); }, ThrowsMessage<Error>(HasSubstr("m.<name>")));
  EXPECT_THAT([&] { target->load_state(with_tensor(2, Tensor::zeros({1}, DType::f64))); },
              ThrowsMessage<Error>(HasSubstr("step")));
  EXPECT_THAT([&] { target->load_state(with_tensor(0, Tensor::zeros({1}, DType::f32))); },
              ThrowsMessage<Error>(HasSubstr("m.w")));
  EXPECT_THAT([&] { target->load_state(with_tensor(1, Tensor::zeros({2}, DType::f64))); },
              ThrowsMessage<Error>(HasSubstr("v.w")));
  NamedTensors unknown = good;
  unknown.emplace_back("momentum.w", Tensor::zeros({1}, DType::f64));
  EXPECT_THAT([&] { target->load_state(unknown); }, ThrowsMessage<Error>(HasSubstr("momentum.w")));

  // A state for other parameters is caught when it meets them.
  target->load_state(good);
  NamedTensors other = one_element(0);
  other[0].first = "u";
  EXPECT_THAT([&] { target->aggregate(2, other, {{"a", other, 1}}); }, ThrowsMessage<Error>(HasSubstr("'u'")));
}

TEST(MakeStrategy, InvalidOptionsAreRefusedNamingTheOption) {
  const std::vector<std::pair<std::string, std::function<void(StrategyOptions&)>>> broken = {
      {"eta", [](StrategyOptions& o) { o.eta = 0; }},
      {"eta", [](StrategyOptions& o) { o.eta = -1e-3; }},
      {"beta1", [](StrategyOptions& o) { o.beta1 = 1; }},
      {"beta1", [](StrategyOptions& o) { o.beta1 = -0.1; }},
      {"beta2", [](StrategyOptions& o) { o.beta2 = 1; }},
      {"tau", [](StrategyOptions& o) { o.tau = 0; }},
  };
  for (const char* name : {"fedadagrad", "fedadam", "fedyogi"})
    for (const auto& [option, breaks] : broken) {
      StrategyOptions options{.name = name};
      breaks(options);
      EXPECT_THAT([&] { make_strategy(options); }, ThrowsMessage<Error>(AllOf(HasSubstr(name), HasSubstr(option))));
    }
  EXPECT_THAT([] { make_strategy({.name = "fedprox", .proximal_mu = -1}); },
              ThrowsMessage<Error>(HasSubstr("proximal_mu")));
  EXPECT_THAT([] { make_strategy({.name = "fedsgd"}); }, ThrowsMessage<Error>(HasSubstr("unknown strategy 'fedsgd'")));
}

TEST(Aggregate, MismatchedClientResultsAreRefusedNamingClientAndTensor) {
  Rng rng(5);
  const NamedTensors global = random_params(rng);
  const auto results_with = [&](const std::function<void(ClientResult&)>& spoil) {
    std::vector<ClientResult> results = {{"good", global, 1}, {"bad", global, 2}};
    spoil(results[1]);
    return results;
  };
  const std::vector<std::pair<std::string, std::function<void(ClientResult&)>>> spoilers = {
      {"norm", [](ClientResult& r) { r.params[2].first = "bias"; }},
      {"norm", [](ClientResult& r) { r.params[2].second = Tensor::zeros({6}, DType::f64); }},
      {"norm", [](ClientResult& r) { r.params[2].second = Tensor::zeros({5}, DType::bf16); }},
      {"cube", [](ClientResult& r) { r.params.pop_back(); }},
      {"extra", [](ClientResult& r) { r.params.emplace_back("extra", Tensor::zeros({1}, DType::f64)); }},
  };
  for (const char* name : {"fedavg", "fedadam"})
    for (const auto& spoiler : spoilers)
      EXPECT_THAT([&] { make_strategy({.name = name})->aggregate(1, global, results_with(spoiler.second)); },
                  ThrowsMessage<Error>(AllOf(HasSubstr("'bad'"), HasSubstr("'" + spoiler.first + "'"))));
  EXPECT_THAT([&] { weighted_mean(global, results_with([](ClientResult& r) { r.num_examples = 0; })); },
              ThrowsMessage<Error>(AllOf(HasSubstr("'bad'"), HasSubstr("num_examples"))));
  EXPECT_THAT([&] { weighted_mean(global, {}); }, ThrowsMessage<Error>(HasSubstr("no client results")));
}

TEST(FitConfig, FedProxPushesProximalMuAndTheOthersNothing) {
  const auto config = make_strategy({.name = "fedprox", .proximal_mu = 0.25})->fit_config(1);
  ASSERT_EQ(config.size(), 1u);
  EXPECT_EQ(std::get<double>(config.at("proximal_mu")), 0.25);
  for (const char* name : {"fedavg", "fedadagrad", "fedadam", "fedyogi"})
    EXPECT_TRUE(make_strategy({.name = name})->fit_config(1).empty()) << name;
}

// ---- sampling -------------------------------------------------------------------------------------

std::vector<std::string> names(int n) {
  std::vector<std::string> all;
  for (int i = 0; i < n; ++i) all.push_back(test::numbered("p", i));
  return all;
}

TEST(Sample, TakesMaxOfMinClientsAndTheFractionOfTheAliveInNameOrder) {
  const auto strategy = make_strategy({.name = "fedavg", .sampling = {.fraction = 0.3, .min_clients = 2, .seed = 7}});
  EXPECT_EQ(strategy->sample_size(10), 3u);  // ⌈0.3·10⌉
  EXPECT_EQ(strategy->sample_size(4), 2u);   // ⌈1.2⌉ = 2 = min_clients
  EXPECT_EQ(strategy->sample_size(1), 1u);   // all there are
  EXPECT_EQ(strategy->sample_size(0), 0u);
  const std::vector<std::string> all = names(10);
  const std::vector<std::string> sampled = strategy->sample(5, all);
  ASSERT_EQ(sampled.size(), 3u);
  EXPECT_TRUE(std::is_sorted(sampled.begin(), sampled.end()));
  EXPECT_TRUE(std::includes(all.begin(), all.end(), sampled.begin(), sampled.end()));
  EXPECT_EQ(std::set<std::string>(sampled.begin(), sampled.end()).size(), 3u);
}

// A resumed run samples as the uninterrupted one: the draw depends on (seed, round) alone.
TEST(Sample, DependsOnlyOnSeedAndRound) {
  const StrategyOptions options{.name = "fedadam", .sampling = {.fraction = 0.5, .min_clients = 1, .seed = 11}};
  const auto first = make_strategy(options), second = make_strategy(options);
  std::set<std::vector<std::string>> draws;
  for (int64_t round = 1; round <= 20; ++round) {
    const std::vector<std::string> a = first->sample(round, names(8));
    second->sample(round + 100, names(8));  // other rounds drawn in between change nothing
    EXPECT_EQ(second->sample(round, names(8)), a) << round;
    draws.insert(a);
  }
  EXPECT_GT(draws.size(), 10u);  // and the rounds do differ (70 subsets of 4 out of 8)
  StrategyOptions other_seed = options;
  other_seed.sampling.seed = 12;
  int same = 0;
  for (int64_t round = 1; round <= 20; ++round)
    same += make_strategy(other_seed)->sample(round, names(8)) == first->sample(round, names(8));
  EXPECT_LT(same, 5);
}

}  // namespace
}  // namespace fe::fed
