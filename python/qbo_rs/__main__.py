import sys

from qbo_rs.cli import main

sys.exit(main())
