"""The two locks (tools/lock.sh): hashed pins, the runtime one without TensorFlow and on the test one's versions,
and (slow tier, needs the package index) both resolvable for other platforms with pip's platform dry run."""
import os
import re
import subprocess
import sys
import urllib.request

import pytest

packaging = pytest.importorskip("packaging.requirements")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_LOCK, RUNTIME_LOCK = "requirements.lock", "requirements-runtime.lock"
# pip --platform takes exact tags: the manylinux ones a wheel may carry, the macOS releases an arm64 Mac may run.
PLATFORMS = {
    "macos-arm64": ({"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
                     "os_name": "posix"}, [f"macosx_{v}_0_arm64" for v in range(11, 16)]),
    "windows-x86_64": ({"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
                        "os_name": "nt"}, ["win_amd64"]),
    "linux-aarch64": ({"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64",
                       "os_name": "posix"},
                      [f"manylinux_2_{m}_aarch64" for m in range(17, 40)] + ["manylinux2014_aarch64"]),
}
# Pins published as source only (no wheel for any platform): pure Python, built on install wherever it runs.
SOURCE_ONLY = {"promise"}  # tensorflow-datasets' (test lock only)
PYTHON = {"python_version": "3.11", "python_full_version": "3.11.0", "implementation_name": "cpython",
          "platform_python_implementation": "CPython"}


def entries(lock: str) -> list[tuple[packaging.Requirement, list[str]]]:
    """(requirement, its hashes) of every pin of a lock in pip's format (continuation lines joined)."""
    with open(os.path.join(ROOT, lock)) as f:
        text = re.sub(r"\s*\\\n\s*", " ", f.read())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            spec, *hashes = line.split(" --hash=")
            out.append((packaging.Requirement(spec), [h.split()[0] for h in hashes]))
    return out


def pins(lock: str) -> dict[str, str]:
    return {r.name.lower(): str(r.specifier) for r, _ in entries(lock)}


@pytest.mark.parametrize("lock", [TEST_LOCK, RUNTIME_LOCK])
def test_every_line_is_one_hashed_version(lock):
    lines = entries(lock)
    assert len(lines) > 40
    for req, hashes in lines:
        assert str(req.specifier).startswith("==") and len(req.specifier) == 1, req
        assert hashes and all(h.startswith("sha256:") for h in hashes), req


def test_runtime_lock_is_the_runtime_closure_on_the_test_locks_versions():
    runtime, test = pins(RUNTIME_LOCK), pins(TEST_LOCK)
    assert {"jax", "jaxlib", "flax", "optax", "numpy", "scipy", "matplotlib"} <= set(runtime)
    assert not [n for n in runtime if n.startswith(("tensorflow", "tensorboard", "pytest", "ruff"))]
    shared = set(runtime) & set(test)
    assert {n: runtime[n] for n in shared} == {n: test[n] for n in shared}
    assert len(shared) >= len(runtime) - 2  # only Windows-only extras (colorama, nest-asyncio) may be its own


def _index_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("platform", list(PLATFORMS))
@pytest.mark.parametrize("lock", [RUNTIME_LOCK, TEST_LOCK])
def test_lock_has_wheels_for(lock, platform, tmp_path):
    """pip's --platform dry run evaluates environment markers for the machine it runs on, not the target, so
    the lines are filtered for the target here, and passed without hashes (a hash check would download every
    wheel in full); SOURCE_ONLY pins are left out (--only-binary refuses them on every platform, Linux too)."""
    if not _index_reachable():
        pytest.skip("the package index is not reachable")
    env, tags = PLATFORMS[platform]
    wanted = [f"{r.name}{r.specifier}" for r, _ in entries(lock)
              if (r.marker is None or r.marker.evaluate({**PYTHON, **env})) and r.name not in SOURCE_ONLY]
    (tmp_path / "pins.txt").write_text("\n".join(wanted) + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
                           "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
                           *[f"--platform={t}" for t in tags], "--target", str(tmp_path / "unused"),
                           "-r", str(tmp_path / "pins.txt")], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, "\n".join(line for line in done.stderr.splitlines() if "ERROR" in line)
    assert "Would install" in done.stdout
