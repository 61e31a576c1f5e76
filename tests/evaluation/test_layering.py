"""Package layering: no module of `tfcontrast.evaluation` imports `tfcontrast.retrieval`
(retrieval calibrates with evaluation's verification curves; the reverse import made a
cycle). Both share `tfcontrast._search`."""

import ast
import pathlib

import tfcontrast.evaluation


def _imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_evaluation_does_not_import_retrieval():
    package = pathlib.Path(tfcontrast.evaluation.__file__).parent
    offenders = {
        f"{path.name}: {module}"
        for path in package.glob("*.py")
        for module in _imported_modules(path)
        if module.startswith("tfcontrast.retrieval")
    }
    assert not offenders
