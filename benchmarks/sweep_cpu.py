"""`python -m benchmarks.sweep_cpu [--models 4] [--processes 2] [--rounds 3]`: how to train a sweep of LeNet5 models
on a CPU: N models as one program (the project's way: unrolled in one XLA program using every core) against one
process per core, each pinned to its core with one XLA thread and training its share of the N models.

Each round runs the two ways one after the other, alternating which goes first, each in fresh processes (so that
a busy or quiet spell of a shared machine falls on both alike); the processes of the per-core way compile and warm
up, wait for each other, then time the same number of steps together. Prints one JSON line per way and round, then
the medians over rounds of the total training images/s (every model's images) and their ratio. Batch 50, the
report's LeNet5, generated uint8 images (`benchmarks.harness.prepare`). `--tiny` shrinks the network and the
timing for a smoke test (its numbers mean nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def child(args) -> None:
    """Compiles and warms up `--models` models, says 'ready', waits for 'go' on stdin, times, prints JSON."""
    from benchmarks.harness import prepare, setup, time_train_steps
    from common.core.step import make_train_step
    from lenet.config import LeNetConfig
    from lenet.model import create_model
    from lenet.train import penalty_fn

    setup()
    config = LeNetConfig.create(features=(4, 8), hidden=16) if args.tiny else LeNetConfig()
    batch = config.train.batch_size
    program, state, keys, split = prepare(create_model(config), make_train_step(penalty_fn(config)), args.models,
                                          batch, (28, 28, 1), 1, eval_batch=config.train.eval_batch_size,
                                          seed=args.seed)
    # One untimed call compiles; then every process waits for the others before the timed windows.
    _, state = time_train_steps(program, state, split, keys, images_per_step=batch * args.models, windows=1,
                                steps_per_window=1)
    print("ready", flush=True)
    sys.stdin.readline()
    result, _ = time_train_steps(program, state, split, keys, images_per_step=batch * args.models,
                                 windows=args.windows, steps_per_window=args.steps)
    print(json.dumps({"models": args.models, "train_images_per_sec": result["train_images_per_sec"]}), flush=True)


def start(models: int, seed: int, opts, core: int | None) -> subprocess.Popen:
    env = dict(os.environ)
    if core is not None:  # one core, one XLA thread: the process's share trains there alone
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + ONE_THREAD).strip()
    argv = [sys.executable, "-m", "benchmarks.sweep_cpu", "--child", "--models", str(models), "--seed", str(seed),
            "--steps", str(opts.steps), "--windows", str(opts.windows)] + (["--tiny"] if opts.tiny else [])
    preexec = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            preexec_fn=preexec)


def run_together(shares: list[int], opts, pinned: bool) -> float:
    """Starts one process per share, releases them together once all are ready; the sum of their images/s."""
    cores = sorted(os.sched_getaffinity(0))
    procs = [start(n, 1000 * i, opts, cores[i % len(cores)] if pinned else None) for i, n in enumerate(shares)]
    try:
        for p in procs:
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a benchmark process failed before timing (exit {p.wait()})")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        rates = [json.loads(p.stdout.readline())["train_images_per_sec"] for p in procs]
    finally:
        for p in procs:
            p.wait()
    return float(sum(rates))


def shares(models: int, processes: int) -> list[int]:
    """The N models split as evenly as possible over the processes (none empty)."""
    n = min(models, processes)
    return [models // n + (1 if i < models % n else 0) for i in range(n)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=4, help="LeNet5 models in the sweep (default 4)")
    parser.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)),
                        help="processes of the per-core way (default: the usable cores)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=5, help="timed windows (their median is the rate)")
    parser.add_argument("--tiny", action="store_true", help="a tiny network and timing: a smoke test")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    ways = {"one_program": ([args.models], False), "per_core": (shares(args.models, args.processes), True)}
    rates: dict[str, list[float]] = {w: [] for w in ways}
    for r in range(args.rounds):
        for way in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
            split, pinned = ways[way]
            rate = run_together(split, args, pinned)
            rates[way].append(rate)
            print(json.dumps({"round": r, "way": way, "processes": len(split), "models": args.models,
                              "train_images_per_sec": round(rate, 1), "load_average": os.getloadavg()}), flush=True)
    med = {w: statistics.median(v) for w, v in rates.items()}
    print(json.dumps({"summary": True, "models": args.models, "rounds": args.rounds,
                      **{f"{w}_images_per_sec": round(v, 1) for w, v in med.items()},
                      "per_core_over_one_program": round(med["per_core"] / med["one_program"], 3)}), flush=True)
    return None


if __name__ == "__main__":
    main()
