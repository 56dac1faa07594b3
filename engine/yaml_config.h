// engine/yaml_config.h — validated reading of fedengine's YAML config files.
//
// Every command (`fedengine train cfg.yaml`, `fedengine run cfg.yaml`) reads its settings through a
// ConfigNode: a YAML map plus its dotted key path ("train.optimizer") and the file it came from.
// Every error names the file, the line:column, the full key path and what was expected:
//
//   cfg.yaml:12:7: train.lr: expected a number, got "fast"
//   cfg.yaml:10:1: train: missing required key "lr"
//   cfg.yaml:12:7: train.lr: must be > 0, got -1
//   cfg.yaml:14:3: train.learning_rate: unknown key (did you mean "lr"?)
//
// Typical use:
//
//   ConfigNode root = ConfigNode::load_file(argv[1]);
//   ConfigNode train = root.child("train");
//   double lr = train.require<double>("lr", Bounds::greater_than(0));
//   int64_t epochs = train.get<int64_t>("epochs", 1, Bounds::at_least(1));
//   std::string opt = train.get_choice("optimizer", {"adamw", "sgd"}, "adamw");
//   std::string data = train.existing_file("data");   // relative to cfg.yaml's directory
//   root.check_all_keys_used();                         // after everything has been read
//
// Reading a key marks it as used; check_all_keys_used() then reports every key the program never
// read, which is how typos (`learning_rate:` for `lr:`) are caught instead of silently ignored.
// Copies of a ConfigNode share that bookkeeping, so nodes can be passed by value.
//
// A key set to null (`key:` or `key: ~`) counts as absent: get() returns its default. Quoted
// scalars are strings, so `lr: "1e-3"` is refused where a number is expected.
//
// with_overrides() lays one map over another (a participant overriding training settings); reads
// through the merged node count as reads of the original keys, and errors still point at the file
// and line where each key was written.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace fe {

namespace yaml_detail {
struct MapState;
}  // namespace yaml_detail

// The value types a setting can have.
template <class T>
concept ConfigValue =
    std::same_as<T, bool> || std::same_as<T, int64_t> || std::same_as<T, double> ||
    std::same_as<T, std::string> || std::same_as<T, std::vector<std::string>> ||
    std::same_as<T, std::vector<int64_t>> || std::same_as<T, std::vector<double>>;

template <class T>
concept ConfigNumber = std::same_as<T, int64_t> || std::same_as<T, double>;

// An interval a numeric setting must lie in; the factories cover the usual cases and the fields
// can be set directly for others, e.g. (0, 1]: Bounds{.min = 0, .max = 1, .min_exclusive = true}.
struct Bounds {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;
  bool max_exclusive = false;

  static Bounds greater_than(double x) { return {.min = x, .min_exclusive = true}; }
  static Bounds at_least(double x) { return {.min = x}; }
  static Bounds at_most(double x) { return {.max = x}; }
  static Bounds between(double lo, double hi) { return {.min = lo, .max = hi}; }  // inclusive

  bool contains(double x) const;
  std::string str() const;  // "> 0", ">= 1", "in [0, 1]", "in (0, 1]"
};

class ConfigNode {
 public:
  // An empty map read from nowhere: every get() returns its default.
  ConfigNode();

  // Throws Error naming the file (and line:column for YAML syntax errors). An empty file is an
  // empty map; any other top level than a map is an error.
  static ConfigNode load_file(const std::string& path);
  // `source_name` stands for the file in messages; relative paths resolve against its directory.
  static ConfigNode parse(const std::string& text, const std::string& source_name);

  // The dotted path of this map ("" for the root, "train.optimizer", "participants[2]").
  const std::string& key_path() const;
  // The file this map was read from.
  const std::string& source() const;

  // True when `key` is present and not null. Does not count as reading it, but makes `key` a
  // known key of this map (a "did you mean" candidate).
  bool has(const std::string& key) const;
  // True when `key` is present and set to null (`key: null`, `key: ~`, `key:`). Counts as reading
  // it: for settings where an explicit "none" differs from the default.
  bool is_null(const std::string& key) const;

  // The value of `key`, or `default_value` when it is absent. A value of the wrong type is an
  // error. T must be given explicitly: get<int64_t>("epochs", 3).
  template <ConfigValue T>
  T get(const std::string& key, const std::type_identity_t<T>& default_value) const;
  template <ConfigValue T>
  T require(const std::string& key) const;
  // The value of `key`, or nullopt when it is absent or null: for settings whose default depends
  // on something else ("unset: as the model expects").
  template <ConfigValue T>
  std::optional<T> get_optional(const std::string& key) const;
  // As above, and the value (not the default) must lie within `bounds`.
  template <ConfigNumber T>
  T get(const std::string& key, const std::type_identity_t<T>& default_value, const Bounds& bounds) const;
  template <ConfigNumber T>
  T require(const std::string& key, const Bounds& bounds) const;

  // A string that must be one of `allowed`.
  std::string get_choice(const std::string& key, const std::vector<std::string>& allowed,
                         const std::string& default_value) const;
  std::string require_choice(const std::string& key, const std::vector<std::string>& allowed) const;

  // Paths: a relative value is resolved against the directory of the file that set it, so a config
  // can name `data: train.jsonl` beside it. get_path returns `default_value` unchanged when the key
  // is absent; existing_file / existing_dir are required and must exist as a file / directory.
  std::string get_path(const std::string& key, const std::string& default_value = "") const;
  std::string require_path(const std::string& key) const;
  std::string existing_file(const std::string& key) const;
  std::string existing_dir(const std::string& key) const;

  // The nested map under `key`; an empty map when absent (so its defaults apply), an error when
  // the value is not a map.
  ConfigNode child(const std::string& key) const;
  // A list of maps (`participants: [{name: a, ...}, ...]`), paths "participants[0]", ...; empty
  // when absent.
  std::vector<ConfigNode> children_list(const std::string& key) const;

  // Marks `key` and everything under it as used: a section this command deliberately skips.
  void ignore(const std::string& key) const;

  // This map with the keys of `overrides` laid over it: a key present in both takes the
  // override's value, except that two maps merge key by key, recursively.
  ConfigNode with_overrides(const ConfigNode& overrides) const;

  // Throws Error listing, one per line, every key under this map that was never read, with its
  // file:line:column, full path and a "did you mean" suggestion: the same key where the program
  // asked for it in another section ("did you mean the top-level \"tokenizer\"?" for
  // data.tokenizer), else a near spelling among the keys asked for in that map, else those keys.
  // Call it on the root once the command has read all its settings.
  void check_all_keys_used() const;

  // Runs `read` (the command reading its settings from this root), then check_all_keys_used().
  // When `read` throws an Error, a misspelled key is the likely cause ("dta:" leaves data.train
  // missing): the Error then lists first, with file:line:column, every key never read that is a
  // near spelling of a key `read` asked for and the file lacks, then `read`'s message.
  void read_checked(const std::function<void()>& read) const;

  // Throws Error("<file:line:col>: <path.key>: <message>"), located at `key` when it is present
  // and at this map otherwise: for checks that involve several settings.
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

 private:
  explicit ConfigNode(std::shared_ptr<yaml_detail::MapState> state);

  std::shared_ptr<yaml_detail::MapState> state_;
};

}  // namespace fe
