"""``make bench``'s entry point (the Makefile runs this file): see run.py and README.md.

.venv/bin/python bench/bench.py [--model ResNet50] [--workdir DIR] [--repeats 3] [--no-stages]
"""

import sys

from run import main

if __name__ == "__main__":
    sys.exit(main())
