"""matplotlib for the plot scripts, headless (Agg), or a clear message when it is missing.

Debian's python3-matplotlib (scripts/install-deps.sh) is installed for the system interpreter;
another python3 first on PATH (a virtual environment) does not see it, so the calling script is
run again under the system interpreter before giving up.
"""
import os
import sys

SYSTEM_PYTHON = "/usr/bin/python3"


def load_matplotlib(script):
    """matplotlib.pyplot, for the script named `script` (used in the message)."""
    try:
        import matplotlib
    except ImportError:
        if os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON) and \
                os.access(SYSTEM_PYTHON, os.X_OK):
            os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
        sys.exit(f"{script}: matplotlib is not installed "
                 "(Debian: apt-get install python3-matplotlib, or run scripts/install-deps.sh)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
