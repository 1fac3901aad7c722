#include "tools/backend_flags.h"

#include <string>

namespace tessera {

CLI::Option* AddQuantizationFlag(CLI::App* app, bool* fp8_weights) {
  return app
      ->add_option_function<std::string>(
          "--quantization", [fp8_weights](const std::string& v) { *fp8_weights = v == "fp8"; },
          "Weights held on the device: none (the file's dtypes) or fp8 (the layers' "
          "F32/F16/BF16 matrices as FP8 E4M3 with a scale per row: half of their BF16 memory "
          "and decode traffic; cuda backend only; the embedding table, the LM head and "
          "block-quantized matrices keep their format)")
      ->check(CLI::IsMember({"none", "fp8"}))
      ->default_str("none");
}

}  // namespace tessera
