#include "fed/monitor.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "core/error.h"

namespace fe::fed {
namespace {

std::optional<double> figure(const ParticipantStatus& p, const std::string& key) {
  const auto it = p.figures.find(key);
  if (it == p.figures.end()) return std::nullopt;
  return it->second;
}

std::string gpu_key(int64_t k, const char* what) { return "gpu" + std::to_string(k) + "_" + what; }

std::string printf_string(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

}  // namespace

// ---- Monitor ------------------------------------------------------------------------------------

Monitor::Monitor(const Roster& roster, int64_t rounds) : roster_(roster), rounds_(rounds), started_(roster.now()) {}

void Monitor::set_round(int64_t round) { round_ = round; }

FederationStatus Monitor::snapshot() const {
  std::vector<ParticipantStatus> participants = roster_.snapshot();
  return {.round = round_,
          .rounds = rounds_,
          .uptime_s = std::chrono::duration<double>(roster_.now() - started_).count(),
          .participants = std::move(participants)};
}

// ---- render_table -------------------------------------------------------------------------------

namespace {

std::string uptime_text(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds));
  char text[32];
  std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return text;
}

std::string figure_text(const ParticipantStatus& p, const std::string& key, const char* format) {
  const std::optional<double> value = figure(p, key);
  return value ? printf_string(format, *value) : "-";
}

std::string used_of_total_gb(std::optional<double> used, std::optional<double> total) {
  if (!used || !total) return "-";
  char text[64];
  std::snprintf(text, sizeof text, "%.1f/%.1f", *used / 1e9, *total / 1e9);
  return text;
}

// Memory summed over the participant's GPUs, utilisation averaged.
struct GpuSummary {
  std::string memory = "-", utilization = "-";
};

GpuSummary gpu_summary(const ParticipantStatus& p) {
  const int64_t count = static_cast<int64_t>(figure(p, "gpu_count").value_or(0));
  double used = 0, total = 0, utilization = 0;
  int64_t reported = 0;
  for (int64_t k = 0; k < count; ++k) {
    const auto gpu_used = figure(p, gpu_key(k, "memory_used_bytes"));
    const auto gpu_total = figure(p, gpu_key(k, "memory_total_bytes"));
    if (!gpu_used || !gpu_total) continue;
    used += *gpu_used;
    total += *gpu_total;
    utilization += figure(p, gpu_key(k, "utilization_percent")).value_or(0);
    ++reported;
  }
  if (reported == 0) return {};
  return {.memory = used_of_total_gb(used, total), .utilization = printf_string("%.0f", utilization / reported)};
}

struct Column {
  std::string title;
  size_t width;
  bool left_aligned = false;
};

std::string table_line(const std::vector<Column>& columns, const std::vector<std::string>& cells) {
  std::string line;
  for (size_t i = 0; i < columns.size(); ++i) {
    const std::string& cell = cells[i];
    const std::string pad(columns[i].width > cell.size() ? columns[i].width - cell.size() : 0, ' ');
    if (i > 0) line += "  ";
    line += columns[i].left_aligned ? cell + pad : pad + cell;
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line + "\n";
}

std::vector<std::string> table_cells(const ParticipantStatus& p) {
  const GpuSummary gpu = gpu_summary(p);
  return {p.name,
          p.state,
          printf_string("%.1f", p.seconds_since_heard),
          figure_text(p, "step", "%.0f"),
          figure_text(p, "loss", "%.4f"),
          figure_text(p, "tokens_per_second", "%.0f"),
          figure_text(p, "process_cpu_percent", "%.1f"),
          used_of_total_gb(figure(p, "ram_used_bytes"), figure(p, "ram_total_bytes")),
          gpu.memory,
          gpu.utilization,
          p.note};
}

}  // namespace

std::string render_table(const FederationStatus& status) {
  size_t name_width = 11;
  for (const ParticipantStatus& p : status.participants) name_width = std::max(name_width, p.name.size());
  const std::vector<Column> columns = {{"participant", name_width, true},
                                       {"state", 8, true},
                                       {"heard s", 8},
                                       {"step", 7},
                                       {"loss", 8},
                                       {"tok/s", 7},
                                       {"CPU %", 6},
                                       {"RAM GB", 11},
                                       {"GPU mem GB", 11},
                                       {"GPU %", 5},
                                       {"note", 0, true}};
  std::string table = "round " + std::to_string(status.round) + "/" + std::to_string(status.rounds) + "  uptime " +
                      uptime_text(status.uptime_s) + "  participants " + std::to_string(status.participants.size()) +
                      "\n";
  std::vector<std::string> titles;
  for (const Column& c : columns) titles.push_back(c.title);
  table += table_line(columns, titles);
  for (const ParticipantStatus& p : status.participants) table += table_line(columns, table_cells(p));
  return table;
}

// ---- render_json --------------------------------------------------------------------------------

std::string render_json(const FederationStatus& status) {
  nlohmann::json participants = nlohmann::json::array();
  for (const ParticipantStatus& p : status.participants)
    participants.push_back({{"name", p.name},
                            {"state", p.state},
                            {"seconds_since_heard", p.seconds_since_heard},
                            {"note", p.note},
                            {"figures", p.figures}});  // nlohmann writes NaN and ±Inf as null
  const nlohmann::json json = {{"round", status.round},
                               {"rounds", status.rounds},
                               {"uptime_s", status.uptime_s},
                               {"participants", participants}};
  return json.dump(2) + "\n";
}

// ---- render_prometheus --------------------------------------------------------------------------

namespace {

// One metric: its HELP text and its series, keyed by their label text so that a series appears
// once (two figure names may sanitise to the same metric) and in a deterministic order.
struct Family {
  std::string help;
  std::map<std::string, std::string> series;  // label text → value
};

const std::map<std::string, std::string>& known_figure_help() {
  static const std::map<std::string, std::string> help = {
      {"step", "Training step the participant reached"},
      {"loss", "Training loss of the participant's latest step"},
      {"tokens_per_second", "Training throughput of the participant, tokens per second"},
      {"training", "1 while the participant trains"},
      {"cpu_percent", "CPU busy on the participant's machine, percent of all cores"},
      {"process_cpu_percent", "CPU used by the participant's process, percent of all cores of its machine"},
      {"ram_used_bytes", "RAM in use on the participant's machine (total minus available)"},
      {"ram_total_bytes", "RAM of the participant's machine"},
      {"ram_available_bytes", "RAM available on the participant's machine"},
      {"process_rss_bytes", "Resident memory of the participant's process"},
      {"gpu_count", "GPUs the participant reports"},
      {"gpu_memory_used_bytes", "GPU memory in use"},
      {"gpu_memory_free_bytes", "GPU memory free"},
      {"gpu_memory_total_bytes", "GPU memory in all"},
      {"gpu_utilization_percent", "GPU busy, percent of the last sample period"},
  };
  return help;
}

std::string escape_label_value(const std::string& value) {
  std::string escaped;
  for (char c : value) {
    if (c == '\\')
      escaped += "\\\\";
    else if (c == '"')
      escaped += "\\\"";
    else if (c == '\n')
      escaped += "\\n";
    else
      escaped += c;
  }
  return escaped;
}

std::string sanitise_metric_name(const std::string& name) {
  std::string metric = name;
  for (char& c : metric)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
  return metric;
}

std::string sample_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char text[32];
  const auto end = std::to_chars(text, text + sizeof text, value).ptr;  // shortest exact form
  return std::string(text, end);
}

std::string labels(const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::string text = "{";
  for (const auto& [name, value] : pairs) {
    if (text.size() > 1) text += ",";
    text += name + "=\"" + escape_label_value(value) + "\"";
  }
  return text + "}";
}

// gpu<k>_<what> → (k, what); nullopt for any other name.
std::optional<std::pair<int64_t, std::string>> split_gpu_figure(const std::string& name) {
  size_t end = 3;
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (name.rfind("gpu", 0) != 0 || end == 3 || end > 12 || end >= name.size() || name[end] != '_') return std::nullopt;
  return std::pair{std::stoll(name.substr(3, end - 3)), name.substr(end + 1)};
}

class Exposition {
 public:
  void add(const std::string& metric, const std::string& help, const std::string& label_text, double value) {
    Family& family = families_[metric];
    if (family.help.empty()) family.help = help;
    family.series.try_emplace(label_text, sample_value(value));
  }

  std::string text() const {
    std::string out;
    for (const auto& [metric, family] : families_) {
      out += "# HELP " + metric + " " + family.help + "\n";
      out += "# TYPE " + metric + " gauge\n";
      for (const auto& [label_text, value] : family.series) out += metric + label_text + " " + value + "\n";
    }
    return out;
  }

 private:
  std::map<std::string, Family> families_;
};

void add_participant_state(const ParticipantStatus& p, Exposition& out) {
  const std::string participant = labels({{"participant", p.name}});
  out.add("fedengine_participant_up", "1 while the participant is neither gone nor left", participant,
          p.state == "gone" || p.state == "left" ? 0 : 1);
  out.add("fedengine_participant_seconds_since_heard", "Seconds since the participant's last message", participant,
          p.seconds_since_heard);
  for (const char* state : {"waiting", "idle", "training", "late", "gone", "left"})
    out.add("fedengine_participant_state", "1 for the participant's current state",
            labels({{"participant", p.name}, {"state", state}}), p.state == state ? 1 : 0);
}

void add_participant_figures(const ParticipantStatus& p, const std::set<std::string>& fixed, Exposition& out) {
  for (const auto& [name, value] : p.figures) {
    std::string figure_name = name;
    std::vector<std::pair<std::string, std::string>> label_pairs = {{"participant", p.name}};
    if (const auto gpu = split_gpu_figure(name)) {
      if (gpu->second == "index") continue;  // it becomes the gpu label
      const std::optional<double> index = figure(p, gpu_key(gpu->first, "index"));
      label_pairs.emplace_back("gpu", std::to_string(index ? static_cast<int64_t>(*index) : gpu->first));
      figure_name = "gpu_" + gpu->second;
    }
    const std::string metric_suffix = sanitise_metric_name(figure_name);
    const std::string metric = "fedengine_" + metric_suffix;
    if (fixed.contains(metric)) continue;
    const auto known = known_figure_help().find(figure_name);
    // The sanitised name keeps the HELP line free of characters it would have to escape.
    const std::string help = known != known_figure_help().end() ? known->second : "Participant figure " + metric_suffix;
    out.add(metric, help, labels(label_pairs), value);
  }
}

}  // namespace

std::string render_prometheus(const FederationStatus& status) {
  Exposition out;
  out.add("fedengine_round", "The federated round in progress (0 before the first)", "",
          static_cast<double>(status.round));
  out.add("fedengine_rounds", "Federated rounds the run will do", "", static_cast<double>(status.rounds));
  out.add("fedengine_uptime_seconds", "Seconds since the server started monitoring", "", status.uptime_s);
  for (const ParticipantStatus& p : status.participants) add_participant_state(p, out);
  const std::set<std::string> fixed = {"fedengine_round",
                                       "fedengine_rounds",
                                       "fedengine_uptime_seconds",
                                       "fedengine_participant_up",
                                       "fedengine_participant_seconds_since_heard",
                                       "fedengine_participant_state"};
  for (const ParticipantStatus& p : status.participants) add_participant_figures(p, fixed, out);
  return out.text();
}

// ---- MonitorEndpoint ----------------------------------------------------------------------------

namespace {

// A monitoring endpoint serves a scraper or two; httplib's default pool is a thread per core.
constexpr size_t kHttpThreads = 4;

struct HostPort {
  std::string host;
  int port = 0;
};

HostPort parse_address(const std::string& address) {
  const size_t colon = address.rfind(':');
  const auto bad = [&] { return Error("monitoring endpoint: bad address '" + address + "', expected host:port"); };
  if (colon == std::string::npos || colon == 0) throw bad();
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = -1;
  const char* first = address.data() + colon + 1;
  const char* last = address.data() + address.size();
  const auto [end, error] = std::from_chars(first, last, port);
  if (error != std::errc() || end != last || first == last || port < 0 || port > 65535) throw bad();
  return {host, port};
}

// httplib's default also sets SO_REUSEPORT, which would let a second server share a port that is
// in use; SO_REUSEADDR alone still allows a restart while old connections sit in TIME_WAIT.
void reuse_address_only(socket_t socket) {
  int yes = 1;
  ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
}

}  // namespace

struct MonitorEndpoint::Impl {
  httplib::Server server;
  std::thread listener;
  std::atomic<bool> listener_done = false;
  int port = 0;
};

MonitorEndpoint::MonitorEndpoint(const Monitor& monitor, const std::string& address) : impl_(std::make_unique<Impl>()) {
  const HostPort where = parse_address(address);
  httplib::Server& server = impl_->server;
  server.set_socket_options(reuse_address_only);
  server.new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  server.set_keep_alive_timeout(1);  // an idle keep-alive connection delays the destructor this long
  server.Get("/metrics", [&monitor](const httplib::Request&, httplib::Response& response) {
    response.set_content(render_prometheus(monitor.snapshot()), "text/plain; version=0.0.4; charset=utf-8");
  });
  server.Get("/status", [&monitor](const httplib::Request&, httplib::Response& response) {
    response.set_content(render_json(monitor.snapshot()), "application/json");
  });
  server.Get("/", [](const httplib::Request&, httplib::Response& response) {
    response.set_content("fedengine monitor\n  /metrics  Prometheus metrics\n  /status   JSON status\n", "text/plain");
  });
  impl_->port = where.port == 0 ? server.bind_to_any_port(where.host)
                                : (server.bind_to_port(where.host, where.port) ? where.port : -1);
  if (impl_->port < 0)
    throw Error("monitoring endpoint: cannot listen on " + address +
                " (port in use, or not an address of this machine)");
  impl_->listener = std::thread([impl = impl_.get()] {
    impl->server.listen_after_bind();
    impl->listener_done = true;
  });
  // httplib's stop() does nothing before the listener runs, so the destructor could not end it.
  while (!server.is_running() && !impl_->listener_done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

MonitorEndpoint::~MonitorEndpoint() {
  impl_->server.stop();
  impl_->listener.join();
}

int MonitorEndpoint::port() const { return impl_->port; }

}  // namespace fe::fed
