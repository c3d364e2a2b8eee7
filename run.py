"""Entry point: `python run.py --task lenet` (see `python run.py --help`)."""
import sys

from common.cli import main

if __name__ == "__main__":
    sys.exit(main())
