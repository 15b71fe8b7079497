"""Resuming a run as it started: its config.yaml must still be the one its checkpoints were made with."""

from __future__ import annotations

from pathlib import Path

from adlab import ownership
from adlab.config import migrate_config, validate_config
from adlab.errors import ConfigError


def check_config_unchanged(run_dir: Path, config: dict) -> None:
    """A resumed run continues as it started: its config.yaml must still be the config its
    checkpoints were made with (recorded in the run's ownership marker when it started)."""
    record = ownership.read_marker(run_dir) or {}
    started = record.get("config")
    if not isinstance(started, dict):
        return  # a run made before adlab recorded its config: nothing to compare with
    differ = changed_keys(_current_layout(started), config)
    if differ:
        shown = "; ".join(f"{key}: {_short(a)} -> {_short(b)}" for key, a, b in differ[:3])
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise ConfigError(
            f"{Path(run_dir) / 'config.yaml'}: edited since the run started ({shown}{more}); "
            "--resume continues a run as it started: undo the edit, or train a new run with it"
        )


def _current_layout(recorded: dict) -> dict:
    """A config recorded before a key moved (model.latent_dim, now model.autoencoder.latent_dim), as
    adlab records it now: the keys moved and the new keys' defaults filled in, without notices."""
    try:
        migrated = migrate_config(recorded, notices=False)
    except ConfigError:
        return recorded
    if migrated is recorded:
        return recorded  # nothing moved
    try:
        return validate_config(migrated, notices=False).to_dict()
    except ConfigError:
        return migrated  # a record no longer valid: compared key by key as it is


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, old value, new value) for every setting that differs."""
    out = []
    for key in sorted(old.keys() | new.keys(), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
