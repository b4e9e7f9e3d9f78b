"""``python -m ferkit`` is ``ferkit``."""
from ferkit.cli import main

main()
