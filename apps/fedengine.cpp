// fedengine — the command-line interface. Each subcommand documents itself under --help.
#include <iostream>

#include "apps/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"fedengine: federated LoRA fine-tuning of Llama-style models.\n"
               "Run `fedengine COMMAND --help` for the options of a command."};
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
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {  // fe::Error, tokenizer and filesystem errors: all name their input
    std::cerr << "fedengine: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
