import sys

from aeclust.cli import main

sys.exit(main())
