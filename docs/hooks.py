"""Build hooks for the documentation site (``mkdocs build``; ``make docs``).

The site reads what lives elsewhere in the repository instead of copying it: ``docs/tutorials`` is a
link to ``notebooks/``, whose notebooks mkdocs-jupyter renders with their stored outputs, and the
benchmark charts are served beside the speed page. The build fails when a public name of the
package has no docstring or no page, so that the reference cannot fall behind the code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import griffe
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("mkdocs.hooks.jaxrnn")

# Modules that hold machinery rather than API: documented by the pages that use them, not
# listed name by name.
INTERNAL_MODULES = {"cli", "demo"}


def public_names(package: griffe.Module, module_names) -> dict[str, griffe.Object]:
    """The public modules, and their public functions, classes and methods, by dotted path."""
    names: dict[str, griffe.Object] = {}
    for module_name in module_names:
        module = package.modules[module_name]
        names[module.path] = module
        exported = module.exports  # __all__, when the module declares one
        for name, member in module.members.items():
            if exported is not None and name not in exported:
                continue
            if name.startswith("_") or member.is_alias:
                continue
            if member.is_function or member.is_class:
                names[member.path] = member
            if member.is_class:
                for method_name, method in member.members.items():
                    if method.is_function and not method_name.startswith("_"):
                        names[method.path] = method
    return names


def on_files(files, config):
    """Serves the benchmark charts beside the speed page."""
    for chart in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        files.append(File.generated(config, f"speed/{chart.name}", abs_src_path=str(chart)))
    return files


def check_documented(package: griffe.Module, module_names, pages: list[str]) -> int:
    """Raises `PluginError` for a public name without a docstring or a module without a page.

    Returns the number of documented public names."""
    names = public_names(package, module_names)
    missing = sorted(path for path, obj in names.items() if not obj.docstring)
    if missing:
        raise PluginError(f"{len(missing)} public names have no docstring: {', '.join(missing)}")
    rendered = {
        line.split()[1] for page in pages for line in page.splitlines() if line.startswith("::: ")
    }
    unlisted = sorted({f"{package.path}.{name}" for name in module_names} - rendered)
    if unlisted:
        raise PluginError(f"public modules on no page (add '::: name' to one): {unlisted}")
    return len(names)


def on_pre_build(config):
    """Fails the build if a public name has no docstring or a public module has no page."""
    from jaxrnn import SUBMODULES

    package = griffe.load("jaxrnn", search_paths=[str(ROOT)], docstring_parser="google")
    pages = [page.read_text() for page in Path(config["docs_dir"]).rglob("*.md")]
    modules = [name for name in SUBMODULES if name not in INTERNAL_MODULES]
    count = check_documented(package, modules, pages)
    log.info("jaxrnn: %d public modules, functions, classes and methods documented", count)
