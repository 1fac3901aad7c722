#!/usr/bin/env bash
# Tessera's cuda backend against Hugging Face transformers (torch) on the same GPU in one run,
# on random weights in a named shape (real weights cannot reach the GPU machine):
#   1. tessera synthesize: the shape's GGUF in BF16 (once, reused by both Tessera benches);
#   2. tessera_bench_generate: batch-1 prefill (-p) and decode (-n) on the cuda backend, with
#      the BF16 weights and again held as FP8 (--quantization fp8, cuda only);
#   3. tessera_bench_serve: the engine's sweep at each batch size (--npl), pp/tg tokens, and
#      again with --enforce-eager (decode steps without CUDA graphs, their baseline);
#   4. bench/hf_transformers_bench.py: the same batch sizes and lengths in transformers, and
#      the BF16 cuBLAS peak;
# then one table: decode tokens/s side by side with the ratio, batch-1 decode as a fraction of
# the HBM roofline (weights read per token x tokens/s / peak bandwidth, the peak taken from
# the GPU's name), for BF16 and FP8 weights, and prefill TFLOP/s against the measured cuBLAS
# BF16 peak.
#
#   bash bench/gpu_compare.sh -d BIN_DIR [-s SHAPE] [-B "1 16 64"] [-p 128] [-g 128]
#                             [-L LAYERS] [-b cuda|cpu]
# BIN_DIR holds tessera, tessera_bench_generate and tessera_bench_serve (a build's bin/, or
# scripts/gpu_bundle.sh's bundle). Needs a GPU, python3 with torch and transformers.
# -L keeps only that many layers and -b cpu runs both sides on the CPU: a check of the
# script itself on a machine without a GPU (its figures mean nothing there).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="" shape="llama-3-8b" batches="1 16 64" pp=128 tg=128 layers="" backend="cuda"
while getopts "d:s:B:p:g:L:b:h" opt; do
  case "$opt" in
    d) bin="$OPTARG" ;; s) shape="$OPTARG" ;; B) batches="$OPTARG" ;;
    p) pp="$OPTARG" ;; g) tg="$OPTARG" ;; L) layers="$OPTARG" ;; b) backend="$OPTARG" ;;
    *) sed -n 2,20p "$0"; exit 2 ;;
  esac
done
[[ "$backend" == cuda || "$backend" == cpu ]] || { echo "gpu_compare: -b is cuda or cpu" >&2; exit 2; }
[[ -x "$bin/tessera" && -x "$bin/tessera_bench_generate" && -x "$bin/tessera_bench_serve" ]] \
  || { echo "gpu_compare: -d must name a directory holding the tessera binaries" >&2; exit 2; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
model="$out/$shape-bf16.gguf"
export TESSERA_EXPERIMENTAL_CUDA=1

echo "== synthesize $shape (bf16)" >&2
"$bin/tessera" synthesize --shape "$shape" --dtype bf16 ${layers:+--layers "$layers"} \
  -o "$model" >&2
echo "== tessera_bench_generate (batch 1)" >&2
"$bin/tessera_bench_generate" -m "$model" -b "$backend" -p 512 -n "$tg" -r 3 --json \
  > "$out/generate.json"
if [[ "$backend" == cuda ]]; then
  echo "== tessera_bench_generate --quantization fp8 (batch 1)" >&2
  "$bin/tessera_bench_generate" -m "$model" -b "$backend" -p 512 -n "$tg" -r 3 --json \
    --quantization fp8 > "$out/generate_fp8.json"
fi
max_batch="$(tr ' ' '\n' <<< "$batches" | sort -n | tail -1)"
echo "== tessera_bench_serve (npl $batches)" >&2
kv_size=(--gpu-memory-utilization 0.9)
[[ "$backend" == cuda ]] || kv_size=(--kv-cache-mb 1024)
"$bin/tessera_bench_serve" -m "$model" -b "$backend" --npl "$(tr ' ' ',' <<< "$batches")" \
  --pp "$pp" --tg "$tg" --requests 8 --sequential 1 --max-num-seqs "$max_batch" \
  --max-batched-tokens $((max_batch * pp)) --kv-cache-dtype f16 "${kv_size[@]}" --json \
  > "$out/serve.json"
echo "== tessera_bench_serve --enforce-eager (the baseline of CUDA graphs)" >&2
"$bin/tessera_bench_serve" -m "$model" -b "$backend" --npl "$(tr ' ' ',' <<< "$batches")" \
  --pp "$pp" --tg "$tg" --requests 8 --sequential 1 --max-num-seqs "$max_batch" \
  --max-batched-tokens $((max_batch * pp)) --kv-cache-dtype f16 "${kv_size[@]}" --json \
  --enforce-eager > "$out/serve_eager.json"
echo "== transformers" >&2
rm -f "$model"  # the GPU's memory, not the disk, is the limit from here on
python3 "$here/hf_transformers_bench.py" --shape "$shape" ${layers:+--layers "$layers"} \
  --batch $batches --pp "$pp" --tg "$tg" --device "$backend" --gemm-peak > "$out/hf.jsonl"

gpu="cpu"
[[ "$backend" == cpu ]] || gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
python3 - "$out" "$gpu" <<'PY'
import json, os, sys
out, gpu = sys.argv[1], sys.argv[2]
gen = json.load(open(f"{out}/generate.json"))
fp8_path = f"{out}/generate_fp8.json"
fp8 = json.load(open(fp8_path)) if os.path.exists(fp8_path) else None
serve = json.load(open(f"{out}/serve.json"))
eager_by_batch = {r["npl"]: r for r in json.load(open(f"{out}/serve_eager.json"))["sweep"]}
hf = [json.loads(line) for line in open(f"{out}/hf.jsonl")]
peak = next(r for r in hf if r["engine"] == "cublas")
peak_tflops = peak["tflops"]
hf_by_batch = {r["batch"]: r for r in hf if r["engine"] == "transformers"}
# Peak HBM bandwidth by product (NVIDIA data sheets), GB/s.
peaks = [("H200", 4800), ("H100 NVL", 3900), ("H100 PCIe", 2000), ("H100", 3350)]
peak_gbs = next((bw for name, bw in peaks if name in gpu), None)
weight_mb = gen["weight_mb_per_token"]
decode1 = gen["decode_tps_median"]
print(f"GPU: {gpu}; model {gen['model']}")
if peak_gbs:
    print(f"batch-1 decode: {decode1:.1f} tokens/s x {weight_mb:.0f} MB = "
          f"{decode1 * weight_mb / 1e3:.0f} GB/s = {100 * decode1 * weight_mb / 1e3 / peak_gbs:.1f}% "
          f"of the {peak_gbs} GB/s HBM peak")
if fp8:
    d8, mb8 = fp8["decode_tps_median"], fp8["weight_mb_per_token"]
    line = (f"batch-1 decode, FP8 weights: {d8:.1f} tokens/s ({d8 / decode1:.2f}x BF16) x "
            f"{mb8:.0f} MB = {d8 * mb8 / 1e3:.0f} GB/s")
    if peak_gbs:
        line += f" = {100 * d8 * mb8 / 1e3 / peak_gbs:.1f}% of the HBM peak"
    print(line + f"; prefill {fp8['prefill_tps_median']:.0f} tokens/s "
          f"({fp8['prefill_tps_median'] / gen['prefill_tps_median']:.2f}x BF16)")
# BF16 matmul FLOPs per token: 2 x parameters read (bytes / 2).
tflops = gen["prefill_tps_median"] * weight_mb * 1e6 / 1e12
print(f"prefill {gen['prompt_tokens']} tokens: {gen['prefill_tps_median']:.0f} tokens/s = "
      f"{tflops:.1f} TFLOP/s = {100 * tflops / peak_tflops:.1f}% of cuBLAS's "
      f"{peak_tflops:.0f} TFLOP/s ({peak['gemm']}^3 BF16)")
print("| batch | Tessera decode tok/s | transformers decode tok/s | ratio | Tessera prefill tok/s | transformers prefill tok/s | Tessera eager decode tok/s | graphs / eager |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for row in serve["sweep"]:
    h = hf_by_batch.get(row["npl"])
    if h is None:
        continue
    e = eager_by_batch[row["npl"]]
    print(f"| {row['npl']} | {row['s_tg']:.1f} | {h['decode_tps']:.1f} | "
          f"{row['s_tg'] / h['decode_tps']:.2f}x | {row['s_pp']:.0f} | {h['prefill_tps']:.0f} | "
          f"{e['s_tg']:.1f} | {row['s_tg'] / e['s_tg']:.2f}x |")
PY
