// run, server, client, keygen, aggregate: the federation.
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "apps/commands.h"
#include "engine/dataset.h"
#include "engine/lora.h"
#include "fed/adapter_wire.h"
#include "fed/client.h"
#include "fed/launcher.h"
#include "fed/partition.h"
#include "fed/plan.h"
#include "fed/processes.h"
#include "fed/server.h"
#include "fed/transport.h"

namespace fe::cli {
namespace {

namespace fs = std::filesystem;

const char* kFederationHelp = "federation YAML (see configs/federation.yaml)";

std::string self_executable() { return fs::read_symlink("/proc/self/exe").string(); }

// A PEFT adapter directory as named tensors, without needing the base model.
NamedTensors read_adapter_tensors(const std::string& dir) { return read_named_tensors(peft_weights_file(dir)); }

// "10,30" → {10, 30}; "" → {} (equal weights).
std::vector<int64_t> parse_counts(const std::string& text) {
  std::vector<int64_t> counts;
  if (text.empty()) return counts;
  std::stringstream list(text);
  for (std::string item; std::getline(list, item, ',');) {
    size_t used = 0;
    long long count = -1;
    try {
      count = std::stoll(item, &used);
    } catch (const std::exception&) {
    }
    if (used != item.size() || count < 1)
      throw Error("--examples " + text + ": \"" + item + "\" is not a positive count (expected counts like 10,30)");
    counts.push_back(count);
  }
  return counts;
}

// An existing directory. A bare number where an adapter belongs is a count that --examples did not
// take: it takes one comma-separated list, so that counts and adapters never run into each other.
CLI::Validator adapter_directory() {
  return CLI::Validator(
      [](std::string& path) -> std::string {
        if (fs::is_directory(path)) return "";
        if (!path.empty() && path.find_first_not_of("0123456789") == std::string::npos)
          return "\"" + path + "\" is a number, not an adapter directory: give --examples its counts as one " +
                 "comma-separated list (--examples 10,30)";
        return "adapter directory \"" + path + "\" does not exist";
      },
      "DIR");
}

}  // namespace

void add_run(CLI::App& app) {
  struct Args {
    std::string config;
    bool resume = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "Run a whole federation from one YAML file: the server in this process and one process per\n"
      "participant. Prints a summary per round; the global adapter lands in OUTPUT/adapter (PEFT),\n"
      "round metrics in OUTPUT/metrics.jsonl, participant logs in OUTPUT/participants/NAME/.\n"
      "Ctrl-C stops everything cleanly; --resume continues from the last completed round.");
  cmd->add_option("config", args->config, kFederationHelp)->required()->check(CLI::ExistingFile);
  cmd->add_flag("--resume", args->resume, "continue from OUTPUT/checkpoint");
  cmd->callback([args] {
    const int status = fed::launch_federation(args->config, self_executable(), args->resume, std::cout);
    if (status != 0) std::exit(status);
  });
}

void add_server(CLI::App& app) {
  struct Args {
    std::string config;
    bool resume = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "server",
      "Run only the federation server (participants on other machines run `fedengine client`).\n"
      "Ctrl-C or SIGTERM stops it cleanly: the round in progress is abandoned, the participants are\n"
      "told to shut down, the checkpoint keeps the last completed round (continue with --resume)\n"
      "and the exit status is 130. It owns OUTPUT while it runs (OUTPUT/server.lock): a second\n"
      "server on the same output.dir is refused.");
  cmd->add_option("config", args->config, kFederationHelp)->required()->check(CLI::ExistingFile);
  cmd->add_flag("--resume", args->resume, "continue from OUTPUT/checkpoint");
  cmd->callback([args] {
    const fed::FederationConfig config = fed::read_federation_config(args->config);
    const std::atomic<bool>* stop = fed::stop_on_signals();
    fed::Server server(config, args->resume, std::cout);
    server.run(stop);
    if (*stop) {
      std::cout << "[server] stopped by a signal; " << config.shared.output_dir
                << "/checkpoint holds the last completed round (continue with --resume)" << std::endl;
      std::exit(130);
    }
  });
}

void add_client(CLI::App& app) {
  struct Args {
    std::string config, name, server;
    size_t node = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "client",
      "Run one participant of a federation: join the server, train when sampled. Starts the ranks of\n"
      "the participant's node NODE (its `nodes` list; one process per rank). With RANK set in the\n"
      "environment (torchrun style: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) it runs\n"
      "that one rank instead. Ctrl-C or SIGTERM leaves the federation cleanly.");
  cmd->add_option("config", args->config, kFederationHelp)->required()->check(CLI::ExistingFile);
  cmd->add_option("--name", args->name, "which participant of the config this is")->required();
  cmd->add_option("--server", args->server, "server endpoint (default: server.address of the config)");
  cmd->add_option("--node", args->node, "which of the participant's nodes this machine is (default 0)");
  cmd->callback([args] {
    fed::end_with_parent();
    const fed::FederationConfig config = fed::read_federation_config(args->config);
    const std::atomic<bool>* stop = fed::stop_on_signals();
    const int status = std::getenv("RANK")
                           ? fed::run_client(config, args->name, args->server, std::cout, stop, RankInfo::from_environment())
                           : fed::run_participant_node(config, args->name, args->node, args->server, self_executable(),
                                                       std::cout, stop);
    if (status != 0) std::exit(status);
  });
}

void add_plan(CLI::App& app) {
  struct Args {
    std::string config, out, fedengine;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "plan", "Write the scripts that start each role by hand, one per machine: OUT/server.sh and\n"
              "OUT/<participant>.sh (each checks its files, then runs fedengine server/client).");
  cmd->add_option("config", args->config, kFederationHelp)->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out, "output directory")->required();
  cmd->add_option("--fedengine", args->fedengine, "the fedengine command on the target machines (default: this binary)");
  cmd->callback([args] {
    const fed::FederationConfig config = fed::read_federation_config(args->config);
    for (const std::string& warning : fed::plan_warnings(config))
      std::cerr << "fedengine: warning: " << warning << "\n";
    const auto scripts = fed::plan_federation(config, args->fedengine.empty() ? self_executable() : args->fedengine);
    fed::write_plan(scripts, args->out);
    for (const auto& s : scripts) std::cout << "wrote " << (fs::path(args->out) / s.file_name).string() << "\n";
  });
}

void add_split(CLI::App& app) {
  struct Args {
    std::string input, out, method = "iid", field;
    int64_t parts = 2;
    double alpha = 0.5;
    uint64_t seed = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "split", "Split one JSONL data set into participants for a simulation: OUT/part-K.jsonl.\n"
               "iid: a seeded shuffle cut into near-equal parts; dirichlet: per value of --label-field,\n"
               "shares drawn from Dirichlet(alpha) (small alpha: very uneven, non-IID participants).");
  cmd->add_option("input", args->input, "JSONL file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out, "output directory")->required();
  cmd->add_option("--parts", args->parts, "participants")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--method", args->method, "iid or dirichlet")->capture_default_str()->check(CLI::IsMember({"iid", "dirichlet"}));
  cmd->add_option("--alpha", args->alpha, "Dirichlet concentration")->capture_default_str();
  cmd->add_option("--label-field", args->field, "the JSON field whose values are the categories (dirichlet)");
  cmd->add_option("--seed", args->seed, "random seed")->capture_default_str();
  cmd->callback([args] {
    const bool dirichlet = args->method == "dirichlet";
    if (dirichlet && args->field.empty()) throw Error("--method dirichlet needs --label-field");
    const LabelledLines data = read_labelled_lines(args->input, dirichlet ? args->field : "");
    const auto parts = dirichlet ? fed::dirichlet_split(data.labels, args->parts, args->alpha, args->seed)
                                 : fed::iid_split(static_cast<int64_t>(data.lines.size()), args->parts, args->seed);
    fs::create_directories(args->out);
    for (size_t k = 0; k < parts.size(); ++k) {
      const fs::path file = fs::path(args->out) / ("part-" + std::to_string(k) + ".jsonl");
      std::ofstream out(file);
      for (int64_t index : parts[k]) out << data.lines[index] << "\n";
      std::cout << "wrote " << file.string() << ": " << parts[k].size() << " examples\n";
    }
  });
}

void add_keygen(CLI::App& app) {
  auto prefix = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "keygen", "Create a CurveZMQ keypair: PREFIX.key (secret, mode 0600) and PREFIX.pub (give this one away).");
  cmd->add_option("prefix", *prefix, "output path without extension, e.g. keys/alice")->required();
  cmd->callback([prefix] {
    if (fs::path(*prefix).has_parent_path()) fs::create_directories(fs::path(*prefix).parent_path());
    fed::save_keypair(fed::generate_keypair(), *prefix);
    std::cout << "wrote " << *prefix << ".key and " << *prefix << ".pub\n";
  });
}

void add_aggregate(CLI::App& app) {
  struct Args {
    fed::StrategyOptions strategy;
    std::string base, out, examples;
    std::vector<std::string> adapters;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "aggregate",
      "Aggregate PEFT adapters offline, as one server round would: OUT = strategy(BASE; A1, A2, ...).\n"
      "FedAvg with equal weights also merges adapters by hand. The fedopt strategies (fedadagrad, fedadam,\n"
      "fedyogi) step from BASE along the pseudo-gradient Δ = mean(A) − BASE with moments that start at zero:\n"
      "m = (1 − β₁)·Δ, v from Δ² (fed/strategy.h), OUT = BASE + η·m / (√v + τ).");
  cmd->add_option("--strategy", args->strategy.name, "fedavg, fedprox, fedadagrad, fedadam or fedyogi")->capture_default_str();
  cmd->add_option("--eta", args->strategy.eta, "server learning rate η (fedadagrad/fedadam/fedyogi)")
      ->capture_default_str();
  cmd->add_option("--beta1", args->strategy.beta1, "first-moment decay β₁ in [0, 1) (fedadagrad/fedadam/fedyogi)")
      ->capture_default_str();
  cmd->add_option("--beta2", args->strategy.beta2, "second-moment decay β₂ in [0, 1) (fedadam/fedyogi)")
      ->capture_default_str();
  cmd->add_option("--tau", args->strategy.tau,
                  "adaptivity τ > 0: added to √v, and v starts at τ² (fedadagrad/fedadam/fedyogi)")
      ->capture_default_str();
  cmd->add_flag("--bias-correction", args->strategy.bias_correction, "bias-corrected moments (fedadam/fedyogi)");
  cmd->add_option("--base", args->base, "the current global adapter")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--out", args->out, "output adapter directory")->required();
  cmd->add_option("--examples", args->examples,
                  "examples per adapter, one comma-separated list in the adapters' order (--examples 10,30):\n"
                  "their weights; default all equal");
  cmd->add_option("adapters", args->adapters, "participants' adapters")->required()->check(adapter_directory());
  cmd->callback([args] {
    const std::vector<int64_t> examples = parse_counts(args->examples);
    if (!examples.empty() && examples.size() != args->adapters.size())
      throw Error("--examples " + args->examples + ": needs one count per adapter (" +
                  std::to_string(args->adapters.size()) + "), got " + std::to_string(examples.size()));
    const NamedTensors base = read_adapter_tensors(args->base);
    std::vector<fed::ClientResult> results;
    for (size_t i = 0; i < args->adapters.size(); ++i)
      results.push_back(
          {args->adapters[i], read_adapter_tensors(args->adapters[i]), examples.empty() ? 1 : examples[i]});
    const NamedTensors merged = fed::make_strategy(args->strategy)->aggregate(1, base, results);
    require_finite(merged, args->out);
    fs::create_directories(args->out);
    write_named_tensors((fs::path(args->out) / kPeftWeightsFile).string(), merged);
    fs::copy_file(fs::path(args->base) / kPeftConfigFile, fs::path(args->out) / kPeftConfigFile,
                  fs::copy_options::overwrite_existing);
    std::cout << "wrote " << args->out << ": " << args->strategy.name << " of " << args->adapters.size() << " adapters\n";
  });
}

}  // namespace fe::cli
