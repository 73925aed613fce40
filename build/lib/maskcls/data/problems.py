"""Problems found in a dataset: reported, never crashed on (the user picks strict or lenient)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data, located by a path relative to the dataset root."""

    kind: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path} line {self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": self.path, "line": self.line, "message": self.message}
