// Argument checks of the row sampling ops (Backend::TopKRows, SampleRows,
// SoftmaxDenominators and EditLogits in kernels/ops.h), shared by every backend that implements them, so
// that a bad call gets the same INVALID_ARGUMENT, naming the op and the field, everywhere.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "kernels/logit_edit.h"

namespace tessera {

[[nodiscard]] absl::Status CheckTopKRowsArgs(std::string_view op, int64_t rows, int64_t dim,
                                             std::span<const int32_t> k,
                                             std::span<const float> temperature,
                                             int64_t capacity);
[[nodiscard]] absl::Status CheckSampleRowsArgs(std::string_view op, int64_t rows, int64_t dim,
                                               std::span<const float> temperature,
                                               std::span<const double> u);
[[nodiscard]] absl::Status CheckSoftmaxDenominatorsArgs(std::string_view op, int64_t rows,
                                                        int64_t dim,
                                                        std::span<const float> temperature);

[[nodiscard]] absl::Status CheckEditLogitsArgs(std::string_view op, int64_t rows, int64_t dim,
                                               std::span<const LogitEdit> edits);

}  // namespace tessera
