import os
import sys

from bench.cli import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:   # e.g. `python -m bench list | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
