"""Reading requirement inputs and pip-compile's lock files (tests/test_lock_files.py, tests/test_packaging.py)."""

import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


@dataclass
class Locked:
    version: str
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def input_pins(path: Path) -> dict[str, str]:
    """{name: version} of an input's requirement lines; each must be pinned with ==."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: {line} is not pinned with =="
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def read_lock(path: Path) -> tuple[str, dict[str, Locked]]:
    """pip-compile's output: the command in its header, and {name: Locked} of its entries."""
    text = path.read_text()
    command = re.search(r"^#    (pip-compile .+)$", text, re.M)
    assert command, f"{path.name} has no pip-compile command in its header"
    entries: dict[str, Locked] = {}
    current = None
    in_via = False
    for line in text.replace("\\\n", " ").splitlines():
        if line and not line.startswith((" ", "#")):
            name, hashes = line.split(" ", 1) if " " in line else (line, "")
            package, version = name.split("==")
            current = entries[canonicalize_name(package)] = Locked(version, re.findall(r"--hash=(\S+)", hashes))
            in_via = False
        elif current is not None and (via := re.match(r"\s+# via ?(.*)$", line)):
            in_via = True
            current.via += [via[1]] if via[1] else []
        elif current is not None and in_via and (more := re.match(r"\s+#   (.+)$", line)):
            current.via.append(more[1])
    return command[1], entries
