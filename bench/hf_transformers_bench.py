#!/usr/bin/env python3
"""Hugging Face transformers (torch) on the same GPU, for bench/gpu_compare.sh: a random-weight
Llama in a named shape (no download: the GPU machine has no network), BF16, greedy decoding
with the KV cache, at each batch size given.

For each batch B it times generate() of 1 new token (the prefill of B prompts of --pp random
ids) and of --tg new tokens (prefill + decode), min_new_tokens pinned so that random weights
cannot stop early, and reports
  prefill tokens/s = B·pp / t(1 token)
  decode tokens/s  = B·(tg - 1) / (t(tg tokens) - t(1 token))
as JSON lines, the median of --reps timed runs after a warm-up (and with --gemm-peak first
the TFLOP/s of a large BF16 matmul, the cuBLAS peak prefill is compared with). Prints nothing
else on stdout.
"""
import argparse
import json
import statistics
import sys
import time

# Shapes as formats/model_shapes.cc defines them (tessera synthesize --list): hidden,
# intermediate, layers, heads, kv heads, vocab, rope theta, tied embeddings. (Llama 3.2's
# long-context RoPE scaling changes no cost and is left out.)
SHAPES = {
    "llama-3-8b": (4096, 14336, 32, 32, 8, 128256, 500000.0, False),
    "llama-3.2-1b": (2048, 8192, 16, 32, 8, 128256, 500000.0, True),
    "llama-3.2-3b": (3072, 8192, 28, 24, 8, 128256, 500000.0, True),
    "smollm2-135m": (576, 1536, 30, 9, 3, 49152, 100000.0, True),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="llama-3-8b", choices=sorted(SHAPES))
    parser.add_argument("--layers", type=int, default=0, help="layers instead of the shape's")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--pp", type=int, default=128, help="prompt tokens per sequence")
    parser.add_argument("--tg", type=int, default=128, help="generated tokens per sequence")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cuda",
                        help="torch device (cpu only to check the script on a machine without a GPU)")
    parser.add_argument("--gemm-peak", action="store_true",
                        help="first print the TFLOP/s of an 8192^3 BF16 torch.matmul (cuBLAS)")
    args = parser.parse_args()
    if args.tg < 2 or args.pp < 1 or args.reps < 1 or min(args.batch) < 1:
        parser.error("--tg must be >= 2; --pp, --reps and every --batch >= 1")

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("hf_transformers_bench: torch sees no CUDA device", file=sys.stderr)
        return 1
    device = torch.device(args.device)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()
    if args.gemm_peak:
        n = 8192 if device.type == "cuda" else 1024  # a CPU run only checks the script
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        synchronize()
        runs = 20
        start = time.perf_counter()
        for _ in range(runs):
            a @ b
        synchronize()
        seconds = (time.perf_counter() - start) / runs
        print(json.dumps({"engine": "cublas", "gemm": n, "tflops": 2 * n**3 / seconds / 1e12}),
              flush=True)
        del a, b
    hidden, inter, layers, heads, kv_heads, vocab, theta, tied = SHAPES[args.shape]
    config = LlamaConfig(hidden_size=hidden, intermediate_size=inter,
                         num_hidden_layers=args.layers or layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, vocab_size=vocab, rope_theta=theta,
                         max_position_embeddings=8192, tie_word_embeddings=tied)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # initialized in BF16 on the device, no FP32 copy
    with device:
        model = LlamaForCausalLM(config).eval()
    generator = torch.Generator(device=device).manual_seed(1)

    def timed(batch: int, new_tokens: int) -> float:
        ids = torch.randint(0, vocab, (batch, args.pp), device=device, generator=generator)
        synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                           max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           pad_token_id=0, eos_token_id=None)
        synchronize()
        return time.perf_counter() - start

    for batch in args.batch:
        timed(batch, 2)  # warm-up: kernels chosen, allocator grown
        prefill, total = [], []
        for _ in range(args.reps):
            prefill.append(timed(batch, 1))
            total.append(timed(batch, args.tg))
        t1, tn = statistics.median(prefill), statistics.median(total)
        print(json.dumps({
            "engine": "transformers", "torch": torch.__version__, "shape": args.shape,
            "batch": batch, "pp": args.pp, "tg": args.tg,
            "prefill_tps": batch * args.pp / t1,
            "decode_tps": batch * (args.tg - 1) / max(tn - t1, 1e-9),
            "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
