// fedengine — the command-line interface. Each subcommand documents itself under --help.
//
// Every failure prints one way, "fedengine: error: WHAT" on stderr, and exits with one of few
// codes: 1 when a command fails (its message names the file, key or value and the fix), 2 when the
// command line itself is wrong (with the --help that documents it), 130 when interrupted.
#include <iostream>
#include <string>

#include "apps/commands.h"

namespace {

constexpr int kCommandFailed = 1;
constexpr int kUsageError = 2;

// "fedengine train": the innermost command the parser had reached, whose --help documents what
// went wrong.
std::string command_line_of(const CLI::App& app) {
  std::string command = app.get_name();
  for (const CLI::App* at = &app; !at->get_subcommands().empty();) {
    at = at->get_subcommands().front();
    command += " " + at->get_name();
  }
  return command;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "fedengine: federated LoRA fine-tuning of Llama-style models.\n"
      "Run `fedengine COMMAND --help` for the options of a command.",
      "fedengine"};
  app.set_version_flag("--version", "fedengine " FE_VERSION, "print the version and exit");
  app.footer(
      "Exit status: 0 done, 1 the command failed (the message says why), 2 a mistake on the command line,\n"
      "130 interrupted (Ctrl-C).");
  app.require_subcommand(1);
  fe::cli::add_init_model(app);
  fe::cli::add_make_data(app);
  fe::cli::add_train(app);
  fe::cli::add_eval(app);
  fe::cli::add_generate(app);
  fe::cli::add_merge(app);
  fe::cli::add_run(app);
  fe::cli::add_server(app);
  fe::cli::add_client(app);
  fe::cli::add_keygen(app);
  fe::cli::add_plan(app);
  fe::cli::add_split(app);
  fe::cli::add_aggregate(app);
  fe::cli::add_import_gguf(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "fedengine: error: " << e.what() << "\nRun `" << command_line_of(app) << " --help` for its options.\n";
    return kUsageError;
  } catch (const std::exception& e) {  // fe::Error, tokenizer and filesystem errors: all name their input
    std::cerr << "fedengine: error: " << e.what() << "\n";
    return kCommandFailed;
  }
  return 0;
}
