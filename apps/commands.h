// apps/commands.h — each fedengine subcommand registers itself on the CLI11 app; its --help is the
// documentation a user sees.
#pragma once

#include <CLI/CLI.hpp>

#include "engine/yaml_config.h"
#include "kernels/view.h"

namespace fe::cli {

void add_init_model(CLI::App& app);
void add_make_data(CLI::App& app);
void add_train(CLI::App& app);
void add_eval(CLI::App& app);
void add_generate(CLI::App& app);
void add_merge(CLI::App& app);
void add_run(CLI::App& app);
void add_server(CLI::App& app);
void add_client(CLI::App& app);
void add_keygen(CLI::App& app);
void add_plan(CLI::App& app);
void add_split(CLI::App& app);
void add_aggregate(CLI::App& app);
void add_import_gguf(CLI::App& app);

// --dtype values for files written to disk.
DType parse_storage_dtype(const std::string& name);

// Accepts an option's value when it is a number within `bounds` (the ranges configs use), and
// otherwise refuses it with the valid range: "--top-p: must be in (0, 1], got 2".
CLI::Validator within(const Bounds& bounds);

}  // namespace fe::cli
