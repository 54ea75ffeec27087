"""meta/runtime.yml's action groups match the modules (module_defaults of a group reach exactly those)."""

import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _modules():
    directory = os.path.join(ROOT, "plugins", "modules")
    found = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".py") and not name.startswith("_"):
            with open(os.path.join(directory, name)) as handle:
                text = handle.read()
            doc = yaml.safe_load(text.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0])
            options = set(doc.get("options") or {})
            fragments = doc.get("extends_documentation_fragment") or []
            if any(fragment.startswith(("nl_biomero.database.container", "nl_biomero.database.engine_action"))
                   for fragment in fragments):
                options.add("engine")
            found[name[:-3]] = options
    return found


def test_action_groups():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as handle:
        groups = yaml.safe_load(handle)["action_groups"]
    modules = _modules()
    assert sorted(groups["all"]) == sorted(modules)
    assert sorted(groups["containers"]) == sorted(name for name, options in modules.items() if "engine" in options)
