#!/usr/bin/env python3
"""Build guideline_data/valuesets/*.json from tools/valuesets/recipes and the copied sources.

Usage (from the repository root):
    python tools/build_valuesets.py [--out DIR] [--check]

Reads only files in the repository: the recipes (tools/valuesets/recipes/*.yaml), the build settings
(tools/valuesets/build.yaml) and the copied sources (tools/valuesets/sources/, provenance in its MANIFEST.md).
--check writes nothing and exits 1, naming each file, when a file differs from what the recipes produce.
Needs simple-icd-10-cm (requirements.txt) to collapse ICD-10-CM families.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.valuesets.engine import main

if __name__ == "__main__":
    sys.exit(main())
