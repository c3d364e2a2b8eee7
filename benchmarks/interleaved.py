"""`python -m benchmarks.interleaved --torch-python /path/to/python-with-torch [--cell lstm,gru] [--rounds 3]
[--keras]`: ours, PyTorch, plain Flax (and Keras), timed in alternation on one machine.

`--cell` may name `lenet5` too (`--cell lenet5 --keras --no-flax`: the LeNet5 peer comparison; ours is then
`python -m benchmarks.lenet --seeds 1`, batch 50, and plain Flax has no LeNet5 reference).

Each round runs, one after another in a rotating order, `python -m benchmarks.recurrent` (ours),
`benchmarks/reference_torch.py` (PyTorch eager, in the given Python, which needs torch and numpy),
`python -m benchmarks.reference_flax` (Flax's own cells through nn.RNN) and with `--keras`
`python -m benchmarks.reference_keras` (Keras layers on TensorFlow), each in a fresh process, so that a
busy or quiet spell of a shared machine falls on all of them alike. Prints each run's JSON lines as they come,
then one table of the medians over rounds (train images/s, batch 32), with the CPU model.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

from common.runtime import outputs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HIDDEN = {"rnn": 64, "lstm": 128, "gru": 128}
LENET = "lenet5"


def model_name(cell: str) -> str:
    """'lstm' -> 'lstm-128' (the name every benchmark prints), 'lenet5' -> 'lenet5'."""
    return cell if cell == LENET else f"{cell}-{HIDDEN[cell]}"


def ours(cells: list[str]) -> list[str]:
    """One process that runs our benchmark of each asked model: benchmarks.lenet, benchmarks.recurrent."""
    calls = ["lenet.main(['--seeds', '1'])"] if LENET in cells else []
    recurrent = [c for c in cells if c != LENET]
    if recurrent:
        calls.append(f"recurrent.main(['--cell', {','.join(recurrent)!r}, '--seeds', '1'])")
    return [sys.executable, "-c", "from benchmarks import lenet, recurrent; " + "; ".join(calls)]


def cpu_model() -> str:
    """E.g. 'AMD EPYC (family 25 model 1), AVX2, 2 CPUs' from /proc/cpuinfo."""
    info = outputs.cpu_info()
    if not info:
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    flags = info.get("flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model {info.get('model', '?')}), "
            f"{isa}, {os.cpu_count()} CPUs")


PEERS = ("ours", "pytorch", "pytorch-1t", "flax", "keras")  # the table's column order


def commands(cells: list[str], torch_python: str | None, flax: bool,
             torch_one_thread: bool = False, keras: bool = False) -> dict[str, tuple[list[str], str]]:
    """peer -> (command, working directory)."""
    out = {"ours": (ours(cells), ROOT)}
    if torch_python:
        models = [model_name(c) for c in cells]
        out["pytorch"] = ([torch_python, "-c", f"import reference_torch as r; r.main({models!r})"], HERE)
        if torch_one_thread:  # PyTorch's OpenMP threads spin; on a busy machine one thread can be faster
            out["pytorch-1t"] = ([torch_python, "-c", f"import reference_torch as r; r.main({models!r}, 1)"], HERE)
    recurrent = [c for c in cells if c != LENET]
    if flax and recurrent:  # Flax's own cells: a recurrent reference only
        out["flax"] = ([sys.executable, "-m", "benchmarks.reference_flax", "--cell", ",".join(recurrent)], ROOT)
    if keras:
        models = ",".join(model_name(c) for c in cells)
        out["keras"] = ([sys.executable, "-m", "benchmarks.reference_keras", "--models", models], ROOT)
    return out


def run(command: list[str], cwd: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for r in records:
        print(json.dumps(r), flush=True)
    return records


def table(rates: dict[str, dict[str, list[float]]], cells: list[str]) -> str:
    peers = [p for p in PEERS if p in rates]
    head = ["model"] + [f"{p} (img/s)" for p in peers] + [f"ours / {p}" for p in peers if p != "ours"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        model = model_name(c)
        med = {p: statistics.median(rates[p][model]) for p in peers if rates[p].get(model)}
        row = [model] + [f"{med[p]:,.0f}" if p in med else "-" for p in peers]
        row += [f"{med['ours'] / med[p]:.2f}x" if p in med and "ours" in med else "-" for p in peers if p != "ours"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cell", default="lstm,gru")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON"),
                        help="a Python with torch and numpy (default: $TORCH_PYTHON; none: no PyTorch)")
    parser.add_argument("--torch-one-thread", action="store_true",
                        help="also time PyTorch with torch.set_num_threads(1), as the peer 'pytorch-1t'")
    parser.add_argument("--no-flax", action="store_true")
    parser.add_argument("--keras", action="store_true", help="also time the Keras layers (TensorFlow)")
    args = parser.parse_args(argv)
    cells = args.cell.split(",")
    unknown = [c for c in cells if c != LENET and c not in HIDDEN]
    if unknown:
        parser.error(f"unknown --cell {','.join(unknown)}; choose from {', '.join([LENET, *HIDDEN])}")
    peers = commands(cells, args.torch_python, not args.no_flax, args.torch_one_thread, args.keras)
    order = list(peers)
    rates: dict[str, dict[str, list[float]]] = {p: {} for p in peers}
    print(f"# {cpu_model()}; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    for r in range(args.rounds):
        for peer in order[r % len(order):] + order[:r % len(order)]:  # rotate who goes first
            print(f"# round {r + 1}: {peer}", flush=True)
            for rec in run(*peers[peer]):
                rates[peer].setdefault(rec["model"], []).append(rec["train_images_per_sec"])
    print(f"\nmedians over {args.rounds} rounds, train images/s at batch 32 (LeNet5: 50); {cpu_model()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(table(rates, cells))


if __name__ == "__main__":
    main()
