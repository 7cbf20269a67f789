"""What a dataset's metadata lacks or gets wrong, attribute by attribute.

A :class:`Report` collects :class:`Problem` entries (``error``: the dataset cannot be
described correctly; ``warning``: a recommended attribute is missing or odd) and the
fields extraction found. It prints as one line per problem, for producers running
``halodb check`` before they upload.

>>> r = Report("products/HALO/x.zarr")
>>> r.warn("license", "missing (ACDD recommends a licence, e.g. CC-BY-4.0)")
>>> r.error("time", "units 'seconds after 2024-08-09' are not 'UNIT since DATE'", file="time/.zattrs")
>>> r.ok
False
>>> print(r)
products/HALO/x.zarr: 1 error, 1 warning
  error    time: units 'seconds after 2024-08-09' are not 'UNIT since DATE' (time/.zattrs)
  warning  license: missing (ACDD recommends a licence, e.g. CC-BY-4.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding: ``attribute`` names the global attribute, variable or file concerned."""

    severity: Severity
    attribute: str
    message: str
    file: str | None = None

    def __str__(self) -> str:
        where = f" ({self.file})" if self.file else ""
        return f"{self.severity:<8} {self.attribute}: {self.message}{where}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form scan reports and the scan cache keep."""
        return {"severity": self.severity, "attribute": self.attribute, "message": self.message, "file": self.file}


@dataclass
class Report:
    """Problems found in one dataset (``path`` in its tree) and the fields extracted."""

    path: str
    problems: list[Problem] = field(default_factory=list)
    #: what extraction found: kind ("zarr v2", "zarr v3", "dataset_meta.yaml"), variables, ...
    found: dict[str, Any] = field(default_factory=dict)

    def error(self, attribute: str, message: str, *, file: str | None = None) -> None:
        """Record an error: the item would be wrong or cannot be built."""
        self.problems.append(Problem("error", attribute, message, file))

    def warn(self, attribute: str, message: str, *, file: str | None = None) -> None:
        """Record a warning: a recommended attribute is missing or suspicious."""
        self.problems.append(Problem("warning", attribute, message, file))

    @property
    def errors(self) -> list[Problem]:
        """The problems of severity ``error``."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """The problems of severity ``warning``."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def about(self, attribute: str) -> list[Problem]:
        """The problems concerning ``attribute``."""
        return [p for p in self.problems if p.attribute == attribute]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``halodb check --json``)."""
        return {
            "path": self.path,
            "ok": self.ok,
            "problems": [
                {"severity": p.severity, "attribute": p.attribute, "message": p.message, "file": p.file}
                for p in self.problems
            ],
            "found": self.found,
        }

    def __str__(self) -> str:
        def count(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        head = f"{self.path or '/'}: "
        if not self.problems:
            head += "ok"
        else:
            head += f"{count(len(self.errors), 'error')}, {count(len(self.warnings), 'warning')}"
        ordered = self.errors + self.warnings
        return "\n".join([head] + [f"  {p}" for p in ordered])
