"""Print the project's runtime requirements from pyproject.toml, one per line (pip -r format).

Used by the Dockerfiles to install the dependencies in their own image layer, before the project
wheel (installed with --no-deps), so that a source change rebuilds only the small project layer.

Usage: python requirements.py PYPROJECT [--tensorflow SPEC]

--tensorflow SPEC replaces the `tensorflow-cpu` requirement by SPEC (e.g. the GPU image passes
'tensorflow[and-cuda]==2.21.*'): `tensorflow` and `tensorflow-cpu` install the same `tensorflow/`
package and must never be installed together (../shared/notes/stack.md).

Exit status 2 with a message on stderr when the file has no [project] dependencies or, with
--tensorflow, no tensorflow-cpu requirement to replace.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib

# PEP 508 names: compare normalised (PEP 503: lower case, runs of -_. as one dash).
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _name(requirement: str) -> str:
    match = _NAME.match(requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def requirements(pyproject: str, tensorflow: str | None = None) -> list[str]:
    """Return [project].dependencies of PYPROJECT, with tensorflow-cpu swapped for TENSORFLOW.

    Raises ValueError when there are no dependencies, or TENSORFLOW is given and no
    tensorflow-cpu requirement is present.
    """
    with open(pyproject, "rb") as handle:
        deps = tomllib.load(handle).get("project", {}).get("dependencies", [])
    if not deps:
        raise ValueError(f"{pyproject}: no [project].dependencies")
    if tensorflow is None:
        return list(deps)
    swapped = [tensorflow if _name(d) == "tensorflow-cpu" else d for d in deps]
    if swapped == list(deps):
        raise ValueError(f"{pyproject}: no tensorflow-cpu requirement to replace")
    return swapped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject")
    parser.add_argument("--tensorflow", help="requirement that replaces tensorflow-cpu")
    args = parser.parse_args(argv)
    try:
        print("\n".join(requirements(args.pyproject, args.tensorflow)))
    except (OSError, ValueError, tomllib.TOMLDecodeError) as error:
        print(f"requirements.py: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
