"""Print `NAME==FLOOR` for a dependency of pyproject.toml whose range has a `>=` floor.

Used by `make test-lower-bounds` to install the oldest release the project allows."""

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

name = sys.argv[1]
project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
for line in project["project"]["dependencies"]:
    requirement = Requirement(line)
    if requirement.name == name:
        floors = [s.version for s in requirement.specifier if s.operator in (">=", "==")]
        if not floors:
            sys.exit(f"pyproject.toml: dependency {name!r} has no >= floor to test")
        print(f"{name}=={floors[0]}")
        break
else:
    sys.exit(f"pyproject.toml: no dependency named {name!r}")
