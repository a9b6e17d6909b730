"""The checkout's train entry: ``python tools/train.py CONFIG [flags]``.

The same command as ``visdet-mmext train`` (``visdet_mmext/tools/train.py``), for a checkout.
"""
import sys

from visdet_mmext.tools.train import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/train.py"))
