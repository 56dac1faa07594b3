#include "engine/synthetic_data.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "engine/rng.h"
#include "tokenizer/tokenizer.h"

namespace fe {
namespace {

namespace fs = std::filesystem;

std::string join_digits(const std::vector<int>& digits) {
  std::string s;
  for (int d : digits) {
    if (!s.empty()) s += ' ';
    s += static_cast<char>('0' + d);
  }
  return s;
}

PromptCompletion make_example(SyntheticTask task, Rng& rng, const SyntheticOptions& o) {
  const int64_t length = o.min_digits + static_cast<int64_t>(rng.next_u64() % (o.max_digits - o.min_digits + 1));
  std::vector<int> digits(length);
  for (int& d : digits) d = static_cast<int>(rng.next_u64() % 10);
  std::vector<int> answer = digits;
  if (task == SyntheticTask::reverse) std::reverse(answer.begin(), answer.end());
  if (task == SyntheticTask::shift)
    for (int& d : answer) d = (d + 1) % 10;
  return {std::string(synthetic_task_name(task)) + " " + join_digits(digits) + " =", join_digits(answer)};
}

void write_jsonl(const fs::path& path, const std::vector<PromptCompletion>& examples) {
  std::ofstream out(path);
  for (const auto& e : examples) out << nlohmann::json{{"prompt", e.prompt}, {"completion", e.completion}}.dump() << "\n";
  if (!out) throw Error(path.string() + ": write failed");
}

}  // namespace

const char* synthetic_task_name(SyntheticTask task) {
  switch (task) {
    case SyntheticTask::copy: return "copy";
    case SyntheticTask::reverse: return "reverse";
    case SyntheticTask::shift: return "shift";
  }
  return "?";
}

SyntheticSplit make_synthetic_split(SyntheticTask task, const SyntheticOptions& o) {
  if (o.min_digits < 1 || o.max_digits < o.min_digits)
    throw Error("synthetic data: need 1 ≤ min_digits ≤ max_digits");
  Rng rng(o.seed * 31 + static_cast<uint64_t>(task) + 1);
  SyntheticSplit split;
  std::set<std::string> held_out;
  for (int64_t i = 0, attempts = 0; i < o.eval_examples; ++attempts) {
    if (attempts > 100 * o.eval_examples) throw Error("synthetic data: too few distinct prompts for the eval split");
    PromptCompletion e = make_example(task, rng, o);
    if (held_out.insert(e.prompt).second) {
      split.eval.push_back(std::move(e));
      ++i;
    }
  }
  while (static_cast<int64_t>(split.train.size()) < o.train_examples) {
    PromptCompletion e = make_example(task, rng, o);
    if (!held_out.count(e.prompt)) split.train.push_back(std::move(e));
  }
  return split;
}

void write_synthetic_suite(const std::string& dir, const SyntheticOptions& o) {
  fs::create_directories(dir);
  const fs::path corpus = fs::path(dir) / "tokenizer_corpus.txt";
  {
    std::ofstream text(corpus);
    for (SyntheticTask task : kSyntheticTasks) {
      const SyntheticSplit split = make_synthetic_split(task, o);
      const fs::path task_dir = fs::path(dir) / synthetic_task_name(task);
      fs::create_directories(task_dir);
      write_jsonl(task_dir / "train.jsonl", split.train);
      write_jsonl(task_dir / "eval.jsonl", split.eval);
      for (int64_t shard = 0; shard < o.shards; ++shard) {
        std::vector<PromptCompletion> part;
        for (size_t i = shard; i < split.train.size(); i += o.shards) part.push_back(split.train[i]);
        write_jsonl(task_dir / ("train.shard-" + std::to_string(shard) + ".jsonl"), part);
      }
      for (const auto& e : split.train) text << e.prompt << " " << e.completion << "\n";
    }
  }
  train_sentencepiece(corpus.string(), (fs::path(dir) / "tokenizer.model").string(), o.vocab_size);
  fs::remove(corpus);
}

}  // namespace fe
