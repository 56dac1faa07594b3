#include "engine/yaml_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>

#include "core/error.h"
#include "core/number_text.h"

namespace fe {
namespace yaml_detail {

// One `key: value` as written in a file. The whole file is turned into MapStates and Entries when
// it is loaded, so that overrides can merge maps while every entry keeps the file, line and path
// where it was written.
struct Entry {
  std::string key;
  std::string path;  // full key path where it was written: "participants[1].train.lr"
  std::string file;
  YAML::Mark key_mark;
  YAML::Node value;
  std::shared_ptr<MapState> map = nullptr;            // set when the value is a map
  std::vector<std::shared_ptr<MapState>> items = {};  // for a list: a MapState per map element, else null
  bool read = false;

  // Assigning a YAML::Node rebinds the node it shares with every other copy, which would rewrite
  // the map an entry was copied from; entries are only ever constructed.
  Entry& operator=(const Entry&) = delete;
};

struct MapState {
  std::string path;
  std::string file;
  YAML::Mark mark = YAML::Mark::null_mark();
  std::vector<Entry> entries;   // in file order, so unknown keys are reported in that order
  std::set<std::string> asked;  // keys the program asked for: the "did you mean" candidates
  // A merged map forwards reads to the maps it was built from, whose entries are the ones that
  // check_all_keys_used() on the root walks.
  std::vector<std::shared_ptr<MapState>> merged_from;
  // The empty maps child() gave for sections the file lacks, kept so that the keys asked of them
  // are known too: "did you mean" looks for a misplaced key in every section.
  std::map<std::string, std::shared_ptr<MapState>> absent_children;

  Entry* find(const std::string& key) {
    auto it = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) { return e.key == key; });
    return it == entries.end() ? nullptr : &*it;
  }
  const Entry* find(const std::string& key) const { return const_cast<MapState*>(this)->find(key); }

  // Records `key` as asked for and marks its entry read, here and in the maps this one merges.
  Entry* read(const std::string& key) {
    asked.insert(key);
    for (const auto& origin : merged_from) origin->read(key);
    Entry* entry = find(key);
    if (entry) entry->read = true;
    return entry;
  }

  // Records `key` as asked for without reading it.
  void know(const std::string& key) {
    asked.insert(key);
    for (const auto& origin : merged_from) origin->know(key);
  }
};

}  // namespace yaml_detail

namespace {

using yaml_detail::Entry;
using yaml_detail::MapState;

std::string location(const std::string& file, const YAML::Mark& mark) {
  if (mark.is_null()) return file;
  return file + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

std::string join_key(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

[[noreturn]] void throw_at(const std::string& where, const std::string& path, const std::string& message) {
  throw Error(where + ": " + (path.empty() ? "" : path + ": ") + message);
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

template <class Strings>
std::string join_quoted(const Strings& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "" : ", ") + quoted(w);
  return out;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return quoted(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "null";
  }
}

// Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of adjacent
// characters ("trian" for "train") each cost one.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// The candidate nearest to `word`, if it is near enough to be a likely typo (one edit per three
// characters); null otherwise.
template <class Strings>
const std::string* closest(const std::string& word, const Strings& candidates) {
  const std::string* best = nullptr;
  size_t best_distance = 0;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (c != word && (!best || d < best_distance)) best = &c, best_distance = d;
  }
  if (best && best_distance <= std::max<size_t>(1, std::max(word.size(), best->size()) / 3)) return best;
  return nullptr;
}

// A YAML value being converted, with what its error messages need.
struct YamlValue {
  YAML::Node node;
  std::string path;
  std::string file;
  YAML::Mark mark;

  [[noreturn]] void fail(const std::string& message) const { throw_at(location(file, mark), path, message); }
  [[noreturn]] void expected(const std::string& what) const { fail("expected " + what + ", got " + describe(node)); }
};

YamlValue value_of(const Entry& e) {
  // yaml-cpp marks an empty value at the start of the next line; the key is where the user looks.
  return {e.value, e.path, e.file, e.value.IsNull() ? e.key_mark : e.value.Mark()};
}

YamlValue element(const YamlValue& list, size_t i) {
  const YAML::Node node = list.node[i];
  return {node, list.path + "[" + std::to_string(i) + "]", list.file, node.IsNull() ? list.mark : node.Mark()};
}

// Numbers and booleans must be plain scalars: `lr: "1e-3"` is a string in YAML.
bool is_plain_scalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "?"; }

template <class T>
std::optional<T> parse_number(std::string_view text) {
  if (text.starts_with('+') && !text.substr(1).starts_with('-')) text.remove_prefix(1);
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(value)) return std::nullopt;  // from_chars accepts "inf" and "nan"
  }
  return value;
}

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, bool>)
    return "true or false";
  else if constexpr (std::is_same_v<T, int64_t>)
    return "an integer";
  else if constexpr (std::is_same_v<T, double>)
    return "a number";
  else
    return "a string";
}

template <class T>
const char* list_name() {
  if constexpr (std::is_same_v<T, int64_t>)
    return "a list of integers";
  else if constexpr (std::is_same_v<T, double>)
    return "a list of numbers";
  else
    return "a list of strings";
}

template <class T>
T convert(const YamlValue& v);

template <class T>
T convert_scalar(const YamlValue& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.node.IsScalar()) v.expected(type_name<T>());
    return v.node.Scalar();
  } else if constexpr (std::is_same_v<T, bool>) {
    bool value = false;
    if (!is_plain_scalar(v.node) || !YAML::convert<bool>::decode(v.node, value)) v.expected(type_name<T>());
    return value;
  } else {
    const std::optional<T> value = is_plain_scalar(v.node) ? parse_number<T>(v.node.Scalar()) : std::nullopt;
    if (!value) v.expected(type_name<T>());
    return *value;
  }
}

template <class T>
std::vector<T> convert_list(const YamlValue& v) {
  if (!v.node.IsSequence()) v.expected(list_name<T>());
  std::vector<T> out;
  for (size_t i = 0; i < v.node.size(); ++i) out.push_back(convert_scalar<T>(element(v, i)));
  return out;
}

template <class T>
T convert(const YamlValue& v) {
  if constexpr (requires { typename T::value_type; } && !std::is_same_v<T, std::string>)
    return convert_list<typename T::value_type>(v);
  else
    return convert_scalar<T>(v);
}

template <class T>
T convert_within(const YamlValue& v, const Bounds& bounds) {
  const T value = convert<T>(v);
  if (!bounds.contains(static_cast<double>(value))) v.fail("must be " + bounds.str() + ", got " + v.node.Scalar());
  return value;
}

// The entry for `key`, marked read; null when absent or null-valued, so that a default applies.
const Entry* given(MapState& map, const std::string& key) {
  const Entry* entry = map.read(key);
  return entry && !entry->value.IsNull() ? entry : nullptr;
}

// The entry for `key`, marked read; an error when absent. A null value is left to the conversion,
// which reports it as "got null" at the key's line.
const Entry& required(MapState& map, const std::string& key) {
  const Entry* entry = map.read(key);
  if (!entry) throw_at(location(map.file, map.mark), map.path, "missing required key " + quoted(key));
  return *entry;
}

std::string checked_choice(const YamlValue& v, const std::vector<std::string>& allowed) {
  const std::string choice = convert<std::string>(v);
  if (std::find(allowed.begin(), allowed.end(), choice) != allowed.end()) return choice;
  const std::string* near = closest(choice, allowed);
  v.fail("expected one of " + join_quoted(allowed) + ", got " + quoted(choice) +
         (near ? " (did you mean " + quoted(*near) + "?)" : ""));
}

// A relative path is relative to the directory of the file that wrote it.
std::string resolve_path(const Entry& entry) {
  const YamlValue v = value_of(entry);
  const std::string text = convert<std::string>(v);
  if (text.empty()) v.expected("a path");
  const std::filesystem::path path(text);
  if (path.is_absolute()) return path.lexically_normal().string();
  return (std::filesystem::path(entry.file).parent_path() / path).lexically_normal().string();
}

std::string existing_path(const Entry& entry, std::filesystem::file_type type, const char* kind) {
  const std::string path = resolve_path(entry);
  std::error_code ignored;
  const std::filesystem::file_status status = std::filesystem::status(path, ignored);
  if (!std::filesystem::exists(status))
    value_of(entry).fail(std::string(kind) + " " + quoted(path) + " does not exist");
  if (status.type() != type) value_of(entry).fail(quoted(path) + " is not a " + kind);
  return path;
}

std::shared_ptr<MapState> build_map(const YAML::Node& node, const std::string& path, const std::string& file);

std::vector<std::shared_ptr<MapState>> build_items(const YAML::Node& list, const std::string& path,
                                                   const std::string& file) {
  std::vector<std::shared_ptr<MapState>> items;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node item = list[i];
    items.push_back(item.IsMap() ? build_map(item, path + "[" + std::to_string(i) + "]", file) : nullptr);
  }
  return items;
}

std::shared_ptr<MapState> build_map(const YAML::Node& node, const std::string& path, const std::string& file) {
  auto map = std::make_shared<MapState>();
  map->path = path;
  map->file = file;
  map->mark = node.Mark();
  for (const auto& key_value : node) {
    const YAML::Node& key = key_value.first;
    if (!key.IsScalar()) throw_at(location(file, key.Mark()), path, "expected a key name, got " + describe(key));
    Entry entry{.key = key.Scalar(),
                .path = join_key(path, key.Scalar()),
                .file = file,
                .key_mark = key.Mark(),
                .value = key_value.second};
    // yaml-cpp keeps duplicate keys and lookups would silently take one of them.
    if (const Entry* first = map->find(entry.key))
      throw_at(location(file, key.Mark()), entry.path,
               "duplicate key (first given at line " + std::to_string(first->key_mark.line + 1) + ")");
    if (entry.value.IsMap()) entry.map = build_map(entry.value, entry.path, file);
    if (entry.value.IsSequence()) entry.items = build_items(entry.value, entry.path, file);
    map->entries.push_back(std::move(entry));
  }
  return map;
}

std::shared_ptr<MapState> merge(const std::shared_ptr<MapState>& base, const std::shared_ptr<MapState>& overrides) {
  auto merged = std::make_shared<MapState>();
  merged->path = base->path;
  merged->file = base->file;
  merged->mark = base->mark;
  merged->merged_from = {base, overrides};
  for (const Entry& entry : base->entries) {
    const Entry* replacement = overrides->find(entry.key);
    if (!replacement) {
      merged->entries.push_back(entry);
    } else if (entry.map && replacement->map) {
      Entry both = entry;
      both.map = merge(entry.map, replacement->map);
      merged->entries.push_back(std::move(both));
    } else {
      merged->entries.push_back(*replacement);
    }
  }
  for (const Entry& entry : overrides->entries)
    if (!base->find(entry.key)) merged->entries.push_back(entry);
  return merged;
}

void read_everything(MapState& map) {
  for (Entry& entry : map.entries) {
    map.read(entry.key);
    if (entry.map) read_everything(*entry.map);
    for (const auto& item : entry.items)
      if (item) read_everything(*item);
  }
}

// Every map under `map` (itself included) that the program could have asked keys of: the file's
// maps and the sections it lacks.
void collect_maps(const MapState& map, std::vector<const MapState*>& out) {
  out.push_back(&map);
  for (const Entry& entry : map.entries) {
    if (entry.map) collect_maps(*entry.map, out);
    for (const auto& item : entry.items)
      if (item) collect_maps(*item, out);
  }
  for (const auto& [key, absent] : map.absent_children) collect_maps(*absent, out);
}

// Where else the program asked for `key`: "train.lr", or "the top-level \"tokenizer\"".
std::string elsewhere(const std::string& key, const MapState& here, const std::vector<const MapState*>& maps) {
  std::vector<std::string> places;
  for (const MapState* map : maps) {
    if (map == &here || !map->asked.count(key)) continue;
    const std::string place = map->path.empty() ? "the top-level " + quoted(key) : quoted(join_key(map->path, key));
    if (std::find(places.begin(), places.end(), place) == places.end()) places.push_back(place);
  }
  std::string text;
  for (size_t i = 0; i < places.size() && i < 2; ++i) text += (i ? " or " : "") + places[i];
  return text;
}

// A key the program never read: a key it asked for elsewhere (a setting in the wrong section), a
// near spelling of one asked for here, or else the keys known here.
std::string unknown_key_hint(const std::string& key, const MapState& map, const std::vector<const MapState*>& maps) {
  if (const std::string place = elsewhere(key, map, maps); !place.empty()) return " (did you mean " + place + "?)";
  if (const std::string* near = closest(key, map.asked)) return " (did you mean " + quoted(*near) + "?)";
  if (map.asked.empty()) return "";
  return " (known keys here: " + join_quoted(map.asked) + ")";
}

void collect_unused(const MapState& map, const std::vector<const MapState*>& maps, std::vector<std::string>& out) {
  for (const Entry& entry : map.entries) {
    if (!entry.read) {
      out.push_back(location(entry.file, entry.key_mark) + ": " + entry.path + ": unknown key" +
                    unknown_key_hint(entry.key, map, maps));
      continue;
    }
    if (entry.map) collect_unused(*entry.map, maps, out);
    for (const auto& item : entry.items)
      if (item) collect_unused(*item, maps, out);
  }
}

// The keys never read that are near spellings of a key the program asked for and did not find:
// when reading stops at a missing setting, the likely cause ("dta:" leaves "data:" missing).
void collect_misspelled(const MapState& map, std::vector<std::string>& out) {
  for (const Entry& entry : map.entries) {
    if (!entry.read) {
      const std::string* near = closest(entry.key, map.asked);
      const Entry* intended = near ? map.find(*near) : nullptr;
      if (near && (!intended || intended->value.IsNull()))
        out.push_back(location(entry.file, entry.key_mark) + ": " + entry.path + ": unknown key (did you mean " +
                      quoted(*near) + "?)");
      continue;
    }
    if (entry.map) collect_misspelled(*entry.map, out);
    for (const auto& item : entry.items)
      if (item) collect_misspelled(*item, out);
  }
}

YAML::Node load_yaml(const std::string& text, const std::string& source_name) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(location(source_name, e.mark) + ": invalid YAML: " + e.msg);
  }
}

}  // namespace

bool Bounds::contains(double x) const {
  return (min_exclusive ? x > min : x >= min) && (max_exclusive ? x < max : x <= max);
}

std::string Bounds::str() const {
  const bool has_min = std::isfinite(min), has_max = std::isfinite(max);
  if (has_min && has_max)
    return (min_exclusive ? "in (" : "in [") + number_text(min) + ", " + number_text(max) + (max_exclusive ? ")" : "]");
  if (has_min) return (min_exclusive ? "> " : ">= ") + number_text(min);
  if (has_max) return (max_exclusive ? "< " : "<= ") + number_text(max);
  return "a number";
}

ConfigNode::ConfigNode() : state_(std::make_shared<MapState>()) {}

ConfigNode::ConfigNode(std::shared_ptr<MapState> state) : state_(std::move(state)) {}

ConfigNode ConfigNode::load_file(const std::string& path) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored))
    throw Error("cannot read config file " + quoted(path) + ": it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read config file " + quoted(path) + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), path);
}

ConfigNode ConfigNode::parse(const std::string& text, const std::string& source_name) {
  const YAML::Node root = load_yaml(text, source_name);
  if (root.IsNull()) return ConfigNode(build_map(YAML::Node(YAML::NodeType::Map), "", source_name));
  if (!root.IsMap())
    throw Error(location(source_name, root.Mark()) + ": expected a map of settings at the top level, got " +
                describe(root));
  return ConfigNode(build_map(root, "", source_name));
}

const std::string& ConfigNode::key_path() const { return state_->path; }

const std::string& ConfigNode::source() const { return state_->file; }

bool ConfigNode::has(const std::string& key) const {
  state_->know(key);
  const Entry* entry = state_->find(key);
  return entry && !entry->value.IsNull();
}

bool ConfigNode::is_null(const std::string& key) const {
  const Entry* entry = state_->read(key);
  return entry && entry->value.IsNull();
}

template <ConfigValue T>
std::optional<T> ConfigNode::get_optional(const std::string& key) const {
  const Entry* entry = given(*state_, key);
  return entry ? std::optional<T>(convert<T>(value_of(*entry))) : std::nullopt;
}

template <ConfigValue T>
T ConfigNode::get(const std::string& key, const std::type_identity_t<T>& default_value) const {
  const Entry* entry = given(*state_, key);
  return entry ? convert<T>(value_of(*entry)) : default_value;
}

template <ConfigValue T>
T ConfigNode::require(const std::string& key) const {
  return convert<T>(value_of(required(*state_, key)));
}

template <ConfigNumber T>
T ConfigNode::get(const std::string& key, const std::type_identity_t<T>& default_value, const Bounds& bounds) const {
  const Entry* entry = given(*state_, key);
  return entry ? convert_within<T>(value_of(*entry), bounds) : default_value;
}

template <ConfigNumber T>
T ConfigNode::require(const std::string& key, const Bounds& bounds) const {
  return convert_within<T>(value_of(required(*state_, key)), bounds);
}

#define FE_INSTANTIATE_GETTERS(T)                                                          \
  template T ConfigNode::get<T>(const std::string&, const std::type_identity_t<T>&) const; \
  template T ConfigNode::require<T>(const std::string&) const;                             \
  template std::optional<T> ConfigNode::get_optional<T>(const std::string&) const;
FE_INSTANTIATE_GETTERS(bool)
FE_INSTANTIATE_GETTERS(int64_t)
FE_INSTANTIATE_GETTERS(double)
FE_INSTANTIATE_GETTERS(std::string)
FE_INSTANTIATE_GETTERS(std::vector<std::string>)
FE_INSTANTIATE_GETTERS(std::vector<int64_t>)
FE_INSTANTIATE_GETTERS(std::vector<double>)
#undef FE_INSTANTIATE_GETTERS

#define FE_INSTANTIATE_BOUNDED_GETTERS(T)                                                                 \
  template T ConfigNode::get<T>(const std::string&, const std::type_identity_t<T>&, const Bounds&) const; \
  template T ConfigNode::require<T>(const std::string&, const Bounds&) const;
FE_INSTANTIATE_BOUNDED_GETTERS(int64_t)
FE_INSTANTIATE_BOUNDED_GETTERS(double)
#undef FE_INSTANTIATE_BOUNDED_GETTERS

std::string ConfigNode::get_choice(const std::string& key, const std::vector<std::string>& allowed,
                                   const std::string& default_value) const {
  const Entry* entry = given(*state_, key);
  return entry ? checked_choice(value_of(*entry), allowed) : default_value;
}

std::string ConfigNode::require_choice(const std::string& key, const std::vector<std::string>& allowed) const {
  return checked_choice(value_of(required(*state_, key)), allowed);
}

std::string ConfigNode::get_path(const std::string& key, const std::string& default_value) const {
  const Entry* entry = given(*state_, key);
  return entry ? resolve_path(*entry) : default_value;
}

std::string ConfigNode::require_path(const std::string& key) const { return resolve_path(required(*state_, key)); }

std::string ConfigNode::existing_file(const std::string& key) const {
  return existing_path(required(*state_, key), std::filesystem::file_type::regular, "file");
}

std::string ConfigNode::existing_dir(const std::string& key) const {
  return existing_path(required(*state_, key), std::filesystem::file_type::directory, "directory");
}

ConfigNode ConfigNode::child(const std::string& key) const {
  const Entry* entry = given(*state_, key);
  if (!entry) {
    std::shared_ptr<MapState>& empty = state_->absent_children[key];
    if (!empty) {
      empty = std::make_shared<MapState>();
      empty->path = join_key(state_->path, key);
      empty->file = state_->file;
    }
    return ConfigNode(empty);
  }
  if (!entry->map) value_of(*entry).expected("a map");
  return ConfigNode(entry->map);
}

std::vector<ConfigNode> ConfigNode::children_list(const std::string& key) const {
  const Entry* entry = given(*state_, key);
  if (!entry) return {};
  const YamlValue list = value_of(*entry);
  if (!entry->value.IsSequence()) list.expected("a list of maps");
  std::vector<ConfigNode> children;
  for (size_t i = 0; i < entry->items.size(); ++i) {
    if (!entry->items[i]) element(list, i).expected("a map");
    children.push_back(ConfigNode(entry->items[i]));
  }
  return children;
}

void ConfigNode::ignore(const std::string& key) const {
  const Entry* entry = state_->read(key);
  if (!entry) return;
  if (entry->map) read_everything(*entry->map);
  for (const auto& item : entry->items)
    if (item) read_everything(*item);
}

ConfigNode ConfigNode::with_overrides(const ConfigNode& overrides) const {
  return ConfigNode(merge(state_, overrides.state_));
}

void ConfigNode::check_all_keys_used() const {
  std::vector<const MapState*> maps;
  collect_maps(*state_, maps);
  std::vector<std::string> unused;
  collect_unused(*state_, maps, unused);
  if (unused.empty()) return;
  std::string message;
  for (const std::string& line : unused) message += (message.empty() ? "" : "\n") + line;
  throw Error(message);
}

void ConfigNode::read_checked(const std::function<void()>& read) const {
  try {
    read();
  } catch (const Error& error) {
    std::vector<std::string> misspelled;
    collect_misspelled(*state_, misspelled);
    if (misspelled.empty()) throw;
    std::string message;
    for (const std::string& line : misspelled) message += line + "\n";
    throw Error(message + error.what());
  }
  check_all_keys_used();
}

void ConfigNode::fail(const std::string& key, const std::string& message) const {
  if (const Entry* entry = state_->find(key)) value_of(*entry).fail(message);
  throw_at(location(state_->file, state_->mark), join_key(state_->path, key), message);
}

}  // namespace fe
