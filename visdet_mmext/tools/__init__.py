"""The tools ``visdet-mmext`` runs: ``train``, ``compare`` and ``groups`` (each ``main(argv, prog)``).

They ship with the package, so a pip install trains without a checkout; the checkout's
``tools/train.py`` is a thin entry to ``train``.
"""
