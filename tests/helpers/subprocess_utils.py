"""Run Python in a fresh interpreter, optionally with some packages made unimportable."""
import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A None entry in sys.modules is how Python spells "not importable": `import x` raises
# ModuleNotFoundError and importlib.util.find_spec("x") returns None, as for a missing package.
BLOCKER = """
import sys
for _name in %r:
    sys.modules[_name] = None
"""


def run_python(code: str, *, hide=(), env=None, cwd=REPO, timeout=600, check=True):
    source = (BLOCKER % list(hide) if hide else "") + textwrap.dedent(code)
    full_env = dict(os.environ, **(env or {}))
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                            cwd=cwd, env=full_env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def run_json(code: str, **kwargs):
    """Run code that prints one JSON document on its last stdout line."""
    result = run_python(code, **kwargs)
    return json.loads(result.stdout.strip().splitlines()[-1])
