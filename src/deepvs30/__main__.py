import sys

from deepvs30.cli import main

sys.exit(main())
