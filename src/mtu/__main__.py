import sys

from mtu.cli.main import main

sys.exit(main())
