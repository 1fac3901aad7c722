#include "worker/step_work.h"

#include <cstring>
#include <string>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tessera {
namespace {

class Writer {
 public:
  template <typename T>
  void Scalar(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const size_t at = out_.size();
    out_.resize(at + sizeof(T));
    std::memcpy(out_.data() + at, &v, sizeof(T));
  }
  template <typename T>
  void Array(const std::vector<T>& v) {
    Scalar<int64_t>(static_cast<int64_t>(v.size()));
    const size_t at = out_.size();
    out_.resize(at + v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(out_.data() + at, v.data(), v.size() * sizeof(T));
  }
  std::vector<std::byte> Take() { return std::move(out_); }

 private:
  std::vector<std::byte> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  template <typename T>
  absl::Status Scalar(T& v, const char* what) {
    if (in_.size() - at_ < sizeof(T)) return Truncated(what);
    std::memcpy(&v, in_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status Array(std::vector<T>& v, const char* what) {
    int64_t n = 0;
    RETURN_IF_ERROR(Scalar(n, what));
    if (n < 0 || static_cast<uint64_t>(n) > (in_.size() - at_) / sizeof(T)) {
      return Truncated(what);
    }
    v.resize(static_cast<size_t>(n));
    if (n > 0) std::memcpy(v.data(), in_.data() + at_, v.size() * sizeof(T));
    at_ += v.size() * sizeof(T);
    return absl::OkStatus();
  }
  bool done() const { return at_ == in_.size(); }

 private:
  absl::Status Truncated(const char* what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("StepWork: ", what, " runs past the ", in_.size(), " bytes received"));
  }
  std::span<const std::byte> in_;
  size_t at_ = 0;
};

}  // namespace

std::vector<std::byte> EncodeStepWork(const StepWork& w) {
  Writer out;
  out.Array(w.swap_out);
  out.Array(w.swap_in);
  out.Array(w.copies);
  out.Array(w.token_ids);
  out.Array(w.positions);
  out.Scalar<int64_t>(static_cast<int64_t>(w.sequences.size()));
  for (const StepWork::Sequence& s : w.sequences) {
    out.Scalar(s.query_start);
    out.Scalar(s.num_queries);
    out.Scalar(s.context_len);
    out.Array(s.block_table);
  }
  out.Array(w.logits_rows);
  out.Array(w.hidden_rows);
  return out.Take();
}

absl::StatusOr<StepWork> DecodeStepWork(std::span<const std::byte> bytes) {
  Reader in(bytes);
  StepWork w;
  RETURN_IF_ERROR(in.Array(w.swap_out, "swap_out"));
  RETURN_IF_ERROR(in.Array(w.swap_in, "swap_in"));
  RETURN_IF_ERROR(in.Array(w.copies, "copies"));
  RETURN_IF_ERROR(in.Array(w.token_ids, "token_ids"));
  RETURN_IF_ERROR(in.Array(w.positions, "positions"));
  int64_t n = 0;
  RETURN_IF_ERROR(in.Scalar(n, "sequences"));
  // Each sequence takes at least 32 bytes: a count this large cannot be real.
  if (n < 0 || static_cast<uint64_t>(n) > bytes.size() / 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("StepWork: ", n, " sequences in ", bytes.size(), " bytes"));
  }
  w.sequences.resize(static_cast<size_t>(n));
  for (StepWork::Sequence& s : w.sequences) {
    RETURN_IF_ERROR(in.Scalar(s.query_start, "query_start"));
    RETURN_IF_ERROR(in.Scalar(s.num_queries, "num_queries"));
    RETURN_IF_ERROR(in.Scalar(s.context_len, "context_len"));
    RETURN_IF_ERROR(in.Array(s.block_table, "block_table"));
  }
  RETURN_IF_ERROR(in.Array(w.logits_rows, "logits_rows"));
  RETURN_IF_ERROR(in.Array(w.hidden_rows, "hidden_rows"));
  if (!in.done()) return absl::InvalidArgumentError("StepWork: bytes left after the end");
  return w;
}

PagedBatch StepWork::View(std::vector<PagedSequence>& storage) const {
  storage.clear();
  storage.reserve(sequences.size());
  for (const Sequence& s : sequences) {
    storage.push_back({s.query_start, s.num_queries, s.context_len, s.block_table});
  }
  return {token_ids, positions, storage, logits_rows, hidden_rows};
}

absl::Status MoveKvBlocks(const StepWork& work, LlamaModel& model, PagedKvCache& cache,
                          std::optional<PagedKvCache>& host) {
  Backend& b = *model.backend();
  if (!work.swap_out.empty() || !work.swap_in.empty()) {
    if (!host.has_value()) {
      return absl::InternalError("StepWork swaps blocks but there is no swap space");
    }
    RETURN_IF_ERROR(
        b.SwapBlocks(cache.pools(), cache.layout(), host->pools(), host->layout(), work.swap_out));
    RETURN_IF_ERROR(
        b.SwapBlocks(host->pools(), host->layout(), cache.pools(), cache.layout(), work.swap_in));
  }
  if (work.copies.empty()) return absl::OkStatus();
  return b.CopyBlocks(cache.pools(), cache.layout(), work.copies);
}

absl::Status RunStepWork(const StepWork& work, LlamaModel& model, PagedKvCache& cache,
                         std::optional<PagedKvCache>& host, std::vector<float>* logits,
                         std::vector<float>* hidden, LogitsSelection* selection) {
  RETURN_IF_ERROR(MoveKvBlocks(work, model, cache, host));
  if (selection != nullptr) {
    *selection = LogitsSelection{};
    selection->wants = work.logits_wants;
  }
  if (!work.has_forward()) return absl::OkStatus();
  std::vector<PagedSequence> sequences;
  const bool select = selection != nullptr && !work.logits_wants.empty();
  return model.ForwardPaged(work.View(sequences), cache, logits, hidden, {},
                            select ? selection : nullptr);
}

}  // namespace tessera
