"""Error-message assertions on the key facts (names, values, allowed choices), not whole sentences:
a reworded message passes, a message that drops what was wrong or what is allowed fails."""

from __future__ import annotations


def says(line: str, *facts: str) -> bool:
    """``line`` is one ``Error:`` line naming every fact."""
    assert line.startswith("Error: ") and "\n" not in line.strip(), line
    missing = [f for f in facts if f not in line]
    assert not missing, f"{line!r} does not name {missing}"
    return True
