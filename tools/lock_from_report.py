"""Write requirements.lock from a ``pip install --dry-run --report`` resolution (``make lock``).

One ``name==version`` line per distribution pip would install for this Python and platform, the project
itself left out. ``make setup`` and ``.ci/run`` install exactly these (``pip install --no-deps``).
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path


def main(report: str, out: str, pip_version: str) -> None:
    data = json.loads(Path(report).read_text())
    pins = sorted((i["metadata"]["name"].lower(), i["metadata"]["version"]) for i in data["install"]
                  if i["metadata"]["name"].lower() != "pseudolabel")
    lines = [
        "# Exact versions for Python %s on %s, resolved from pyproject.toml's ranges by `make lock`."
        % (".".join(platform.python_version_tuple()[:2]), platform.machine()),
        "# Installed by `make setup` and .ci/run with `pip install --no-deps -r requirements.lock`.",
        f"pip=={pip_version}",
        *(f"{name}=={version}" for name, version in pins),
    ]
    Path(out).write_text("\n".join(lines) + "\n")
    print(f"{out}: {len(pins)} packages pinned")


if __name__ == "__main__":
    main(*sys.argv[1:4])
