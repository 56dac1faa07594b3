#include "fed/round_report.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "engine/train_run.h"

namespace fe::fed {
namespace {

std::string format_megabytes(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MB", bytes / 1e6);
  return text;
}

double mean_loss(const RoundRecord& record) {
  double sum = 0;
  for (const auto& [name, loss] : record.train_loss) sum += loss;
  return record.train_loss.empty() ? 0.0 : sum / record.train_loss.size();
}

}  // namespace

void RoundRecord::set_contributors(const std::vector<ClientResult>& results) {
  std::set<std::string> names;
  for (const ClientResult& result : results) names.insert(result.client_id);
  contributors.assign(names.begin(), names.end());
  const auto keep_contributors = [&](auto& figures) {
    std::erase_if(figures, [&](const auto& figure) { return !names.contains(figure.first); });
  };
  keep_contributors(train_loss);
  keep_contributors(dp_sgd_epsilon);
  keep_contributors(examples);
}

std::string round_line(const RoundRecord& record, int64_t rounds, bool evaluated, const DpStrategy* dp) {
  std::string line = "round " + std::to_string(record.round) + "/" + std::to_string(rounds);
  char text[64];
  if (record.round == 0) {
    line += " (the starting adapter)";
  } else {
    std::snprintf(text, sizeof text, " | train loss %.4f", mean_loss(record));
    line += " | " + std::to_string(record.contributors.size()) + " of " + std::to_string(record.sampled.size()) +
            " results" + text;
  }
  if (evaluated) line += " | eval " + describe(record.eval);
  if (dp && record.round > 0) {
    std::snprintf(text, sizeof text, " | ε %.3f (δ %.0e)", record.epsilon, dp->options().delta);
    line += text;
  }
  std::snprintf(text, sizeof text, " | %.1f s", record.seconds);
  if (record.attempts > 1) line += " | attempt " + std::to_string(record.attempts);
  line +=
      " | " + format_megabytes(record.bytes_sent) + " out, " + format_megabytes(record.bytes_received) + " in" + text;
  return line;
}

nlohmann::json round_metrics(const RoundRecord& record, bool evaluated, const DpStrategy* dp) {
  nlohmann::json losses = nlohmann::json::object();
  for (const auto& [name, loss] : record.train_loss) losses[name] = loss;
  nlohmann::json entry = {{"round", record.round},
                          {"sampled", record.sampled},
                          {"contributors", record.contributors},
                          {"train_loss", losses},
                          {"examples", record.examples},
                          {"bytes_sent", record.bytes_sent},
                          {"bytes_received", record.bytes_received},
                          {"attempts", record.attempts},
                          {"seconds", record.seconds}};
  if (!record.dp_sgd_epsilon.empty()) entry["dp_sgd_epsilon"] = record.dp_sgd_epsilon;
  if (dp && record.round > 0) {
    entry["epsilon"] = record.epsilon;
    entry["clip_norm"] = dp->mechanism().clip_norm();
  }
  if (evaluated) {
    entry["eval_loss"] = record.eval.loss;
    entry["eval_accuracy"] = record.eval.accuracy();
    entry["eval_exact_match"] = record.eval.exact_matches;
    entry["eval_examples"] = record.eval.examples;
    entry["eval_exact_match_examples"] = record.eval.generated_examples;
    entry.update(multiple_choice_metrics(record.eval));
  }
  return entry;
}

void restore_metrics_file(const std::string& file, const nlohmann::json& checkpointed_line) {
  std::string text;
  if (std::ifstream in{file, std::ios::binary}) text.assign(std::istreambuf_iterator<char>(in), {});
  const size_t complete = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  if (complete < text.size()) {
    std::filesystem::resize_file(file, complete);
    text.resize(complete);
  }
  if (checkpointed_line.is_null()) return;
  int64_t last_round = -1;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const nlohmann::json entry = nlohmann::json::parse(line, nullptr, false);
    if (entry.is_object() && entry.contains("round") && entry["round"].is_number_integer())
      last_round = entry["round"].get<int64_t>();
  }
  if (last_round >= checkpointed_line.at("round").get<int64_t>()) return;
  std::ofstream out(file, std::ios::app);
  out << checkpointed_line.dump() << std::endl;
  if (!out) throw Error(file + ": cannot append the checkpointed round's metrics line");
}

}  // namespace fe::fed
