// core/number_text.h — a number as error messages quote it: the shortest iostream form (six
// significant digits), so "eta = 0.001" reads as the config spelled it.
#pragma once

#include <sstream>
#include <string>

namespace fe {

inline std::string number_text(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

}  // namespace fe
