// fed/adapter_wire.h — LoRA adapters as the flat lists of named tensors that travel and aggregate.
#pragma once

#include <vector>

#include "engine/lora.h"
#include "fed/protocol.h"
#include "fed/strategy.h"

namespace fe::fed {

std::vector<TensorSpec> adapter_specs(const LoraAdapter& adapter);
// Copies tensors (in adapter_specs order, as check_tensors leaves them) into the adapter.
void load_adapter_tensors(LoraAdapter& adapter, const std::vector<NamedTensor>& tensors);
std::vector<NamedTensor> to_wire(const NamedTensors& tensors);

}  // namespace fe::fed
