"""The layout rules of CONTRIBUTING.md, enforced on the source with `ast` (no import of the package).

- no import cycle between text4vis modules, counting imports inside functions;
- no library module imports text4vis.cli;
- no function over MAX_LINES lines;
- no `--flag` in a message the library raises (flags belong to the CLI, which maps parameter names);
- every exception class derives from errors.Text4VisError;
- the layers: the flat model library (src/text4vis/*.py) never imports a product package (PRODUCTS), and a
  product imports another product only where PRODUCT_DEPENDS declares it (see CONTRIBUTING.md);
- no module over MAX_MODULE_LINES lines, at most MAX_TOP_MODULES modules at the top level.

`python tests/test_structure.py [SRC_DIR]` prints the measurements (cycles, longest functions, module
sizes) used in issue 11's closing note.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "text4vis"
MAX_LINES = 120
MAX_MODULE_LINES = 700
MAX_TOP_MODULES = 30
# The products, each a package built on the flat library; the command line (text4vis.cli) sits above all.
PRODUCTS = ("index", "serve", "train", "demo", "watch")
# product -> the products it is built on (the only product-to-product imports allowed)
PRODUCT_DEPENDS: dict[str, set[str]] = {"demo": {"train"}, "serve": {"watch"}}
# Modules exempt from a rule (none: keep it that way).
LONG_FUNCTION_EXEMPT: set[str] = set()
FLAG_EXEMPT: set[str] = set()
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = ["text4vis", *path.relative_to(src).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """text4vis modules that `name` imports anywhere in its file (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMMAND_MODULES" for t in node.targets):
            # cli/__init__ imports each command module by name (importlib): those are imports too
            found |= {f"{name}.{m}" for m in ast.literal_eval(node.value) if f"{name}.{m}" in known}
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from . import x` imports the submodule x when there is one, else a name of the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import text4vis.cli.common as c` -> text4vis.cli.common
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("text4vis"):
                found.add(target)
    return found


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    mods = modules(src)
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def functions(src: Path = SRC) -> list[tuple[int, str]]:
    """(lines, 'module.qualname') for every function and method, nested ones included."""
    out = []
    for name, path in modules(src).items():
        def walk(node, prefix):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out.append((child.end_lineno - child.lineno + 1, f"{name}.{prefix}{child.name}"))  # noqa: B023
                    walk(child, f"{prefix}{child.name}.")
                elif isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.")
                else:
                    walk(child, prefix)
        walk(_parse(path), "")
    return sorted(out, reverse=True)


def layer(module: str) -> str:
    """'cli', a product's name, or 'library' (the flat modules and the package itself)."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("cli", "__main__"):
        return "cli"
    if len(parts) > 1 and parts[1] in PRODUCTS:
        return parts[1]
    return "library"


def layer_violations(graph: dict[str, set[str]], depends: dict[str, set[str]] | None = None) -> list[str]:
    """'a -> b' for each import across the layers that the rule forbids: the library importing a product,
    a product importing a product it is not declared to be built on (PRODUCT_DEPENDS)."""
    depends = PRODUCT_DEPENDS if depends is None else depends
    out = []
    for module, targets in sorted(graph.items()):
        here = layer(module)
        if here == "cli":
            continue
        for target in sorted(targets):
            there = layer(target)
            if there in ("library", "cli", here):
                continue   # importing the cli is test_library_never_imports_the_cli's to report
            if here == "library" or there not in depends.get(here, set()):
                out.append(f"{module} -> {target}")
    return out


def top_level_modules(src: Path = SRC) -> list[str]:
    """The modules directly in the package folder (not __init__/__main__)."""
    return sorted(p.stem for p in src.glob("*.py") if p.stem not in ("__init__", "__main__"))


def module_sizes(src: Path = SRC) -> dict[str, int]:
    return {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules(src).items()}


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def flag_messages(src: Path = SRC, exempt: set[str] = frozenset()) -> list[str]:
    """'module:line: text' for each raised message (or message argument of a log/warn call) outside
    text4vis.cli that names a command-line flag."""
    out = []
    for name, path in modules(src).items():
        if name == "text4vis.cli" or name.startswith("text4vis.cli.") or name in exempt:
            continue
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.Raise) and node.exc is not None:
                parts = _strings(node.exc)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                    "log", "warn", "warning", "_warn"):
                parts = [s for arg in node.args for s in _strings(arg)]
            else:
                continue
            text = "".join(parts)
            if FLAG.search(text):
                out.append(f"{name}:{node.lineno}: {text[:100]}")
    return out


def exception_classes(src: Path = SRC) -> dict[str, list[str]]:
    """Class name -> base names, for every class in the package (to follow Exception ancestry)."""
    out = {}
    for name, path in modules(src).items():
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.ClassDef):
                bases = [getattr(b, "id", getattr(b, "attr", "")) for b in node.bases]
                out[f"{name}.{node.name}"] = bases
    return out


def foreign_exceptions(src: Path = SRC) -> list[str]:
    """Exception classes (by ancestry through classes of the package) not derived from Text4VisError.
    Warning classes are not errors: they derive from Text4VisWarning instead (checked apart)."""
    classes = exception_classes(src)
    by_short = {}
    for full, bases in classes.items():
        by_short.setdefault(full.rsplit(".", 1)[1], []).append(bases)
    builtin_errors = {n for n in dir(__builtins__ if isinstance(__builtins__, dict) else __builtins__)}
    builtin_errors = {n for n in dir(__import__("builtins"))
                      if isinstance(getattr(__import__("builtins"), n), type)
                      and issubclass(getattr(__import__("builtins"), n), BaseException)
                      and not issubclass(getattr(__import__("builtins"), n), Warning)}

    def ours(short, seen=()):
        if short == "Text4VisError":
            return True
        return any(ours(b, seen + (short,)) for bases in by_short.get(short, []) for b in bases if b not in seen)

    def is_exception(short, seen=()):
        if short in builtin_errors:
            return True
        return any(is_exception(b, seen + (short,)) for bases in by_short.get(short, []) for b in bases
                   if b not in seen)

    return sorted(full for full, bases in classes.items()
                  if any(is_exception(b) for b in bases) and not ours(full.rsplit(".", 1)[1]))


# ----------------------------------------------------------------------------- the rules

def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_library_never_imports_the_cli():
    bad = {m: sorted(t for t in targets if t == "text4vis.cli" or t.startswith("text4vis.cli."))
           for m, targets in import_graph().items()
           if not (m == "text4vis.cli" or m.startswith("text4vis.cli.") or m == "text4vis.__main__")}
    assert {m: t for m, t in bad.items() if t} == {}


def test_no_long_functions():
    long = [(n, f) for n, f in functions() if n > MAX_LINES and f.rsplit(".", 1)[0] not in LONG_FUNCTION_EXEMPT
            and not any(f.startswith(m + ".") for m in LONG_FUNCTION_EXEMPT)]
    assert long == []


def test_library_messages_name_no_flags():
    assert flag_messages(exempt=FLAG_EXEMPT) == []


def test_one_exception_base():
    assert foreign_exceptions() == []


def test_layers_library_below_products():
    assert layer_violations(import_graph()) == []


def test_module_size_and_count():
    assert {m: n for m, n in module_sizes().items() if n > MAX_MODULE_LINES} == {}
    assert len(top_level_modules()) <= MAX_TOP_MODULES, top_level_modules()


def test_test_files_have_unique_names():
    """pytest's default import mode imports each test file by its base name: two test_x.py in two
    folders of tests/ would clash."""
    names = [p.name for p in SRC.parent.parent.joinpath("tests").rglob("*.py") if "data" not in p.parts]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_rules_catch_what_they_should(tmp_path):
    """The checks themselves: a cycle through a function-level import, a long function, a flag in a
    raise, a foreign exception class and a library import of the cli are all found."""
    pkg = tmp_path / "text4vis"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli" / "__init__.py").write_text("COMMAND_MODULES = ['run']\n")
    (pkg / "cli" / "run.py").write_text("from ..a import f\n")
    (pkg / "errors.py").write_text("class Text4VisError(Exception):\n    pass\n")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    raise ValueError(f'--device {1}: bad')\n")
    (pkg / "b.py").write_text("from . import a\nclass Oops(ValueError):\n    pass\n"
                              "def g():\n    from .cli import main\n" + "    x = 1\n" * 130)
    graph = import_graph(pkg)
    assert cycles(graph) == [["text4vis.a", "text4vis.b", "text4vis.cli", "text4vis.cli.run"]]
    assert "text4vis.cli" in graph["text4vis.b"]
    assert functions(pkg)[0] == (132, "text4vis.b.g")
    assert flag_messages(pkg) == ["text4vis.a:3: --device : bad"]
    assert foreign_exceptions(pkg) == ["text4vis.b.Oops"]
    for product in ("index", "train", "demo"):
        (pkg / product).mkdir()
        (pkg / product / "__init__.py").write_text("")
    (pkg / "c.py").write_text("def f():\n    from .index import x\n")            # library -> product
    (pkg / "index" / "build.py").write_text("from ..c import f\nfrom ..train import t\n")  # undeclared
    (pkg / "demo" / "run.py").write_text("from ..train import t\nfrom ..a import f\n")    # declared, library
    graph = import_graph(pkg)
    assert layer_violations(graph, {"demo": {"train"}}) == ["text4vis.c -> text4vis.index",
                                                           "text4vis.index.build -> text4vis.train"]


def report(src: Path = SRC) -> str:
    lines = ["import cycles (function-level imports counted):"]
    lines += [f"  {', '.join(m.removeprefix('text4vis.') for m in c)}" for c in cycles(import_graph(src))] or ["  none"]
    lines.append("longest functions:")
    lines += [f"  {n:4d}  {f.removeprefix('text4vis.')}" for n, f in functions(src)[:8]]
    flags = flag_messages(src)
    exempt = [f for f in flags if f.split(":", 1)[0] in FLAG_EXEMPT]
    lines.append(f"library messages naming a --flag: {len(flags)}"
                 + (f" ({len(exempt)} in {', '.join(sorted(FLAG_EXEMPT))}, exempt until issue 18)" if exempt else ""))
    lines.append(f"exception classes outside Text4VisError: {', '.join(foreign_exceptions(src)) or 'none'}")
    sizes = module_sizes(src)
    lines.append(f"layer violations: {', '.join(layer_violations(import_graph(src))) or 'none'}")
    lines.append(f"top-level modules: {len(top_level_modules(src))}")
    lines.append(f"module sizes (lines; {len(sizes)} modules, {sum(sizes.values())} in all):")
    lines += [f"  {n:4d}  {m.removeprefix('text4vis.')}" for m, n in sorted(sizes.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC))
