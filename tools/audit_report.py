"""Summarise a pip-audit JSON report honestly: how many packages were audited, skipped, and found vulnerable.

Exit 1 when a package has a known vulnerability that audit-ignore.txt does not list, 0 otherwise; a package
pip-audit could not look up (its vulnerability service does not know that version) is counted as not audited,
never as clean.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(report: Path) -> int:
    dependencies = json.loads(report.read_text())["dependencies"]
    skipped = [d for d in dependencies if "skip_reason" in d]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    audited = len(dependencies) - len(skipped)
    for dep in vulnerable:
        ids = ", ".join(v["id"] for v in dep["vulns"])
        print(f"pip-audit: {dep['name']} {dep['version']}: {ids}")
    print(f"pip-audit: {audited} of {len(dependencies)} packages audited, {len(vulnerable)} with known vulnerabilities")
    if skipped:
        print(
            f"pip-audit: WARNING: {len(skipped)} packages NOT audited (the vulnerability service does not know their"
            f" versions), e.g. {skipped[0]['skip_reason']}"
        )
    if vulnerable:
        print("pip-audit: fix them, or list each ID in audit-ignore.txt with a reason")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
