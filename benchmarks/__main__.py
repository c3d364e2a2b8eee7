"""`python -m benchmarks [--seeds 1,4,8]`: every model's training throughput, one JSON line per configuration.

Each line: images/sec (median of timed windows after warm-up; with N seeds, all N models' images), first-step
(compile) seconds, evaluation images/sec, peak memory, backend and device.
"""
import argparse

from benchmarks import lenet, recurrent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="1,4,8", help="model counts trained at once with vmap")
    parser.add_argument("--only", choices=("lenet", "recurrent"), help="one family only")
    args = parser.parse_args(argv)
    if args.only != "recurrent":
        lenet.main(["--seeds", args.seeds])
    if args.only != "lenet":
        recurrent.main(["--seeds", args.seeds])


if __name__ == "__main__":
    main()
