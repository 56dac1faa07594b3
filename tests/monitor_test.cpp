// The server's monitor: the roster's view with round and uptime (participant states are
// roster_test's), the three renderings checked on a hand-built status, and the HTTP endpoint.
#include "fed/monitor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "tests/manual_clock.h"

namespace fe::fed {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

using test::ManualClock;

// ---- round and uptime ------------------------------------------------------------------------------

TEST(Monitor, ReportsTheRosterWithRoundAndUptime) {
  ManualClock clock;
  Roster roster({"alice"}, 1.0, clock.function());
  Monitor monitor(roster, 7);
  roster.heard_from("alice", "peer-a", {{"loss", 1}});
  monitor.set_round(2);
  clock.advance(12.5);
  const FederationStatus status = monitor.snapshot();
  ASSERT_EQ(status.participants.size(), 1u);
  EXPECT_EQ(status.participants[0].name, "alice");
  EXPECT_EQ(status.participants[0].figures.at("loss"), 1);
  EXPECT_EQ(status.round, 2);
  EXPECT_EQ(status.rounds, 7);
  EXPECT_DOUBLE_EQ(status.uptime_s, 12.5);
}

// ---- renderers ------------------------------------------------------------------------------------

const std::string kOddName = "we\"ird\\name\nx";

FederationStatus sample_status() {
  FederationStatus status{.round = 3, .rounds = 10, .uptime_s = 3725};
  status.participants.push_back({.name = "alice",
                                 .state = "training",
                                 .seconds_since_heard = 0.44,
                                 .figures = {{"step", 12},
                                             {"loss", 2.34567},
                                             {"tokens_per_second", 1234.4},
                                             {"training", 1},
                                             {"process_cpu_percent", 45.25},
                                             {"ram_used_bytes", 12e9},
                                             {"ram_total_bytes", 32e9},
                                             {"gpu_count", 2},
                                             {"gpu0_index", 3},
                                             {"gpu0_memory_used_bytes", 10e9},
                                             {"gpu0_memory_total_bytes", 80e9},
                                             {"gpu0_utilization_percent", 50},
                                             {"gpu1_index", 5},
                                             {"gpu1_memory_used_bytes", 30e9},
                                             {"gpu1_memory_total_bytes", 80e9},
                                             {"gpu1_utilization_percent", 70},
                                             {"my-figure", 7},
                                             {"participant_up", 42},
                                             {"odd", std::numeric_limits<double>::quiet_NaN()}}});
  status.participants.push_back({.name = "bob", .state = "waiting", .seconds_since_heard = 20});
  status.participants.push_back({.name = kOddName,
                                 .state = "gone",
                                 .seconds_since_heard = 9.5,
                                 .figures = {{"loss", 0.5}},
                                 .note = "process exited"});
  return status;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(MonitorRender, TableHasAHeaderAndOneAlignedRowPerParticipant) {
  FederationStatus status = sample_status();
  status.participants[2].name = "carol-the-long-named";
  const std::string table = render_table(status);
  const std::vector<std::string> lines = lines_of(table);
  ASSERT_EQ(lines.size(), 5u) << table;
  EXPECT_EQ(lines[0], "round 3/10  uptime 1:02:05  participants 3");
  EXPECT_THAT(lines[1], StartsWith("participant           state"));
  EXPECT_THAT(lines[2], StartsWith("alice                 training"));
  EXPECT_THAT(lines[4], StartsWith("carol-the-long-named  gone"));
  // Every column lines up: the column titles end where the right-aligned cells end.
  const std::vector<std::string> alice = {"0.4", "12", "2.3457", "1234", "45.2", "12.0/32.0", "40.0/160.0", "60"};
  const std::vector<std::string> titles = {"heard s", "step",   "loss",       "tok/s",
                                           "CPU %",   "RAM GB", "GPU mem GB", "GPU %"};
  for (size_t i = 0; i < titles.size(); ++i) {
    const size_t title_end = lines[1].find(titles[i]) + titles[i].size();
    const size_t cell_end = (lines[2] + " ").find(" " + alice[i] + " ") + 1 + alice[i].size();
    EXPECT_EQ(cell_end, title_end) << titles[i] << "\n" << table;
  }
  EXPECT_THAT(lines[3], testing::MatchesRegex("bob +waiting +20\\.0( +-){7}"));
  EXPECT_THAT(lines[4], testing::EndsWith("process exited"));
}

TEST(MonitorRender, JsonCarriesEveryFigure) {
  const nlohmann::json json = nlohmann::json::parse(render_json(sample_status()));
  EXPECT_EQ(json["round"], 3);
  EXPECT_EQ(json["rounds"], 10);
  EXPECT_EQ(json["uptime_s"], 3725.0);
  ASSERT_EQ(json["participants"].size(), 3u);
  const nlohmann::json& alice = json["participants"][0];
  EXPECT_EQ(alice["name"], "alice");
  EXPECT_EQ(alice["state"], "training");
  EXPECT_EQ(alice["seconds_since_heard"], 0.44);
  EXPECT_EQ(alice["figures"].size(), sample_status().participants[0].figures.size());
  EXPECT_EQ(alice["figures"]["gpu1_memory_used_bytes"], 30e9);
  EXPECT_TRUE(alice["figures"]["odd"].is_null());  // NaN has no JSON spelling
  EXPECT_EQ(json["participants"][2]["name"], kOddName);
  EXPECT_EQ(json["participants"][2]["note"], "process exited");
}

// A sample line of the text exposition format, parsed: name{label="value",...} value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string value;
};

// Returns false for a line that is not a well-formed sample.
bool parse_sample(const std::string& line, Sample& sample) {
  static const std::regex name_pattern("^[a-zA-Z_:][a-zA-Z0-9_:]*");
  std::smatch name;
  if (!std::regex_search(line, name, name_pattern)) return false;
  sample.name = name.str();
  size_t i = sample.name.size();
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      const size_t equals = line.find("=\"", i);
      if (equals == std::string::npos) return false;
      const std::string label = line.substr(i, equals - i);
      std::string value;
      for (i = equals + 2; i < line.size() && line[i] != '"'; ++i) {
        if (line[i] != '\\') {
          value += line[i];
          continue;
        }
        const char escaped = line.at(++i);
        if (escaped == 'n')
          value += '\n';
        else if (escaped == '\\' || escaped == '"')
          value += escaped;
        else
          return false;
      }
      if (i >= line.size()) return false;
      sample.labels[label] = value;
      ++i;  // the closing quote
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return false;
    ++i;  // the closing brace
  }
  if (i >= line.size() || line[i] != ' ') return false;
  sample.value = line.substr(i + 1);
  static const std::regex value_pattern("^(NaN|[+-]Inf|[-+]?[0-9.]+(e[-+]?[0-9]+)?)$");
  return std::regex_match(sample.value, value_pattern);
}

struct Exposition {
  std::vector<Sample> samples;
  std::map<std::string, int> help_count, type_count;
};

Exposition parse_exposition(const std::string& text) {
  Exposition e;
  std::string current;  // the metric whose HELP and TYPE came last
  std::set<std::string> finished;
  for (const std::string& line : lines_of(text)) {
    SCOPED_TRACE(line);
    std::smatch m;
    if (std::regex_match(line, m, std::regex("# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+"))) {
      ++e.help_count[m[1]];
      if (!current.empty()) finished.insert(current);
      current = m[1];
    } else if (std::regex_match(line, m, std::regex("# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) gauge"))) {
      ++e.type_count[m[1]];
      EXPECT_EQ(m[1], current) << "TYPE right after its HELP";
    } else {
      Sample sample;
      EXPECT_TRUE(parse_sample(line, sample)) << "not a sample line";
      EXPECT_EQ(sample.name, current) << "a metric's samples follow its HELP and TYPE, together";
      EXPECT_FALSE(finished.contains(sample.name));
      e.samples.push_back(sample);
    }
  }
  return e;
}

std::optional<std::string> value_of(const Exposition& e, const std::string& name,
                                    const std::map<std::string, std::string>& labels) {
  std::optional<std::string> found;
  for (const Sample& s : e.samples)
    if (s.name == name && s.labels == labels) {
      EXPECT_FALSE(found) << "duplicate series " << name;
      found = s.value;
    }
  return found;
}

TEST(MonitorRender, PrometheusExpositionIsWellFormed) {
  const std::string text = render_prometheus(sample_status());
  const Exposition e = parse_exposition(text);
  EXPECT_FALSE(e.samples.empty());
  for (const auto& [metric, count] : e.help_count) {
    EXPECT_EQ(count, 1) << metric;
    EXPECT_EQ(e.type_count.at(metric), 1) << metric;
    EXPECT_THAT(metric, StartsWith("fedengine_"));
  }
  for (const Sample& s : e.samples) EXPECT_TRUE(e.help_count.contains(s.name)) << s.name;
  EXPECT_EQ(text.back(), '\n');
}

TEST(MonitorRender, PrometheusCarriesTheFederationAndEveryParticipantFigure) {
  const Exposition e = parse_exposition(render_prometheus(sample_status()));
  using Labels = std::map<std::string, std::string>;
  const Labels alice = {{"participant", "alice"}}, bob = {{"participant", "bob"}}, odd = {{"participant", kOddName}};
  EXPECT_EQ(value_of(e, "fedengine_round", {}), "3");
  EXPECT_EQ(value_of(e, "fedengine_rounds", {}), "10");
  EXPECT_EQ(value_of(e, "fedengine_uptime_seconds", {}), "3725");
  EXPECT_EQ(value_of(e, "fedengine_participant_up", alice), "1");
  EXPECT_EQ(value_of(e, "fedengine_participant_up", bob), "1");
  EXPECT_EQ(value_of(e, "fedengine_participant_up", odd), "0");
  EXPECT_EQ(value_of(e, "fedengine_participant_seconds_since_heard", odd), "9.5");
  EXPECT_EQ(value_of(e, "fedengine_participant_state", {{"participant", "alice"}, {"state", "training"}}), "1");
  EXPECT_EQ(value_of(e, "fedengine_participant_state", {{"participant", "alice"}, {"state", "idle"}}), "0");
  EXPECT_EQ(value_of(e, "fedengine_loss", alice), "2.34567");
  EXPECT_EQ(value_of(e, "fedengine_loss", odd), "0.5");
  EXPECT_EQ(value_of(e, "fedengine_odd", alice), "NaN");
  EXPECT_EQ(value_of(e, "fedengine_my_figure", alice), "7");
  EXPECT_EQ(value_of(e, "fedengine_gpu_count", alice), "2");
  // GPU figures: labelled with the GPU's NVML index, which is not itself a metric.
  EXPECT_EQ(value_of(e, "fedengine_gpu_memory_used_bytes", {{"participant", "alice"}, {"gpu", "3"}}), "1e+10");
  EXPECT_EQ(value_of(e, "fedengine_gpu_utilization_percent", {{"participant", "alice"}, {"gpu", "5"}}), "70");
  EXPECT_FALSE(e.help_count.contains("fedengine_gpu_index"));
  EXPECT_FALSE(e.help_count.contains("fedengine_gpu0_memory_used_bytes"));
  // A figure named like a fixed metric does not shadow it.
  EXPECT_EQ(value_of(e, "fedengine_participant_up", alice), "1");
}

TEST(MonitorRender, PrometheusEscapesLabelValues) {
  const std::string text = render_prometheus(sample_status());
  EXPECT_THAT(text, HasSubstr("fedengine_loss{participant=\"we\\\"ird\\\\name\\nx\"} 0.5\n"));
}

// ---- endpoint -------------------------------------------------------------------------------------

// GET `path` from 127.0.0.1:port; status 0 when nothing answers.
struct HttpResponse {
  int status = 0;
  std::string content_type, body;
};

HttpResponse http_get(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  client.set_read_timeout(10);
  const httplib::Result result = client.Get(path.c_str());
  if (!result) return {};
  return {.status = result->status, .content_type = result->get_header_value("Content-Type"), .body = result->body};
}

TEST(MonitorEndpoint, ServesLiveMetricsAndStatus) {
  Roster roster({"alice", "bob"}, 5.0);
  Monitor monitor(roster, 4);
  MonitorEndpoint endpoint(monitor, "127.0.0.1:0");
  ASSERT_GT(endpoint.port(), 0);
  roster.heard_from("alice", "peer-a", {{"loss", 1.5}});

  HttpResponse metrics = http_get(endpoint.port(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_THAT(metrics.content_type, StartsWith("text/plain; version=0.0.4"));
  EXPECT_THAT(metrics.body, HasSubstr("fedengine_loss{participant=\"alice\"} 1.5\n"));
  EXPECT_THAT(metrics.body, HasSubstr("fedengine_rounds 4\n"));

  roster.heard_from("alice", "peer-a", {{"loss", 0.75}});
  monitor.set_round(2);
  metrics = http_get(endpoint.port(), "/metrics");
  EXPECT_THAT(metrics.body, HasSubstr("fedengine_loss{participant=\"alice\"} 0.75\n"));
  EXPECT_THAT(metrics.body, HasSubstr("fedengine_round 2\n"));

  const HttpResponse status = http_get(endpoint.port(), "/status");
  EXPECT_EQ(status.status, 200);
  EXPECT_THAT(status.content_type, StartsWith("application/json"));
  const nlohmann::json json = nlohmann::json::parse(status.body);
  EXPECT_EQ(json["round"], 2);
  EXPECT_EQ(json["participants"][0]["figures"]["loss"], 0.75);
  EXPECT_EQ(json["participants"][1]["state"], "waiting");

  const HttpResponse index = http_get(endpoint.port(), "/");
  EXPECT_EQ(index.status, 200);
  EXPECT_THAT(index.body, HasSubstr("/metrics"));
  EXPECT_THAT(index.body, HasSubstr("/status"));
  EXPECT_EQ(http_get(endpoint.port(), "/nothing").status, 404);
}

TEST(MonitorEndpoint, APortInUseIsAnErrorNamingTheAddress) {
  Roster roster({"alice"}, 5.0);
  Monitor monitor(roster, 1);
  MonitorEndpoint first(monitor, "127.0.0.1:0");
  const std::string address = "127.0.0.1:" + std::to_string(first.port());
  try {
    MonitorEndpoint second(monitor, address);
    ADD_FAILURE() << "a second endpoint bound " << address;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(address));
  }
  EXPECT_EQ(http_get(first.port(), "/").status, 200);  // the first one is unharmed
}

TEST(MonitorEndpoint, AMalformedAddressIsAnError) {
  Roster roster({"alice"}, 5.0);
  Monitor monitor(roster, 1);
  for (const std::string address : {"localhost", "127.0.0.1:http", "127.0.0.1:70000", ":0"})
    EXPECT_THROW(MonitorEndpoint(monitor, address), Error) << address;
}

}  // namespace
}  // namespace fe::fed
