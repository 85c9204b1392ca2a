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

.. code-block:: yaml

    beacons:
      postfix_relay:
        - interval: 30
        - deferred: 1
        - oldest_age: 900
        - state_file: /var/lib/postfix_relay/metrics.json
"""

from __future__ import annotations

import json
import logging
import time

log = logging.getLogger(__name__)

__virtualname__ = "postfix_relay"
DEFAULT_STATE = "/var/lib/postfix_relay/metrics.json"
FAULT_CLASSES = ("auth", "tls", "rejected")
KNOWN = ("interval", "deferred", "oldest_age", "state_file", "beacon_module", "enabled", "disable_during_state_run")
# The conditions reported last; None until the first check (a healthy start fires nothing).
_LAST: dict[str, list[str] | None] = {"conditions": None}


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


def beacon(config):
    """Compare the collector's latest state with the last one reported; fire on change."""
    cfg = _config(config)
    path = cfg.get("state_file", DEFAULT_STATE)
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        state = None
    names, data = event(state, cfg, time.time(), _LAST["conditions"])
    _LAST["conditions"] = names
    if data is None:
        return []
    log.info("postfix_relay beacon: %s %s", data["tag"], names)
    return [data]
