"""The file contract, at the two ends of the pipeline.

``schema`` reads and validates every input file (event log, audience settings) and
says which columns are features; ``atomic`` makes outputs appear whole or not at
all (and cleans up after killed runs); ``files`` writes formula-safe CSV and JSON
through it, words OS errors, checks model folders' checksums and holds hashes and
library versions for provenance;
``columns`` names the output columns shared by writers and the report;
``plan_dir`` reads a plan folder back. Nothing here imports a later stage.
"""

from optimizer.io.files import atomic_dir, atomic_path, write_csv, write_json
from optimizer.io.schema import read_event_log, read_settings

__all__ = [
    "atomic_dir",
    "atomic_path",
    "read_event_log",
    "read_settings",
    "write_csv",
    "write_json",
]
