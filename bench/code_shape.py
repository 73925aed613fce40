"""The shape of the code: the longest functions and the calls with more than 4 positional arguments.

python bench/code_shape.py [SRC]      (default src/; run it on a worktree of an older commit to compare)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    lengths, calls = [], []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lengths.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(root)}:{node.name}"))
            if isinstance(node, ast.Call) and len([a for a in node.args if not isinstance(a, ast.Starred)]) > 4:
                calls.append(f"{path.relative_to(root)}:{node.lineno} {ast.unparse(node.func)}")
    largest = sorted((len(p.read_text().splitlines()), str(p.relative_to(root))) for p in root.rglob("*.py"))[-3:]
    print("largest modules (lines):", largest[::-1])
    print("longest functions (lines):", sorted(lengths, reverse=True)[:3])
    print(f"calls with more than 4 positional arguments: {len(calls)}")
    for call in calls:
        print("  ", call)


if __name__ == "__main__":
    main()
