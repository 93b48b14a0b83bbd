"""What the benchmark scripts' report steps share: reading figures from their TSV files, medians
that skip the runs that produced nothing, and putting a section into docs/BENCHMARKS.md.

The report steps of scripts/bench.sh and scripts/pairs.sh are Python run from the project root;
they import this file with `sys.path.insert(0, "scripts")` then `from report import ...`.
As a command: `python3 scripts/report.py replace-section DOC TITLE SECTION_FILE`.
"""

import re
import statistics
import sys


def num(value):
    """A TSV field as a number; None for `n/a`, an empty field or a missing one."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def median(values):
    """The median of the values that are not None; None if no value is left."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def replace_section(doc_path, title, section_path):
    """Puts the file at section_path (which starts with "## TITLE") into the document, replacing
    the section of that title (up to the next "## "), or appending it if there is none."""
    doc = open(doc_path).read()
    section = open(section_path).read().rstrip() + "\n"
    pattern = re.compile(r"## " + re.escape(title) + r"\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: section, doc, count=1)
    else:
        doc = doc.rstrip() + "\n\n" + section
    open(doc_path, "w").write(doc)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "replace-section":
        sys.exit("usage: python3 scripts/report.py replace-section DOC TITLE SECTION_FILE")
    replace_section(*sys.argv[2:])
