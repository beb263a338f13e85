// Kubernetes resource quantities ("128Mi", "500m", "1e9"), as an exec app's
// `resources.limits` spells them, to and from the model's integers.
//
// The grammar is Kubernetes' (k8s.io/apimachinery resource.Quantity): a
// decimal number (digits with an optional fraction, no sign here since limits
// are never negative), then one suffix: a binary SI one (Ki Mi Gi Ti Pi Ei),
// a decimal SI one (m, none, k M G T P E) or a decimal exponent (e3, E-2).
// Unlike Kubernetes, a value is never rounded: a quantity that is not a whole
// number of the model's unit (bytes, millicores) is refused, so the value the
// agent enforces is the value written.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "workloads/result.h"

namespace podless::workloads {

// Bytes: "134217728", "128Mi", "1G", "1.5Gi", "1e9". Errors (INVALID_ARGUMENT)
// are a sentence about `text`, without a field name, e.g.
// "\"12Q\" is not a Kubernetes quantity (e.g. 134217728, 128Mi, 1G)".
Result<uint64_t> ParseMemoryQuantity(std::string_view text);

// Millicores: "500m", "1", "0.5", "2.25". Fractions finer than 1m, binary
// suffixes and values above 4294967295m are errors.
Result<uint32_t> ParseCpuQuantity(std::string_view text);

// The canonical text of a byte count: in the largest binary unit that
// divides it ("128Mi"), unless the largest decimal one that does is shorter
// ("1G", "1T" rather than "976562500Ki"); plain bytes when neither divides.
// ParseMemoryQuantity gives the same value back.
std::string FormatMemoryQuantity(uint64_t bytes);

// The canonical text of millicores: whole cores plain ("2"), else "500m".
std::string FormatCpuQuantity(uint32_t millicores);

}  // namespace podless::workloads
