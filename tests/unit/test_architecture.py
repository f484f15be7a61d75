"""The folder tree is the design: layers import only layers below them, nothing imports in a
cycle, and the pure core imports nothing outside itself.

Layers, bottom up (a module may import its own package and any package below):
core -> kernel -> feeds -> export -> config, control, ownership, reload, metrics, sdnotify -> daemon -> tools -> cli
-> __main__.
"""
import ast
import pathlib
import subprocess
import sys

import kernelsync

PACKAGE = pathlib.Path(kernelsync.__file__).parent
LAYERS = {"core": 0, "kernel": 1, "feeds": 2, "export": 3, "config": 4, "control": 4, "ownership": 4, "reload": 4,
          "metrics": 4, "sdnotify": 4, "daemon": 5, "tools": 6, "cli": 7, "showtext": 7, "__main__": 8, "__init__": 0}
ALLOWED_OUTSIDE_CORE = {"__future__", "attrs", "collections", "enum", "errno", "gc", "ipaddress", "logging", "operator",
                        "socket", "typing"}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path):
    """Every module ``path`` imports (at any depth: function-level imports count), absolute."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target
            for alias in node.names:  # "from . import codec" imports a module
                yield "%s.%s" % (target, alias.name)


def graph():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        edges[name] = {t for t in imports(path) if t in modules and t != name}
    return modules, edges


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else 0


def test_every_import_goes_down_the_layers():
    _modules, edges = graph()
    upward = sorted("%s -> %s" % (a, b) for a, targets in edges.items() for b in targets if layer(b) > layer(a))
    assert upward == []


def test_no_import_cycle():
    _modules, edges = graph()
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: %s" % " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_the_core_imports_nothing_outside_itself():
    for path in (PACKAGE / "core").glob("*.py"):
        for target in imports(path):
            if target.startswith("kernelsync"):
                assert target.startswith("kernelsync.core"), (path.name, target)
            else:
                assert target.split(".")[0] in ALLOWED_OUTSIDE_CORE, (path.name, target)


def test_importing_the_engine_loads_only_the_core():
    out = subprocess.run([sys.executable, "-c", "import kernelsync.core.engine, sys; print(sorted(m for m in "
                          "sys.modules if m.startswith('kernelsync')))"], capture_output=True, text=True, check=True)
    loaded = eval(out.stdout)
    assert loaded and all(m == "kernelsync" or m.startswith("kernelsync.core") for m in loaded), loaded
    assert "kernelsync.core.engine" in loaded
