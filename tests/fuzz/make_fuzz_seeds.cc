// Writes the seed corpus: small valid GGUF and safetensors files covering every metadata
// type, several tensor dtypes and alignments. Usage: make_fuzz_seeds OUT_DIR
// (creates OUT_DIR/gguf/ and OUT_DIR/safetensors/).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "formats/gguf_writer.h"
#include "tests/formats/safetensors_builder.h"

namespace {

using tessera::DType;
using tessera::GgufType;
using tessera::GgufValue;
using tessera::GgufWriter;

void Write(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "make_fuzz_seeds: %s\n", std::string(s.message()).c_str());
    std::exit(1);
  }
}

std::string LlamaGguf(uint32_t alignment, uint32_t version) {
  GgufWriter w(alignment);
  w.set_version(version);
  Check(w.AddString("general.architecture", "llama"));
  Check(w.AddString("general.name", "seed"));
  Check(w.AddUint32("llama.context_length", 128));
  Check(w.AddUint32("llama.embedding_length", 64));
  Check(w.AddUint32("llama.feed_forward_length", 128));
  Check(w.AddUint32("llama.block_count", 1));
  Check(w.AddUint32("llama.attention.head_count", 4));
  Check(w.AddUint32("llama.attention.head_count_kv", 2));
  Check(w.AddFloat32("llama.rope.freq_base", 10000.0f));
  Check(w.AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f));
  Check(w.AddString("llama.rope.scaling.type", "yarn"));
  Check(w.AddFloat32("llama.rope.scaling.factor", 2.0f));
  Check(w.AddStringArray("tokenizer.ggml.tokens", {"<s>", "</s>", "a", "b"}));
  Check(w.AddValue("tokenizer.ggml.token_type", GgufValue::I32Array({3, 3, 1, 1})));
  Check(w.AddValue("tokenizer.ggml.scores", GgufValue::F32Array({0, 0, -1, -2})));
  Check(w.AddBool("tokenizer.ggml.add_bos_token", true));
  Check(w.AddValue("x.u8", GgufValue::U8(1)));
  Check(w.AddValue("x.i8", GgufValue::I8(-1)));
  Check(w.AddValue("x.u16", GgufValue::U16(2)));
  Check(w.AddValue("x.i16", GgufValue::I16(-2)));
  Check(w.AddValue("x.i32", GgufValue::I32(-3)));
  Check(w.AddValue("x.u64", GgufValue::U64(4)));
  Check(w.AddValue("x.i64", GgufValue::I64(-4)));
  Check(w.AddValue("x.f64", GgufValue::F64(0.5)));
  Check(w.AddValue("x.nested", GgufValue::Array(GgufType::kArray, {GgufValue::I32Array({1})})));
  std::vector<float> norm(64, 1.0f);
  Check(w.AddTensor("blk.0.attn_norm.weight", DType::kF32, {64}, norm.data(), norm.size() * 4));
  std::string q8(static_cast<size_t>(*tessera::RowBytes(DType::kQ8_0, 64 * 4)), '\x01');
  Check(w.AddTensor("token_embd.weight", DType::kQ8_0, {64, 4}, q8.data(), q8.size()));
  std::string q4k(static_cast<size_t>(*tessera::RowBytes(DType::kQ4_K, 256)), '\x02');
  Check(w.AddTensor("blk.0.ffn_down.weight", DType::kQ4_K, {256, 1}, q4k.data(), q4k.size()));
  std::vector<uint16_t> h(8, 0x3c00);
  Check(w.AddTensor("output.weight", DType::kF16, {8}, h.data(), h.size() * 2));
  return *w.Serialize();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::filesystem::path out(argv[1]);
  std::filesystem::create_directories(out / "gguf");
  std::filesystem::create_directories(out / "safetensors");
  Write(out / "gguf" / "llama_v3_a32.gguf", LlamaGguf(32, 3));
  Write(out / "gguf" / "llama_v2_a64.gguf", LlamaGguf(64, 2));
  Write(out / "gguf" / "llama_v3_a1.gguf", LlamaGguf(1, 3));
  {
    GgufWriter empty;
    Write(out / "gguf" / "empty.gguf", *empty.Serialize());
  }

  using tessera::testing::BytesOf;
  using tessera::testing::SafetensorsBuilder;
  SafetensorsBuilder b;
  b.Add("model.embed_tokens.weight", "F32", {2, 4}, BytesOf(std::vector<float>(8, 0.5f)));
  b.Add("model.norm.weight", "BF16", {4}, BytesOf(std::vector<uint16_t>(4, 0x3f80)));
  b.Add("lm_head.weight", "F16", {2, 2}, BytesOf(std::vector<uint16_t>(4, 0x3c00)));
  b.Add("empty", "F32", {0, 3}, "");
  b.Metadata("format", "pt");
  Write(out / "safetensors" / "small.safetensors", b.Build());
  Write(out / "safetensors" / "unaligned.safetensors", b.Build(4, 2));
  Write(out / "safetensors" / "empty.safetensors", SafetensorsBuilder().Build());
  return 0;
}
