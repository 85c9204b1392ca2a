#!/usr/bin/python3 -IS
"""postfix_relay-metrics: relay health for node_exporter's textfile collector and the Salt beacon.

Deployed by the postfix_relay formula (pillar ``postfix_relay:monitoring``) and run
by ``postfix_relay-metrics.timer``.  Standard library only, no Salt: a salt-call
costs seconds of CPU, this costs a few tens of milliseconds.  Each run:

1. reads the Postfix log lines written since the last run (journald cursor, or
   byte offset + inode of /var/log/mail.log), counts deliveries per status and
   deferrals per reason class: the counters live in the state file, so they are
   monotonic across log rotation, journal vacuuming and restarts;
2. reads the queue (``postqueue -j``): messages per queue, the oldest message's
   age, the reason classes of what is deferred now;
3. writes the textfile (PATH.tmp in the same directory, then rename: node_exporter
   never reads half a file), mode 0644, and the state file the beacon reads.

The reason classes (``connect``, ``tls``, ``auth``, ``throttled``, ``rejected``,
else ``other``) are not defined here: the formula's execution module owns them
(``postfix_relay.REASON_CLASSES``, used by ``postfix_relay.status`` too) and
writes them into this script's config file.  Nothing here reads or writes a
secret: the config holds paths, labels and patterns only.
"""

from __future__ import annotations

import marshal
import os
import sys
import time

# Not imported at the top: json and re (json imports re) cost about 14 ms of CPU, more
# than a quarter of the budget; a write where nothing is queued or deferred needs neither.

DEFAULT_CONFIG = "/etc/postfix/postfix_relay.monitoring.json"
# The collector's own state: counters, log position, and a copy of the config (marshal,
# which needs no import to read; the JSON config is parsed only when it changed).
OWN_STATE = "/var/lib/postfix_relay/collector.state"
QUEUES = ("active", "deferred", "hold", "incoming", "maildrop")
STATUSES = ("sent", "deferred", "bounced")
# Postfix's delivery agents that log ``status=``: the journal is filtered on these identifiers.
AGENTS = ("smtp", "lmtp", "error", "retry", "local", "virtual", "pipe", "discard")
KNOWN_STATUS = ("sent", "deferred", "bounced", "expired")
MAIL_LOGS = ("/var/log/mail.log", "/var/log/maillog")


def _run(argv: list[str]) -> tuple[int, str]:
    """(exit status, stdout) of a command, stderr discarded.  posix_spawn, not subprocess:
    importing subprocess costs more CPU (about 20 ms measured) than the rest of a write."""
    read, write = os.pipe()
    devnull = os.open(os.devnull, os.O_WRONLY)
    actions = [(os.POSIX_SPAWN_DUP2, write, 1), (os.POSIX_SPAWN_DUP2, devnull, 2), (os.POSIX_SPAWN_CLOSE, read)]
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    except OSError:
        for fd in (read, write, devnull):
            os.close(fd)
        return 127, ""
    os.close(write)
    os.close(devnull)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def _atomic_write(path: str, text: str, mode: int = 0o644, data: bytes | None = None) -> None:
    # A name of our own, created exclusively and never through a symlink: the textfile's
    # directory may belong to node_exporter's user, who could plant PATH.tmp.
    tmp = f"{path}.{os.getpid()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError:  # left by a killed run with our PID, or planted: remove the name only
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode)
    try:
        os.write(fd, text.encode() if data is None else data)
        os.fchmod(fd, mode)  # the umask must not narrow it: node_exporter runs as another user
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _load(path: str, default):
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def _load_state(path: str) -> dict:
    """The collector's own state (marshal: no import to read it); {} when missing or unreadable."""
    try:
        with open(path, "rb") as handle:
            state = marshal.load(handle)
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    return state if isinstance(state, dict) else {}


def _json(value) -> str:
    """JSON for the beacon's state file, without importing json (plain dicts, lists, numbers, text)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_json(str(k))}: {_json(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if " " <= c != "\x7f" else f"\\u{ord(c):04x}" for c in text) + '"'


def new_state() -> dict:
    return {
        "deliveries": dict.fromkeys(STATUSES, 0),
        "deferrals": {},
        "last_delivery": {},
        "journal_cursor": None,
        "file": None,
    }


# Before classifying: addresses (<...>, a quoted local part included), host[ip] and name=...
# go, so that smtp-tls.example.net or <handshake@evil.example> do not decide the class.
# The same list as the module's REASON_SCRUB (a unit test compares them).
SCRUB = [
    [r'<(?:"(?:[^"\\]|\\.)*"|[^<>"])*>', "<>"],
    [r"[^\s\[\]()<>]+\[[0-9A-Fa-f:.]+\](?::\d+)?", "host"],
    [r"\bname=\S+", "name="],
]


class Classifier:
    """The reason classes from the config: first matching pattern wins, else ``other``."""

    def __init__(self, rules: list[list[str]], cache: dict | None = None, scrub: list | None = None):
        self.source = rules
        self.scrub_source = SCRUB if scrub is None else scrub
        self.scrub: list | None = None
        self.rules: list | None = None  # compiled at the first new deferral text: most writes see none
        self.names = [name for name, _ in rules]
        # text -> class, kept in the state: a queue that waits shows the same few texts run after run.
        self.cache = {} if cache is None else cache

    def __call__(self, text: str) -> str:
        found = self.cache.get(text)
        if found is None:
            found = self.cache[text] = self._classify(text)
            if len(self.cache) > 2000:
                self.cache.clear()
        return found

    def _classify(self, text: str) -> str:
        if self.rules is None:
            import re

            self.rules = [(name, re.compile(pattern, re.IGNORECASE)) for name, pattern in self.source]
            self.scrub = [(re.compile(pattern), repl) for pattern, repl in self.scrub_source]
        for pattern, repl in self.scrub:  # host names and addresses say nothing of the reason
            text = pattern.sub(repl, text)
        for name, pattern in self.rules:
            if pattern.search(text):
                return name
        return "other"


# -- the mail log -------------------------------------------------------------
def _journal_lines(state: dict) -> list[str]:
    """New Postfix delivery lines from journald (``short-unix``: epoch first), cursor kept in ``state``."""
    argv = ["journalctl", "--no-pager", "-q", "-o", "short-unix", "--show-cursor"]
    for agent in AGENTS:
        argv += ["-t", f"postfix/{agent}"]
    if state.get("journal_cursor"):
        argv.append(f"--after-cursor={state['journal_cursor']}")
    lines = _run(argv)[1].splitlines()
    if lines and lines[-1].startswith("-- cursor: "):
        state["journal_cursor"] = lines.pop()[len("-- cursor: ") :]
    return lines  # "1733150000.123456 host postfix/smtp[123]: ABC: to=<...>, status=..."


def _file_lines(path: str, state: dict) -> list[str]:
    """New lines of a syslog file; after a rotation the rest of the rotated file (path.1) first."""
    pos = state.get("file") or {}
    st = os.stat(path)
    lines: list[str] = []
    offset = pos.get("offset", 0)
    if pos.get("path") == path and pos.get("inode") not in (None, st.st_ino):
        rotated = f"{path}.1"
        try:
            if os.stat(rotated).st_ino == pos["inode"]:
                with open(rotated, "rb") as handle:
                    handle.seek(offset)
                    lines += handle.read().decode(errors="replace").splitlines()
        except OSError:
            pass
        offset = 0
    elif pos.get("path") != path or st.st_size < offset:
        offset = 0
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1  # a half-written last line waits for the next run
    lines += data[:end].decode(errors="replace").splitlines()
    state["file"] = {"path": path, "inode": st.st_ino, "offset": offset + end}
    return [f"{_syslog_time(line)} {line}" for line in lines]


def _syslog_time(line: str) -> float:
    """Epoch of a syslog line: RFC 3339 (rsyslog's default on Debian 12+) or 'Mon DD HH:MM:SS'."""
    stamp = line.split(" ", 1)[0]
    try:
        if "T" in stamp:
            from datetime import datetime

            return datetime.fromisoformat(stamp).timestamp()
        today = time.localtime()
        now, year = time.mktime(today), today.tm_year
        stamp = time.mktime(time.strptime(f"{year} {line[:15]}", "%Y %b %d %H:%M:%S"))
        if stamp > now + 86400:  # 'Dec 31 23:59:59' read just after New Year: last year's
            stamp = time.mktime(time.strptime(f"{year - 1} {line[:15]}", "%Y %b %d %H:%M:%S"))
        return min(stamp, now)
    except ValueError:
        return time.time()


def _skip_address(line: str, pos: int) -> int:
    """Index just past the address that starts at ``pos`` (after '<'), a quoted local part
    read as one token; -1 when the line ends first."""
    if line.startswith('"', pos):
        pos += 1
        while pos < len(line) and line[pos] != '"':
            pos += 2 if line[pos] == "\\" else 1
        pos += 1
    end = line.find(">", pos)
    return end + 1 if end >= 0 else -1


def count_log(lines: list[str], state: dict, classify: Classifier) -> None:
    """Add the delivery lines to the counters in ``state`` (each line starts with its epoch)."""
    deliveries, deferrals, last = state["deliveries"], state["deferrals"], state["last_delivery"]
    for line in lines:
        # "<epoch> host postfix/smtp[1]: ID: to=<...>, relay=..., status=deferred (reason)"
        # The status is the first one after the addresses: a quoted local part may hold
        # ", status=sent (...)" itself (Django accepts such an address from any visitor).
        begin = line.find(": to=<")
        if begin < 0 or not line.endswith(")"):
            continue
        after = _skip_address(line, begin + 6)
        if line.startswith(", orig_to=<", after):
            after = _skip_address(line, after + 11)
        at = line.find(", status=", after) if after >= 0 else -1
        if at < 0:
            continue
        status, _, reason = line[at + 9 : -1].partition(" (")
        if status not in KNOWN_STATUS:
            continue
        status = "bounced" if status == "expired" else status
        deliveries[status] = deliveries.get(status, 0) + 1
        if status == "deferred":
            name = classify(reason)
            deferrals[name] = deferrals.get(name, 0) + 1
        try:
            stamp = float(line.split(" ", 1)[0])
        except ValueError:
            continue
        if status in ("sent", "deferred") and stamp > last.get(status, 0):
            last[status] = stamp


# -- the queue ----------------------------------------------------------------
def _json_values(line: str, name: str):
    """Each value of ``"name": "text"`` or ``"name": 123`` in one line of ``postqueue -j``.

    Read by hand, not with json (whose import costs more CPU than the rest of a
    write): inside a JSON string every quote is escaped, so ``"name":`` followed
    by an unescaped quote or a digit can only be a key.
    """
    key = f'"{name}":'
    at = line.find(key)
    while at >= 0:
        at += len(key)
        while at < len(line) and line[at] == " ":
            at += 1
        if line.startswith('"', at):
            end = at + 1
            while end < len(line) and line[end] != '"':
                end += 2 if line[end] == "\\" else 1
            yield line[at + 1 : end].replace('\\"', '"').replace("\\/", "/").replace("\\\\", "\\")
        else:
            end = at
            while end < len(line) and (line[end].isdigit() or line[end] in ".-"):
                end += 1
            if end > at:
                yield float(line[at:end])
        at = line.find(key, end)


def read_queue(classify: Classifier, now: float) -> dict:
    returncode, out = _run(["postqueue", "-j"])
    counts = dict.fromkeys(QUEUES, 0)
    reasons: dict[str, int] = {}
    oldest = None
    for line in out.splitlines():
        if not line.strip():
            continue
        queue = next(_json_values(line, "queue_name"), "incoming")
        counts[queue] = counts.get(queue, 0) + 1
        arrival = next(_json_values(line, "arrival_time"), None)
        if arrival is not None and (oldest is None or arrival < oldest):
            oldest = arrival
        if queue == "deferred":
            names = {classify(reason) for reason in _json_values(line, "delay_reason") if reason}
            for name in names:
                reasons[name] = reasons.get(name, 0) + 1
    return {
        "ok": returncode == 0,
        "queue": counts,
        "oldest_age_seconds": max(0.0, now - oldest) if oldest is not None else 0.0,
        "deferred_reasons": reasons,
    }


# -- the textfile ---------------------------------------------------------------
def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(config: dict, state: dict, snapshot: dict, classes: list[str]) -> str:
    info = config.get("info", {})
    out = [
        "# HELP postfix_relay_queue_messages Messages in each Postfix queue (postqueue -j).",
        "# TYPE postfix_relay_queue_messages gauge",
    ]
    out += [f'postfix_relay_queue_messages{{queue="{q}"}} {n}' for q, n in snapshot["queue"].items()]
    out += [
        "# HELP postfix_relay_oldest_message_age_seconds Age of the oldest queued message (0 when empty).",
        "# TYPE postfix_relay_oldest_message_age_seconds gauge",
        f"postfix_relay_oldest_message_age_seconds {snapshot['oldest_age_seconds']:.0f}",
        "# HELP postfix_relay_deliveries_total Delivery attempts logged by Postfix, per status.",
        "# TYPE postfix_relay_deliveries_total counter",
    ]
    out += [f'postfix_relay_deliveries_total{{status="{s}"}} {state["deliveries"].get(s, 0)}' for s in STATUSES]
    out += [
        "# HELP postfix_relay_last_delivery_timestamp_seconds When Postfix last logged this status.",
        "# TYPE postfix_relay_last_delivery_timestamp_seconds gauge",
    ]
    out += [
        f'postfix_relay_last_delivery_timestamp_seconds{{status="{s}"}} {state["last_delivery"].get(s, 0):.3f}'
        for s in ("sent", "deferred")
    ]
    out += [
        "# HELP postfix_relay_deferrals_total Deferred delivery attempts, per reason class.",
        "# TYPE postfix_relay_deferrals_total counter",
    ]
    out += [f'postfix_relay_deferrals_total{{reason="{r}"}} {state["deferrals"].get(r, 0)}' for r in classes]
    labels = ",".join(f'{k}="{_label(info.get(k, ""))}"' for k in ("provider", "relayhost", "tls", "enabled"))
    out += [
        "# HELP postfix_relay_info The relay as postfix_relay configured it.",
        "# TYPE postfix_relay_info gauge",
        f"postfix_relay_info{{{labels}}} 1",
        "# HELP postfix_relay_metrics_scrape_ok 1 when postqueue answered at the last write.",
        "# TYPE postfix_relay_metrics_scrape_ok gauge",
        f"postfix_relay_metrics_scrape_ok {1 if snapshot['ok'] else 0}",
    ]
    return "\n".join(out) + "\n"


def run(config_path: str, own_path: str = OWN_STATE) -> dict:
    # One run at a time (the timer, an operator, a test): two would count the same lines twice.
    import fcntl

    os.makedirs(os.path.dirname(own_path), exist_ok=True)
    lock = os.open(f"{own_path}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        return _locked_run(config_path, own_path)
    finally:
        os.close(lock)


def _locked_run(config_path: str, own_path: str) -> dict:
    state = {**new_state(), **_load_state(own_path)}
    try:
        stamp = os.stat(config_path).st_mtime_ns
    except OSError:
        stamp = None
    if stamp is None or state.get("config_mtime") != stamp:
        state["config"], state["config_mtime"] = _load(config_path, None), stamp
        state["reason_cache"] = {}  # new rules apply to the texts already seen, too
    config = state["config"]
    if config is None:
        sys.exit(f"postfix_relay-metrics: cannot read {config_path}; apply the postfix_relay state again")
    classify = Classifier(config["reason_classes"], state.setdefault("reason_cache", {}), config.get("reason_scrub"))
    state_path = config["state_file"]
    now = time.time()
    log = next((p for p in MAIL_LOGS if os.path.exists(p)), None)
    lines = _file_lines(log, state) if log else _journal_lines(state)
    count_log(lines, state, classify)
    snapshot = read_queue(classify, now)
    classes = [*classify.names, "other"]
    if config.get("textfile"):
        _atomic_write(config["textfile"], render(config, state, snapshot, classes))
    # The beacon reads this: under postfix_relay:enabled: false mail waits on purpose.
    relaying = "disabled" if config.get("info", {}).get("enabled") == "false" else "enabled"
    state.update(snapshot, written_at=now, interval=config.get("interval", 30), relaying=relaying)
    _atomic_write(own_path, "", mode=0o600, data=marshal.dumps(state))
    private = ("config", "config_mtime", "reason_cache")
    _atomic_write(state_path, _json({k: v for k, v in state.items() if k not in private}))
    return state


def remove_textfile(config_path: str) -> None:
    """Monitoring switched off: the textfile goes, so that node_exporter stops exporting stale values."""
    config = _load(config_path, {})
    for path in (config.get("textfile"), f"{config.get('textfile')}.tmp"):
        if path and os.path.exists(path):
            os.remove(path)


def main(argv: list[str]) -> int:
    config = DEFAULT_CONFIG
    for arg in argv:
        if arg.startswith("--config="):
            config = arg.split("=", 1)[1]
    if "--remove-textfile" in argv:
        remove_textfile(config)
        return 0
    run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
