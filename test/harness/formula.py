"""The formula's execution module, loaded as plain Python, and sample OS facts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULE_PATH = REPO / "_modules" / "postfix_relay.py"


def load_module():
    """Import ``_modules/postfix_relay.py`` without Salt (its logic is pure Python)."""
    spec = importlib.util.spec_from_file_location("postfix_relay_module", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pfr = load_module()

TEMPLATES = REPO / "postfix_relay" / "files" / "default"


def render_template(name: str, context: dict, pillar: dict) -> str:
    """A formula template rendered with plain Jinja, ``salt['pillar.get']`` reading ``pillar``.

    For the templates that read secrets from pillar (sasl_passwd, django.env):
    Salt renders them the same way, and keeps a trailing newline as here.
    """
    import jinja2

    def pillar_get(path: str, default: str = ""):
        node = {"postfix_relay": pillar}
        for part in path.split(":"):
            node = node[int(part)] if isinstance(node, list) else node.get(part, default)
        return node

    source = (TEMPLATES / name).read_text()
    text = jinja2.Environment(keep_trailing_newline=True).from_string(source)
    return text.render(salt={"pillar.get": pillar_get}, **context)


DEBIAN12 = {"os_family": "Debian", "os": "Debian", "osmajorrelease": 12, "fqdn": "web1.example.com"}
DEBIAN13 = {"os_family": "Debian", "os": "Debian", "osmajorrelease": 13, "fqdn": "web1.example.com"}
REDHAT8 = {"os_family": "RedHat", "os": "Rocky", "osmajorrelease": 8, "fqdn": "web1.example.com"}
REDHAT9 = {"os_family": "RedHat", "os": "AlmaLinux", "osmajorrelease": 9, "fqdn": "web1.example.com"}


def render_file(settings: dict, file_id: str, pillar: dict | None = None) -> str:
    """The content of one entry of ``settings["files"]``, rendered as the config SLS would."""
    (entry,) = (f for f in settings["files"] if f["id"] == file_id and f["present"])
    if entry["template"]:
        return render_template(entry["template"], entry["context"], pillar or {})
    return entry["contents"] + "\n"
