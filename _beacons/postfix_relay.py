"""
Salt beacon: the relay's health on the event bus, only when it changes.

Configured by the postfix_relay formula from pillar ``postfix_relay:monitoring:beacon``
(``beacon.present``); it reads the state file that ``postfix_relay-metrics`` (the
formula's systemd timer) writes, so the beacon itself runs no Postfix command.

Conditions (each one a key of ``conditions`` in the event):

- ``deferred``: at least ``deferred`` messages wait in the deferred queue
- ``oldest_age``: the oldest queued message is older than ``oldest_age`` seconds
- ``auth``, ``tls``, ``rejected``: deferred messages whose last failure was of that
  class (``rejected``: a 5xx that soft_bounce kept)
- ``collector``: the state file is missing or stale (the timer does not run)

Events, only when the set of conditions changes:
``salt/beacon/<minion>/postfix_relay/alert`` (conditions not empty) and
``salt/beacon/<minion>/postfix_relay/recovery`` (all cleared).  The data carries
``conditions``, ``reasons`` (deferred messages per reason class: connect, tls,
auth, throttled, rejected, other), ``queue`` and ``oldest_age_seconds``.

The set reported last is kept in ``beacon.last.json`` next to the state file
(written atomically), so a beacons refresh or a minion restart does not fire an
ongoing alert again, and a recovery that happened while the minion was down is
still sent.  Without that file (first start) a healthy relay fires nothing.

.. code-block:: yaml

    beacons:
      postfix_relay:
        - interval: 30
        - deferred: 1
        - oldest_age: 900
        - state_file: /var/lib/postfix_relay/metrics.json
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time

log = logging.getLogger(__name__)

__virtualname__ = "postfix_relay"
DEFAULT_STATE = "/var/lib/postfix_relay/metrics.json"
FAULT_CLASSES = ("auth", "tls", "rejected")
KNOWN = ("interval", "deferred", "oldest_age", "state_file", "beacon_module", "enabled", "disable_during_state_run")
LAST_NAME = "beacon.last.json"
# The conditions reported last, per file that persists them (read once per loaded module).
_LAST: dict[str, list[str] | None] = {}


def __virtual__():
    return __virtualname__


def _config(config) -> dict:
    out: dict = {}
    for item in config:
        out.update(item)
    return out


def validate(config):
    """The beacon's configuration: a list of one-key mappings, integers where numbers are expected."""
    if not isinstance(config, list) or not all(isinstance(item, dict) for item in config):
        return False, "postfix_relay beacon: the configuration must be a list of mappings"
    cfg = _config(config)
    unknown = sorted(set(cfg) - set(KNOWN))
    if unknown:
        return False, f"postfix_relay beacon: unknown keys {unknown}; known: {', '.join(KNOWN)}"
    for key in ("interval", "deferred", "oldest_age"):
        value = cfg.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return False, f"postfix_relay beacon: {key} must be a positive integer, got {value!r}"
    return True, "Valid beacon configuration"


def conditions(state: dict | None, cfg: dict, now: float) -> dict:
    """The active conditions of one state snapshot (pure: unit-tested without Salt)."""
    interval = float((state or {}).get("interval", 30))
    if not state or now - float(state.get("written_at", 0)) > 3 * interval + 60:
        return {"collector": "no fresh state from postfix_relay-metrics.timer"}
    found: dict = {}
    if state.get("relaying") == "disabled":
        # postfix_relay:enabled: false holds every message on purpose: a queue that waits and
        # ages is the off switch working, not trouble (the README's PromQL rule skips it too).
        return found
    deferred = int(state.get("queue", {}).get("deferred", 0))
    if deferred >= int(cfg.get("deferred", 1)):
        found["deferred"] = deferred
    oldest = float(state.get("oldest_age_seconds", 0))
    if oldest > int(cfg.get("oldest_age", 900)):
        found["oldest_age"] = round(oldest)
    reasons = state.get("deferred_reasons", {})
    for name in FAULT_CLASSES:
        if reasons.get(name):
            found[name] = reasons[name]
    return found


def event(state: dict | None, cfg: dict, now: float, last: list[str] | None) -> tuple[list[str], dict | None]:
    """(the new condition names, the event to fire or None): fires on every change of the set."""
    found = conditions(state, cfg, now)
    names = sorted(found)
    if names == (last if last is not None else []):
        return names, None
    state = state or {}
    data = {
        "tag": "alert" if names else "recovery",
        "conditions": found,
        "reasons": state.get("deferred_reasons", {}),
        "queue": state.get("queue", {}),
        "oldest_age_seconds": round(float(state.get("oldest_age_seconds", 0))),
        "previous": last or [],
    }
    return names, data


def _read_last(path: str) -> list[str] | None:
    """The condition names reported last (None: never reported, or unreadable: a fresh start)."""
    try:
        with open(path, encoding="utf-8") as handle:
            names = json.load(handle).get("conditions")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return sorted(names)
    return None


def _write_last(path: str, names: list[str]) -> None:
    """Replace ``path`` atomically; never writes through a planted PATH.tmp (O_EXCL|O_NOFOLLOW)."""
    tmp = f"{path}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"conditions": names, "written_at": time.time()}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def beacon(config):
    """Compare the collector's latest state with the last one reported; fire on change."""
    cfg = _config(config)
    path = cfg.get("state_file", DEFAULT_STATE)
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        state = None
    last_path = os.path.join(os.path.dirname(os.path.abspath(path)), LAST_NAME)
    if last_path not in _LAST:
        _LAST[last_path] = _read_last(last_path)
    last = _LAST[last_path]
    names, data = event(state, cfg, time.time(), last)
    if names != last:
        try:
            _write_last(last_path, names)
        except OSError as exc:  # still reported once per change while this module lives
            log.warning("postfix_relay beacon: cannot keep the last conditions in %s: %s", last_path, exc)
    _LAST[last_path] = names
    if data is None:
        return []
    log.info("postfix_relay beacon: %s %s", data["tag"], names)
    return [data]
