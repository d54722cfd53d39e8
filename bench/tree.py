"""Run ``strangler`` from another checkout, for an A/B in one ``bench.run``:

    .venv/bin/python -m bench.run --proxy-cmd ".venv/bin/python -m bench.tree /work/wt/old"

``PYTHONPATH=/work/wt/old`` is not enough: the editable install of this checkout puts a
finder in ``sys.meta_path`` that answers ``import strangler`` before ``sys.path`` is
searched, so the "other" arm would run this checkout's code. This drops that finder,
puts the other tree first, and runs its ``strangler`` with the remaining arguments.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m bench.tree CHECKOUT [strangler arguments]")
    tree = sys.argv[1]
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in repr(f)]
    for name in [m for m in sys.modules if m == "strangler" or m.startswith("strangler.")]:
        del sys.modules[name]
    sys.path.insert(0, tree)
    sys.argv = ["strangler", *sys.argv[2:]]
    runpy.run_module("strangler", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
