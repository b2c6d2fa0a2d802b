import sys

from tf_gpp.cli import main

sys.exit(main())
