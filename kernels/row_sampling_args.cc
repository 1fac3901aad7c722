#include "kernels/row_sampling_args.h"

#include <string>

#include "absl/strings/str_format.h"

namespace tessera {
namespace {

absl::Status CheckShape(std::string_view op, int64_t rows, int64_t dim,
                        std::span<const float> temperature) {
  if (rows < 0 || dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: rows=%d and dim=%d must not be negative", op, rows, dim));
  }
  if (temperature.size() != static_cast<size_t>(rows)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: temperature has %d entries for %d rows", op, temperature.size(), rows));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckTopKRowsArgs(std::string_view op, int64_t rows, int64_t dim,
                               std::span<const int32_t> k, std::span<const float> temperature,
                               int64_t capacity) {
  if (absl::Status shape = CheckShape(op, rows, dim, temperature); !shape.ok()) return shape;
  if (capacity < 0 || k.size() != static_cast<size_t>(rows)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: capacity=%d must not be negative, and k has %d entries for %d rows", op, capacity,
        k.size(), rows));
  }
  for (size_t r = 0; r < k.size(); ++r) {
    if (k[r] > 0 && !(temperature[r] > 0)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: temperature[%d] = %g must be > 0", op, r, temperature[r]));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSampleRowsArgs(std::string_view op, int64_t rows, int64_t dim,
                                 std::span<const float> temperature, std::span<const double> u) {
  if (absl::Status shape = CheckShape(op, rows, dim, temperature); !shape.ok()) return shape;
  if (u.size() != static_cast<size_t>(rows)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: u has %d entries for %d rows", op, u.size(), rows));
  }
  for (size_t r = 0; r < u.size(); ++r) {
    if (u[r] >= 0 && (!(temperature[r] > 0) || !(u[r] < 1))) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: temperature[%d] = %g must be > 0 and u[%d] = %g below 1", op, r,
                          temperature[r], r, u[r]));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSoftmaxDenominatorsArgs(std::string_view op, int64_t rows, int64_t dim,
                                          std::span<const float> temperature) {
  return CheckShape(op, rows, dim, temperature);
}

absl::Status CheckEditLogitsArgs(std::string_view op, int64_t rows, int64_t dim,
                                 std::span<const LogitEdit> edits) {
  if (rows < 0 || dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: rows=%d and dim=%d must not be negative", op, rows, dim));
  }
  for (size_t i = 0; i < edits.size(); ++i) {
    const LogitEdit& e = edits[i];
    if (e.row < 0 || e.row >= rows || e.token < 0 || e.token >= dim) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: edits[%d] is for row %d, token %d, outside %d rows of %d", op, i,
                          e.row, e.token, rows, dim));
    }
    if (i > 0 && (edits[i - 1].row > e.row ||
                  (edits[i - 1].row == e.row && edits[i - 1].token >= e.token))) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: edits[%d] (row %d, token %d) does not come after edits[%d] (row %d, token %d)", op,
          i, e.row, e.token, i - 1, edits[i - 1].row, edits[i - 1].token));
    }
  }
  return absl::OkStatus();
}

}  // namespace tessera
