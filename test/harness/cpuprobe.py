"""CPU seconds used so far, by component; runs on the minion (standard library only).

``make bench`` takes one snapshot before and one after a measurement and
divides the difference by the number of messages, so that it can say where
the time goes: Postfix (each daemon; daemons that already exited are counted
in ``postfix:exited``), journald (Postfix's log lines), the fake provider, and
the whole machine (``/proc/stat`` is not namespaced: every core, every process,
Docker included).  The load generator reports its own CPU (submit.py).

    python3 cpuprobe.py      # prints one JSON object of seconds
"""

from __future__ import annotations

import json
import os


def _processes() -> dict[int, dict]:
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
                raw = handle.read()
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        out[int(pid)] = {
            "comm": raw[raw.index("(") + 1 : raw.rindex(")")],
            "ppid": int(fields[1]),
            "own": utime + stime,
            "reaped": cutime + cstime,
            "cmdline": cmdline,
        }
    return out


def snapshot() -> dict[str, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    procs = _processes()
    masters = [pid for pid, p in procs.items() if p["comm"] == "master"]
    out: dict[str, float] = {"postfix": 0, "journald": 0, "provider": 0}
    for pid, proc in procs.items():
        if masters and masters[0] in (pid, proc["ppid"]):
            daemon = f"postfix:{proc['comm']}"
            out[daemon] = out.get(daemon, 0) + proc["own"]
            out["postfix"] += proc["own"]
            if pid == masters[0]:  # master reaps every daemon: what the exited ones used
                out["postfix:exited"] = proc["reaped"]
                out["postfix"] += proc["reaped"]
        elif proc["comm"] == "systemd-journal":
            out["journald"] += proc["own"]
        elif "fakeprovider" in proc["cmdline"]:
            out["provider"] += proc["own"]
    with open("/proc/stat", encoding="utf-8") as handle:
        cpu = [int(x) for x in handle.readline().split()[1:]]
    out["machine_busy"] = sum(cpu) - cpu[3] - cpu[4]  # all but idle and iowait
    out["machine_total"] = sum(cpu)
    return {key: value / ticks for key, value in out.items()}


if __name__ == "__main__":
    print(json.dumps(snapshot()))
