"""The bundle's entry script: ``headswap_gui.app.main`` as a program.

Not ``headswap_gui/app.py`` itself, so that ``headswap_gui.app`` stays an importable module
of the bundle (its icon path is found next to it) rather than ``__main__``.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # DataLoader workers are spawned: the bundle runs them
    from headswap_gui.app import main

    sys.exit(main())
