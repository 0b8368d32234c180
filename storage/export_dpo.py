"""Kept for older imports: the per-annotator DPO export now lives in `storage.export.legacy` and the file
helpers in `storage.export.files`; `critlab export dpo|rm|kto|sft|judge` use `storage.export`."""

from storage.export.files import (  # noqa: F401
    SALT_KEY,
    _atomic_write,
    _fsync_dir,
    _umask,
    pseudonym,
    pseudonym_salt,
    pseudonymizer,
)
from storage.export.legacy import (  # noqa: F401
    _LABELS_SQL,
    _RESPONSES_SQL,
    DPO_SCHEMA,
    FORMATS,
    MESSAGE_TYPE,
    META_TYPE,
    PAIR_POLICY,
    SKIP_REASONS,
    ExportSummary,
    _message,
    _shared,
    build_dpo_pairs,
    export_dpo,
    pick_rejected,
)
