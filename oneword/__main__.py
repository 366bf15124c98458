"""`python -m oneword ...`: the same as the `oneword` command."""

import sys

from oneword.commands import main

sys.exit(main())
