"""Cache keys: what names a cached stage's output and the Prefect record of it.

A stage's output is named by a stable hash of its inputs and the stage's explicit version
(STAGE_VERSIONS), never by its code's text; its record, by where that output lives.
"""

from __future__ import annotations

import hashlib
import re

from wavecast.storage import DataDir

# The version of what each cached stage writes. Bump a stage's number when a change alters
# its output for the same inputs (a new candidate or rule, another architecture, a file
# layout): its cache keys change, and so do those of the stages reading its output by id.
# Editing a docstring or help text, or moving code between modules, changes no key, so no
# scheduled run retrains every series because of a refactor.
STAGE_VERSIONS = {"raw": 1, "windows": 1, "train": 1, "global_network": 2, "evaluate": 2}
RESULTS_DIR = "cache"  # a local data dir's Prefect results of its cached stages
# The names cache_record_name gives (a rebuild's record carries a suffix): what a prune reads.
CACHE_RECORD = re.compile(r"wavecast-([a-z_]+)-[0-9a-f]{32}(-rebuild-[0-9a-f]+)?")


def stable_hash(*parts: str | bytes, length: int = 16) -> str:
    """Hex digest of the parts, each length-prefixed so ("ab", "c") differs from ("a", "bc")."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:length]


def cache_record_name(data_dir: DataDir, *parts: str) -> str:
    """The cache key, and the name of the result file under RESULTS_DIR, of the cached stage
    whose output is at `parts`: named by where the output lives (tasks.prefect_support)."""
    return f"wavecast-{parts[0]}-{stable_hash(data_dir.uri(*parts), length=32)}"


def cache_version(stage: str) -> str:
    """A cached stage's explicit version, part of every cache key the stage computes."""
    return f"{stage}-v{STAGE_VERSIONS[stage]}"
