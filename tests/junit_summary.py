"""Sum the JUnit XML reports of `make test`'s per-area pytest runs into one closing line:
``tests: N passed, N failed, N skipped`` (failed counts failures and errors)."""

import glob
import sys
import xml.etree.ElementTree as ET


def main(folder: str) -> int:
    suites = []
    for path in sorted(glob.glob(f"{folder}/*.xml")):
        root = ET.parse(path).getroot()
        suites += [root] if root.tag == "testsuite" else list(root)

    def total(key: str) -> int:
        return sum(int(s.get(key, 0)) for s in suites)

    failed = total("failures") + total("errors")
    passed = total("tests") - failed - total("skipped")
    print(f"tests: {passed} passed, {failed} failed, {total('skipped')} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
