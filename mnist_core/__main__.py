"""`python -m mnist_core`: see mnist_core.cli."""

import sys

from mnist_core.cli import main

sys.exit(main())
