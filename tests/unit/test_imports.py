"""The TensorFlow line in the layout: no module of `mnist_core` outside `mnist_core.ml` imports
TensorFlow (seconds and hundreds of megabytes), TensorBoard or Streamlit, so the web process
lists data, queues trainings, predicts (ONNX Runtime), imports bundles and reads links without
them; the library's modules import each other without cycles; and the pages keep their cached
resources in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.fresh import report_of

ROOT = Path(__file__).resolve().parents[2]


def library_modules(root: Path = ROOT, package: str = "mnist_core") -> dict[str, Path]:
    """Every module of `package` under `root` by its dotted name (packages as `__init__`)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


# Outside `mnist_core.ml`, and not run on import (`__main__` runs the command line).
LIGHT = sorted(
    name
    for name in library_modules()
    if not name.startswith("mnist_core.ml") and name != "mnist_core.__main__"
)


@pytest.mark.parametrize("module", LIGHT)
def test_no_module_outside_ml_imports_tensorflow_or_streamlit(module: str) -> None:
    """Nor TensorBoard, nor Ray, which only `ray_jobs` imports (when `MNIST_RAY_ADDRESS` or
    `--ray` names a cluster)."""
    banned = ("tensorflow", "tensorboard", "keras", "streamlit")
    banned += () if module == "mnist_core.ray_jobs" else ("ray",)
    code = (
        f"import json, sys, {module}; "
        f"print(json.dumps(sorted(m for m in {banned!r} if m in sys.modules)))"
    )
    assert report_of(code, env={"MNIST_RAY_ADDRESS": ""}) == []  # "" is no cluster


def test_every_module_outside_ml_is_checked() -> None:
    assert len(LIGHT) >= 20 and "mnist_core.serving" in LIGHT and "mnist_core.cli" in LIGHT
    assert not any(name.startswith("mnist_core.ml") for name in LIGHT)


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` but those under `if TYPE_CHECKING:`, which never run."""
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """The groups of `modules` that import each other in a circle, by the `import`
    statements that run, anywhere in the file (deferred ones inside functions too; those for
    type checkers only, under `if TYPE_CHECKING:`, left out)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    graph = {name: {t for t in targets if t != "mnist_core"} for name, targets in graph.items()}
    cycles, finished = [], set()

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        return seen

    for name in sorted(graph):
        if name in finished:
            continue
        group = sorted(other for other in reachable(name) if name in reachable(other))
        finished.update(group)
        if group:
            cycles.append(group)
    return cycles


def cache_decorators(path: Path) -> list[str]:
    """The caching decorators in the module at `path` (`st.cache_resource`, `lru_cache`...),
    as written."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                text = ast.unparse(decorator.func if isinstance(decorator, ast.Call) else decorator)
                if "cache" in text:
                    names.append(text)
    return names


def test_the_pages_cache_resources_in_one_place() -> None:
    """One mechanism (`st.cache_resource`) in one module (`pages/parts/app_state.py`), each
    cache beside its loader; nothing else in the app caches by itself."""
    app = [ROOT / "dashboard.py", *sorted((ROOT / "pages").rglob("*.py"))]
    found = {path.relative_to(ROOT).as_posix(): cache_decorators(path) for path in app}

    assert {path for path, names in found.items() if names} == {"pages/parts/app_state.py"}
    assert set(found["pages/parts/app_state.py"]) == {"st.cache_resource"}
    assert len(found["pages/parts/app_state.py"]) >= 6


def test_the_library_has_no_import_cycles() -> None:
    assert import_cycles(library_modules()) == []


def test_an_import_cycle_is_found(tmp_path: Path) -> None:
    package = tmp_path / "mnist_core"
    (package / "ml").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from mnist_core.b import x\n")
    (package / "b.py").write_text("def f():\n    from mnist_core.ml import c\n")
    (package / "ml" / "__init__.py").write_text("")
    (package / "ml" / "c.py").write_text("import mnist_core.a\n")
    (package / "d.py").write_text("from mnist_core import a\n")
    (package / "e.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mnist_core.f import g\n"
    )
    (package / "f.py").write_text("from mnist_core import e\n")  # e needs f for types only

    assert import_cycles(library_modules(tmp_path)) == [
        ["mnist_core.a", "mnist_core.b", "mnist_core.ml.c"]
    ]


def test_the_job_service_is_local_without_a_cluster_and_ray_with_one(tmp_path: Path) -> None:
    from mnist_core.backends import job_service
    from mnist_core.job_service import JobError, LocalJobs

    assert isinstance(job_service(tmp_path), LocalJobs)
    for address in ("ray://127.0.0.2:9", "127.0.0.2:9", "no-port"):  # nothing listens there
        with pytest.raises(JobError, match=r"does not answer .* Check MNIST_RAY_ADDRESS"):
            job_service(tmp_path, ray=address)
