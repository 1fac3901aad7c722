#!/usr/bin/env bash
# Pipeline parallelism end to end: tessera-worker runs one fixed JSONL batch (N requests,
# each decoding exactly D tokens) through the engine on one rank with every core (the
# baseline), then on P pipeline stages with one batch in flight (each step drains the
# stages before the next is scheduled) and with P disjoint batches in flight (DESIGN.md §4),
# alternating for R rounds in this one script. Prints completion tokens/s and the ratios to
# the baseline and to one batch in flight, checks that every layout wrote the same tokens,
# and writes the table into docs/benchmarks.md (the section between the "pipeline-in-flight"
# markers, replaced on each run).
#
# Usage: bench/pipeline_compare.sh [-m MODEL] [-b TESSERA_BUILD_DIR] [-n REQUESTS]
#                                  [-d DECODE] [-p STAGES] [-r ROUNDS]
#   MODEL              default: 'default' (SmolLM2-135M-Instruct Q4_1)
#   TESSERA_BUILD_DIR  a build with tessera-worker (default: build)
#   REQUESTS, DECODE   requests in the batch and tokens each decodes (32, 64)
#   STAGES, ROUNDS     pipeline stages (2) and rounds of every layout (3)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
repo="$bench_repo"
model="default"
build="$repo/build"
requests=32
decode=64
stages=2
rounds=3
while getopts "m:b:n:d:p:r:" opt; do
  case "$opt" in
    m) model="$OPTARG" ;;
    b) build="$OPTARG" ;;
    n) requests="$OPTARG" ;;
    d) decode="$OPTARG" ;;
    p) stages="$OPTARG" ;;
    r) rounds="$OPTARG" ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
  esac
done
worker="$build/bin/tessera-worker"
bench_require_exe "$worker" "build the tessera-worker target"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cores="$(nproc)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$requests" "$decode" > "$work/requests.jsonl" <<'PY'
import json, sys
n, d = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    print(json.dumps({"id": f"r{i}", "max_new_tokens": d, "min_new_tokens": d,
                      "prompt": f"Request {i}: write a short story about the number {7 * i}."}))
PY
# name | ranks | worker flags
layouts=("one rank, $cores threads|1|--threads $cores"
         "pp $stages, 1 batch in flight|$stages|--threads 1 --pp $stages --batches-in-flight 1"
         "pp $stages, $stages batches in flight|$stages|--threads 1 --pp $stages --batches-in-flight $stages")
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$rounds"); do
  for i in "${!layouts[@]}"; do
    IFS='|' read -r name ranks flags <<< "${layouts[$i]}"
    # --bind-to none: Open MPI would pin a small job to one core per rank.
    cmd=(mpirun --bind-to none -np "$ranks" "$worker" --model "$model" $flags
         --input "$work/requests.jsonl" --output "$work/out_$i.jsonl")
    echo "${cmd[*]}" >&2
    "${cmd[@]}" 2> "$work/log_$i.txt" >/dev/null || { cat "$work/log_$i.txt" >&2; exit 1; }
    grep -o '([0-9.]* completion tokens/s' "$work/log_$i.txt" | tr -d '(' | cut -d' ' -f1 \
      >> "$work/rate_$i.txt"
  done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
for i in 1 2; do
  cmp -s "$work/out_0.jsonl" "$work/out_$i.jsonl" ||
    { echo "layout '${layouts[$i]%%|*}' wrote other tokens than one rank" >&2; exit 1; }
done
cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
date_utc="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
names=()
for l in "${layouts[@]}"; do names+=("${l%%|*}"); done

python3 - "$work" "$repo/docs/benchmarks.md" "$cpu" "$cores" "$date_utc" "$load_before" \
  "$load_after" "$requests" "$decode" "$stages" "$rounds" "${names[@]}" <<'PY'
import re, statistics, sys
work, doc, cpu, cores, date, load_before, load_after, requests, decode, stages, rounds = sys.argv[1:12]
names = sys.argv[12:]
rates = [[float(x) for x in open(f"{work}/rate_{i}.txt").read().split()] for i in range(len(names))]
med = [statistics.median(r) for r in rates]
rows = []
for i, name in enumerate(names):
    rows.append(f"| {name} | {med[i]:.1f} | {max(rates[i]):.1f} | {med[i] / med[0]:.2f}x | "
                f"{med[i] / med[1]:.2f}x |")
table = "\n".join(rows)
section = f"""<!-- pipeline-in-flight:begin (written by bench/pipeline_compare.sh; do not edit by hand) -->
## Pipeline stages with disjoint batches in flight

`bench/pipeline_compare.sh -n {requests} -d {decode} -p {stages} -r {rounds}` on {cpu}, {cores}
cores, {date} (load average {load_before} before, {load_after} after): tessera-worker runs
{requests} requests that each decode exactly {decode} tokens (the default model, CPU ranks under
`mpirun --bind-to none`), every layout {rounds} times, alternating. With one batch in flight
every step drains the stages before the leader can sample and schedule the next; with
{stages} the leader keeps that many disjoint batches going through the stages (each
split into micro-batches as before), so every stage has work while the leader samples.
Every layout wrote the same tokens.

| layout | completion tokens/s (median) | fastest | vs one rank | vs 1 batch in flight |
|---|---:|---:|---:|---:|
{table}
<!-- pipeline-in-flight:end -->
"""
text = open(doc).read()
pat = re.compile(r"<!-- pipeline-in-flight:begin .*?<!-- pipeline-in-flight:end -->\n", re.S)
text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section
open(doc, "w").write(text)
print(section)
print(f"wrote {doc}")
PY
