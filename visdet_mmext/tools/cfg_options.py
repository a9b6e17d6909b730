"""``--cfg-options``: mmengine's ``DictAction``, with its parse failures as usage errors.

mmengine's parser takes numbers, strings, booleans, None, lists and tuples; anything else (a
``dict(...)``, unbalanced brackets) ends in a RecursionError or an assertion inside argparse.
Here it is argparse's own error (exit code 2) naming what it could not read and what to do.
"""
from __future__ import annotations

from mmengine.config import DictAction

from ..echo import echo


class CfgOptions(DictAction):

    def __call__(self, parser, namespace, values, option_string=None):
        for value in values:
            try:
                super().__call__(parser, namespace, [value], option_string)
            except (RecursionError, AssertionError, IndexError, ValueError) as error:
                parser.error(
                    f"{option_string} could not read {echo(value, 300)} ({type(error).__name__}). It takes "
                    "KEY=VALUE with a number, string, True/False/None, or a list/tuple of those "
                    "(key=\"[a,b]\"); set dicts (hooks, datasets) in a config file that starts "
                    "with _base_ = ['CONFIG'].")
