"""The benchmarks' output convention: print a measured markdown section and append it to the results file."""

from __future__ import annotations


def publish(text: str, out: str | None) -> None:
    """Print `text`; if `out` is given, append it (plus a newline) to that markdown file, keeping earlier runs."""
    print(text)
    if out:
        with open(out, "a") as f:
            f.write(text + "\n")
