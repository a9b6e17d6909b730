"""A multi-process run's group ends on every rank at once; a caller's group, and the group of a
block that raised, stay (tests/jobs/process_group_end.py under torchrun, 2 processes)."""
import json
import os

import pytest

from demo_utils import ROOT, torchrun


@pytest.mark.parametrize("case, stays", [("made inside", False), ("the caller's", True),
                                         ("after a raise", True)])
def test_a_group_made_inside_ends_on_every_rank_and_others_stay(case, stays):
    done = torchrun(2, os.path.join(ROOT, "tests", "jobs", "process_group_end.py"), case,
                    timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    found = sorted((json.loads(line) for line in done.stdout.splitlines()
                    if line.startswith('{"rank"')), key=lambda rank: rank["rank"])
    assert found == [{"rank": 0, "group": stays}, {"rank": 1, "group": stays}]
