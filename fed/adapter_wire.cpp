#include "fed/adapter_wire.h"

#include "engine/safetensors.h"
#include "kernels/elementwise.h"

namespace fe::fed {

std::vector<TensorSpec> adapter_specs(const LoraAdapter& adapter) {
  std::vector<TensorSpec> specs;
  for (const auto& [name, t] : adapter.named_tensors()) specs.push_back({name, t.shape(), t.dtype()});
  return specs;
}

void load_adapter_tensors(LoraAdapter& adapter, const std::vector<NamedTensor>& tensors) {
  const NamedTensors slots = adapter.named_tensors();
  if (slots.size() != tensors.size())
    throw Error("adapter: " + std::to_string(tensors.size()) + " tensors for " + std::to_string(slots.size()) + " slots");
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].first != tensors[i].name)
      throw Error("adapter: expected tensor \"" + slots[i].first + "\", got \"" + tensors[i].name + "\"");
    kernels::convert(slots[i].second, tensors[i].tensor);
  }
}

std::vector<NamedTensor> to_wire(const NamedTensors& tensors) {
  std::vector<NamedTensor> wire;
  for (const auto& [name, t] : tensors) wire.push_back({name, t});
  return wire;
}

}  // namespace fe::fed
