"""How oneword's modules depend on each other, read from the source with `ast` (module-level and function-level
imports alike, relative and absolute): the command line is a leaf that nothing else imports, no two modules
import each other even through a chain, and `import oneword` / `oneword --help` load no torch."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "oneword"
COMMANDS = "oneword.commands"
# `python -m oneword` is the command line's other door; it may import it
MAY_IMPORT_COMMANDS = {"oneword.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported oneword module, line, inside a function) for every import statement in the file."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
            continue
        local = False
        up = node
        while up in parents:
            up = parents[up]
            if isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                local = True
                break
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
        for t in targets:
            if t == "oneword" or t.startswith("oneword."):
                while t not in known and "." in t:  # `import oneword.x.y` names a module, or its package
                    t = t.rpartition(".")[0]
                found.append((t, node.lineno, local))
    return found


def import_graph() -> dict[str, list[tuple[str, int, bool]]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(graph: dict[str, list]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself), Tarjan's way."""
    edges = {m: sorted({t for t, _, _ in targets if t in graph}) for m, targets in graph.items()}
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def describe_cycle(graph, component: list[str]) -> str:
    inside = set(component)
    lines = [
        f"  {src}:{line} imports {dst}{' (inside a function)' if local else ''}"
        for src in component
        for dst, line, local in graph[src]
        if dst in inside
    ]
    return " <-> ".join(component) + "\n" + "\n".join(sorted(set(lines)))


def test_the_graph_sees_relative_absolute_and_function_level_imports():
    graph = import_graph()
    assert {t for t, _, _ in graph["oneword.commands"]} >= {
        "oneword.commands.learn",
        "oneword.commands._common",
        "oneword.errors",
        "oneword",
    }
    learn_cmd = graph["oneword.commands.learn"]
    assert ("oneword.invert", True) in {(t, local) for t, _, local in learn_cmd}  # inside run()
    assert ("oneword.errors", False) in {(t, local) for t, _, local in learn_cmd}
    assert cycles({"a": [("b", 1, False)], "b": [("c", 2, True)], "c": [("a", 3, False)], "d": [("a", 4, False)]}) == [
        ["a", "b", "c"]
    ]


def test_nothing_outside_the_command_line_imports_it():
    offenders = [
        f"{m}:{line} imports {t}"
        for m, targets in import_graph().items()
        if not (m == COMMANDS or m.startswith(COMMANDS + ".")) and m not in MAY_IMPORT_COMMANDS
        for t, line, _ in targets
        if t == COMMANDS or t.startswith(COMMANDS + ".")
    ]
    assert not offenders, "the library must not depend on the command line:\n" + "\n".join(offenders)


def test_no_import_cycles_among_oneword_modules():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles (function-level imports count):\n" + "\n".join(
        describe_cycle(graph, c) for c in found
    )


def test_import_oneword_and_the_parser_load_no_torch():
    code = (
        "import sys, oneword, oneword.commands as c; c.build_parser().format_help(); "
        "heavy = sorted({'torch', 'diffusers', 'transformers', 'numpy'} & set(sys.modules)); "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
