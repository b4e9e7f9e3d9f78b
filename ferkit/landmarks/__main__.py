"""``python -m ferkit.landmarks extract|draw|summary`` (see :mod:`ferkit.landmarks.cli`)."""
import sys

from ferkit.landmarks.cli import main

sys.exit(main())
