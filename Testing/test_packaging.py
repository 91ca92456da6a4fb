"""Packaging of the Slicer extension, checked without Slicer.

* ``BreastDCESeg/CMakeLists.txt`` lists every file the extension ships (module, Slicer glue,
  ``BreastDCESegLib``, ``Resources``), and only files that exist;
* a CMake configure + build + install against a stand-in for Slicer's CMake macros puts
  ``BreastDCESegLib/`` and ``Resources/`` next to ``BreastDCESeg.py``, where the module, the
  model registry and the worker find them;
* the top-level ``CMakeLists.txt`` carries the extension metadata and the Extensions Index
  catalog entry ``BreastDCESeg.json`` agrees with it;
* the panel ``Resources/UI/BreastDCESeg.ui`` is well-formed, names every widget the module
  code uses, and its ``SlicerParameterName`` bindings name parameter-node fields of a type the
  widget can represent;
* the module icon is a sane PNG.

After adding, moving or removing a file, update the CMake lists from the files on disk with::

    .venv/bin/python Testing/test_packaging.py --write     # without --write: print them
"""

import ast
import filecmp
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_NAME = "BreastDCESeg"
MODULE_DIR = ROOT / MODULE_NAME
LIBRARY_DIR = ROOT / "BreastDCESegLib"
RESOURCES_DIR = ROOT / "Resources"
TOP_CMAKE = ROOT / "CMakeLists.txt"
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"
MODULE_FILE = MODULE_DIR / f"{MODULE_NAME}.py"
CATALOG = ROOT / f"{MODULE_NAME}.json"
UI_FILE = RESOURCES_DIR / "UI" / f"{MODULE_NAME}.ui"
ICON = RESOURCES_DIR / "Icons" / f"{MODULE_NAME}.png"
HOMEPAGE = "https://github.com/breastdceseg/SlicerBreastDCESeg"
SCRIPTED_MODULES_DIR = "lib/Slicer-5.8/qt-scripted-modules"  # Slicer_QTSCRIPTEDMODULES_LIB_DIR of the stand-in

# The lists of BreastDCESeg/CMakeLists.txt and the folder their paths are relative to.
LIST_BASES = {
    "MODULE_PYTHON_SCRIPTS": MODULE_DIR,
    "MODULE_LIBRARY_PYTHON_SCRIPTS": ROOT,
    "MODULE_PYTHON_RESOURCES": ROOT,
}
REGENERATE = "update the list with: .venv/bin/python Testing/test_packaging.py --write"


# ----------------------------------------------------------------------------- files on disk
def _git_ignored(paths):
    """The subset of ``paths`` (relative to ROOT) that git ignores; empty without git."""
    if not paths or shutil.which("git") is None or not (ROOT / ".git").exists():
        return set()
    result = subprocess.run(["git", "check-ignore", "--stdin"], cwd=ROOT, input="\n".join(paths),
                            capture_output=True, text=True)
    return set(result.stdout.split("\n")) - {""} if result.returncode in (0, 1) else set()


def _files_under(folder):
    """Files below ``folder`` (relative to ROOT, '/'-separated, sorted) that are source: no caches,
    compiled files, hidden or editor backup files, nothing git ignores."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(ROOT)
        if (not path.is_file() or "__pycache__" in relative.parts or path.suffix in (".pyc", ".pyo")
                or any(part.startswith(".") for part in relative.parts) or path.name.endswith("~")):
            continue
        found.append(relative.as_posix())
    ignored = _git_ignored(found)
    return [p for p in found if p not in ignored]


def expected_lists():
    """What each CMake list must hold, from the files on disk (sorted, relative to the list's base)."""
    module_files = [p for p in _files_under(MODULE_DIR) if p != _rel(MODULE_CMAKE)]
    library_files = _files_under(LIBRARY_DIR)
    return {
        "MODULE_PYTHON_SCRIPTS": sorted(Path(p).relative_to(MODULE_NAME).as_posix()
                                        for p in module_files if p.endswith(".py")),
        "MODULE_LIBRARY_PYTHON_SCRIPTS": [p for p in library_files if p.endswith(".py")],
        # data files of the package (none today) travel with the resources, relative to the root too
        "MODULE_PYTHON_RESOURCES": sorted(_files_under(RESOURCES_DIR)
                                          + [p for p in library_files if not p.endswith(".py")]),
    }


# ----------------------------------------------------------------------------- CMake parsing
def cmake_commands(text, where="CMakeLists.txt"):
    """``[(command name lower-cased, [arguments], line)]`` of a CMake file.

    Handles comments, quoted arguments (which may hold parentheses and newlines) and nested
    parentheses (kept as '(' and ')' arguments); raises ValueError on unbalanced input.
    """
    commands, i, n, line = [], 0, len(text), 1
    identifier = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

    def skip_comment(i):
        nonlocal line
        bracket = re.match(r"#\[(=*)\[", text[i:])
        if bracket:
            end = text.find("]" + bracket.group(1) + "]", i)
            if end < 0:
                raise ValueError(f"{where}:{line}: unterminated bracket comment")
            line += text.count("\n", i, end)
            return end + len(bracket.group(1)) + 2
        end = text.find("\n", i)
        return n if end < 0 else end

    def skip_blank(i):
        """Past whitespace (counting lines) and comments."""
        nonlocal line
        while i < n:
            if text[i] == "\n":
                line += 1
                i += 1
            elif text[i].isspace():
                i += 1
            elif text[i] == "#":
                i = skip_comment(i)
            else:
                break
        return i

    while True:
        i = skip_blank(i)
        if i >= n:
            break
        match = identifier.match(text, i)
        if not match:
            raise ValueError(f"{where}:{line}: expected a command, found {text[i:i + 20]!r}")
        name, start_line, i = match.group().lower(), line, match.end()
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "(":
            raise ValueError(f"{where}:{line}: '(' expected after {name}")
        i, depth, args = i + 1, 1, []
        while depth:
            i = skip_blank(i)
            if i >= n:
                raise ValueError(f"{where}:{start_line}: {name}( is never closed")
            c = text[i]
            if c == "(":
                depth += 1
                args.append("(")
                i += 1
            elif c == ")":
                depth -= 1
                if depth:
                    args.append(")")
                i += 1
            elif c == '"':
                value, i = [], i + 1
                while i < n and text[i] != '"':
                    if text[i] == "\\" and i + 1 < n:
                        i += 1
                        if text[i] == "\n":  # line continuation
                            line += 1
                            i += 1
                            continue
                    line += text[i] == "\n"
                    value.append(text[i])
                    i += 1
                if i >= n:
                    raise ValueError(f"{where}:{line}: unterminated quoted argument in {name}(")
                args.append("".join(value))
                i += 1
            else:
                token = re.match(r'(?:[^\s()#"\\]|\\.)+', text[i:])
                args.append(token.group())
                i += token.end()
        commands.append((name, args, start_line))
    return commands


def cmake_sets(commands):
    """``{variable: [values]}`` of the ``set()`` calls (the last one wins)."""
    return {args[0]: args[1:] for name, args, _ in commands if name == "set" and args}


def _rel(path):
    """``path`` relative to the repository root for messages (as is when it lies elsewhere)."""
    try:
        return Path(path).relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _read_cmake(path):
    assert path.is_file(), f"{_rel(path)} is missing"
    text = path.read_text(encoding="utf-8")
    try:
        return cmake_commands(text, _rel(path))
    except ValueError as exc:
        pytest.fail(f"cannot parse {exc}")


def _call(commands, name, where):
    calls = [args for command, args, _ in commands if command == name]
    assert calls, f"{where} has no {name}() call"
    return calls


def _keyword_values(args, keyword, keywords):
    """The values after ``keyword`` in a keyword-style argument list, up to the next keyword."""
    if keyword not in args:
        return None
    values = []
    for value in args[args.index(keyword) + 1:]:
        if value in keywords:
            break
        values.append(value)
    return values


def _extension_metadata():
    return {k: v for k, v in cmake_sets(_read_cmake(TOP_CMAKE)).items() if k.startswith("EXTENSION_")}


def _depends(values):
    return [d for value in values for d in re.split(r"[\s;]+", value) if d and d != "NA"]


# ----------------------------------------------------------------------------- top-level CMakeLists.txt
def test_top_level_cmake_is_a_slicer_extension():
    commands = _read_cmake(TOP_CMAKE)
    names = [name for name, _, _ in commands]
    assert names[0] == "cmake_minimum_required", "cmake_minimum_required() must come first"
    assert _call(commands, "project", "CMakeLists.txt")[0][0] == MODULE_NAME
    assert ["Slicer", "REQUIRED"] in _call(commands, "find_package", "CMakeLists.txt")
    includes = [args[0] for args in _call(commands, "include", "CMakeLists.txt")]
    for needed in ("${Slicer_USE_FILE}", "${Slicer_EXTENSION_GENERATE_CONFIG}", "${Slicer_EXTENSION_CPACK}"):
        assert needed in includes, f"CMakeLists.txt does not include({needed})"
    assert [MODULE_NAME] in _call(commands, "add_subdirectory", "CMakeLists.txt")

    def position(name, first):
        return next(k for k, (command, args, _) in enumerate(commands) if command == name and args[:1] == [first])

    order = [position("find_package", "Slicer"), position("include", "${Slicer_USE_FILE}"),
             position("add_subdirectory", MODULE_NAME), position("include", "${Slicer_EXTENSION_GENERATE_CONFIG}"),
             position("include", "${Slicer_EXTENSION_CPACK}")]
    assert order == sorted(order), ("expected find_package(Slicer), include(${Slicer_USE_FILE}), "
                                    "add_subdirectory(BreastDCESeg), the generate-config include, then the CPack one")
    assert position("project", MODULE_NAME) < order[0], "project() must come before find_package(Slicer)"


def test_extension_metadata():
    meta = _extension_metadata()
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        values = meta.get(f"EXTENSION_{key}")
        assert values and all(v.strip() for v in values), f"EXTENSION_{key} is not set (or empty) in CMakeLists.txt"
    assert meta["EXTENSION_HOMEPAGE"] == [HOMEPAGE]
    assert meta["EXTENSION_CATEGORY"] == ["Segmentation"]
    assert "PyTorch" in _depends(meta["EXTENSION_DEPENDS"]), "EXTENSION_DEPENDS must name the PyTorch extension"
    assert len(" ".join(meta["EXTENSION_DESCRIPTION"])) >= 40, "EXTENSION_DESCRIPTION is too short to be useful"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert HOMEPAGE in readme or HOMEPAGE in MODULE_FILE.read_text(encoding="utf-8"), (
        f"neither README.md nor {MODULE_FILE.name} links the homepage {HOMEPAGE}")

    urls = meta["EXTENSION_ICONURL"] + [u for v in meta["EXTENSION_SCREENSHOTURLS"] for u in v.split()]
    for url in urls:
        assert re.match(r"https://[^\s/]+/\S+$", url), f"not an https URL: {url!r}"
    # The icon URL serves a file of this repository: it must be the module icon tested below.
    raw = re.match(r"https://raw\.githubusercontent\.com/breastdceseg/SlicerBreastDCESeg/[^/]+/(.+)$",
                   meta["EXTENSION_ICONURL"][0])
    assert raw, f"EXTENSION_ICONURL should point into {HOMEPAGE} (raw.githubusercontent.com)"
    assert raw.group(1) == _rel(ICON), f"EXTENSION_ICONURL names {raw.group(1)}, not the icon"


# ----------------------------------------------------------------------------- BreastDCESeg/CMakeLists.txt
def _module_lists():
    sets = cmake_sets(_read_cmake(MODULE_CMAKE))
    missing = [name for name in LIST_BASES if name not in sets]
    assert not missing, f"BreastDCESeg/CMakeLists.txt does not set {', '.join(missing)}"
    return {name: sets[name] for name in LIST_BASES}


@pytest.mark.parametrize("list_name", list(LIST_BASES))
def test_module_cmake_lists_every_file_on_disk(list_name):
    listed, expected = _module_lists()[list_name], expected_lists()[list_name]
    base = LIST_BASES[list_name]
    relative_to = "BreastDCESeg/" if base == MODULE_DIR else "the repository root"
    where = f"BreastDCESeg/CMakeLists.txt {list_name} (paths relative to {relative_to})"
    not_literal = [p for p in listed if "$" in p or p.startswith(("/", "../")) or "/../" in p]
    assert not not_literal, f"{where}: write plain relative paths, not {not_literal}"
    not_listed = [p for p in expected if p not in listed]
    assert not not_listed, f"{where} does not list (so it is not packaged): {', '.join(not_listed)}; {REGENERATE}"
    stale = [p for p in listed if not (base / p).is_file()]
    assert not stale, f"{where} lists files that do not exist: {', '.join(stale)}; {REGENERATE}"
    extra = [p for p in listed if p not in expected]
    assert not extra, f"{where} lists files that are not part of the package: {', '.join(extra)}"
    duplicates = sorted({p for p in listed if listed.count(p) > 1})
    assert not duplicates, f"{where} lists twice: {', '.join(duplicates)}"
    assert listed == sorted(listed), f"{where} is not sorted; {REGENERATE}"


def test_module_folder_holds_only_packaged_files():
    """Non-Python files in BreastDCESeg/ would not be installed: resources belong in Resources/."""
    stray = [p for p in _files_under(MODULE_DIR) if not p.endswith(".py") and p != "BreastDCESeg/CMakeLists.txt"]
    assert not stray, f"not packaged (move them under Resources/ and list them): {', '.join(stray)}"


def test_module_cmake_wiring():
    commands = _read_cmake(MODULE_CMAKE)
    sets = cmake_sets(commands)
    assert sets.get("MODULE_NAME") == [MODULE_NAME]

    build = _call(commands, "slicermacrobuildscriptedmodule", "BreastDCESeg/CMakeLists.txt")
    assert len(build) == 1
    keys = ("NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS", "WITH_SUBDIR", "VERBOSE")
    assert _keyword_values(build[0], "NAME", keys) in (["${MODULE_NAME}"], [MODULE_NAME])
    assert _keyword_values(build[0], "SCRIPTS", keys) == ["${MODULE_PYTHON_SCRIPTS}"]
    assert "WITH_SUBDIR" not in build[0], "WITH_SUBDIR would move the module away from BreastDCESegLib/"
    assert f"{MODULE_NAME}.py" in sets["MODULE_PYTHON_SCRIPTS"]

    # BreastDCESegLib/ and Resources/ (above this folder) go through a second copy with the root as source.
    keys = ("TARGET_NAME", "SCRIPTS", "RESOURCES", "SOURCE_DIR", "DESTINATION_DIR", "INSTALL_DIR",
            "NO_INSTALL_SUBDIR", "GLOBAL_TARGET")
    copies = _call(commands, "ctkmacrocompilepythonscript", "BreastDCESeg/CMakeLists.txt")
    assert len(copies) == 1
    copy = copies[0]
    target = _keyword_values(copy, "TARGET_NAME", keys)
    assert target and target[0] not in (MODULE_NAME, "${MODULE_NAME}"), (
        "the second copy needs a TARGET_NAME of its own (copy targets are created once per name)")
    assert _keyword_values(copy, "SCRIPTS", keys) == ["${MODULE_LIBRARY_PYTHON_SCRIPTS}"]
    assert _keyword_values(copy, "RESOURCES", keys) == ["${MODULE_PYTHON_RESOURCES}"]
    assert _keyword_values(copy, "DESTINATION_DIR", keys) == ["${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}"]
    assert _keyword_values(copy, "INSTALL_DIR", keys) == ["${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}"]
    assert "NO_INSTALL_SUBDIR" in copy, "without NO_INSTALL_SUBDIR the files install one folder too deep"

    # The module's self-test is registered when testing is on.
    _call(commands, "slicer_add_python_unittest", "BreastDCESeg/CMakeLists.txt")
    names = [name for name, _, _ in commands]
    unittest = names.index("slicer_add_python_unittest")
    opening = max((k for k, (name, args, _) in enumerate(commands[:unittest]) if name == "if"), default=None)
    assert opening is not None and commands[opening][1] == ["BUILD_TESTING"], (
        "slicer_add_python_unittest() must sit inside if(BUILD_TESTING)")
    assert "endif" not in names[opening:unittest]
    script = _keyword_values(commands[unittest][1], "SCRIPT", ("SCRIPT", "SLICER_ARGS", "TESTNAME_PREFIX"))
    assert script in (["${MODULE_NAME}.py"], [f"{MODULE_NAME}.py"])
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    test_classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == f"{MODULE_NAME}Test"]
    for node in tree.body:  # or imported into the module from its Slicer glue (BreastDCESegGui.<name>)
        if isinstance(node, ast.ImportFrom) and f"{MODULE_NAME}Test" in [a.name for a in node.names]:
            glue = ast.parse((MODULE_DIR / (node.module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
            test_classes += [c for c in glue.body if isinstance(c, ast.ClassDef) and c.name == f"{MODULE_NAME}Test"]
    assert test_classes, f"{MODULE_FILE.name} has no {MODULE_NAME}Test class for slicer_add_python_unittest"
    assert any(isinstance(base, ast.Name) and base.id == "ScriptedLoadableModuleTest" for base in test_classes[0].bases)
    assert any(isinstance(f, ast.FunctionDef) and f.name == "runTest" for f in test_classes[0].body)


# ----------------------------------------------------------------------------- CMake run on a stand-in Slicer
# A stand-in for what Slicer's SlicerConfig.cmake gives an extension, with the path semantics of
# Slicer's slicerMacroBuildScriptedModule and CTK's ctkMacroCompilePythonScript: <SOURCE_DIR>/<path>
# is copied to <DESTINATION_DIR>/<path> (".py" appended to scripts without it), DESTINATION_DIR's
# content is installed into INSTALL_DIR (NO_INSTALL_SUBDIR), one copy target per TARGET_NAME.
STUB_CONFIG = """
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/GenerateConfig.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/CPack.cmake")
"""
STUB_USE_FILE = """
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "@SCRIPTED@")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")
set(BUILD_TESTING ON)
set(STUB_RECORD "${CMAKE_BINARY_DIR}/stub-record.txt")
file(WRITE "${STUB_RECORD}" "")

macro(ctkMacroCompilePythonScript)
  cmake_parse_arguments(MY "NO_INSTALL_SUBDIR;GLOBAL_TARGET"
    "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS;RESOURCES" ${ARGN})
  if(NOT DEFINED MY_SOURCE_DIR)
    set(MY_SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  get_filename_component(MY_SOURCE_DIR ${MY_SOURCE_DIR} REALPATH)
  get_filename_component(MY_DESTINATION_DIR ${MY_DESTINATION_DIR} REALPATH)
  set(_stub_copied)
  foreach(_stub_kind SCRIPTS RESOURCES)
    foreach(_stub_file IN LISTS MY_${_stub_kind})
      if(_stub_kind STREQUAL "SCRIPTS" AND NOT _stub_file MATCHES "py$")
        set(_stub_file "${_stub_file}.py")
      endif()
      if(IS_ABSOLUTE "${_stub_file}")
        message(FATAL_ERROR "stand-in: absolute path ${_stub_file}")
      endif()
      add_custom_command(OUTPUT "${MY_DESTINATION_DIR}/${_stub_file}"
        COMMAND ${CMAKE_COMMAND} -E copy "${MY_SOURCE_DIR}/${_stub_file}" "${MY_DESTINATION_DIR}/${_stub_file}"
        DEPENDS "${MY_SOURCE_DIR}/${_stub_file}")
      list(APPEND _stub_copied "${MY_DESTINATION_DIR}/${_stub_file}")
    endforeach()
  endforeach()
  if(NOT TARGET Copy${MY_TARGET_NAME}PythonFiles)
    add_custom_target(Copy${MY_TARGET_NAME}PythonFiles ALL DEPENDS ${_stub_copied})
  endif()
  if(MY_NO_INSTALL_SUBDIR)
    install(DIRECTORY "${MY_DESTINATION_DIR}/" DESTINATION "${MY_INSTALL_DIR}" USE_SOURCE_PERMISSIONS)
  else()
    install(DIRECTORY "${MY_DESTINATION_DIR}" DESTINATION "${MY_INSTALL_DIR}" USE_SOURCE_PERMISSIONS)
  endif()
endmacro()

macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to slicerMacroBuildScriptedModule(): ${MY_SLICER_UNPARSED_ARGUMENTS}")
  endif()
  foreach(_stub_value IN LISTS MY_SLICER_SCRIPTS MY_SLICER_RESOURCES)
    if(NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${_stub_value}"
       AND NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${_stub_value}.py")
      message(FATAL_ERROR "slicerMacroBuildScriptedModule given nonexistent file '${_stub_value}'")
    endif()
  endforeach()
  ctkMacroCompilePythonScript(
    TARGET_NAME ${MY_SLICER_NAME}
    SCRIPTS "${MY_SLICER_SCRIPTS}"
    RESOURCES "${MY_SLICER_RESOURCES}"
    DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}
    INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}
    NO_INSTALL_SUBDIR)
  file(APPEND "${STUB_RECORD}" "module=${MY_SLICER_NAME}\\n")
endmacro()

macro(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "TESTNAME_PREFIX;SCRIPT" "SLICER_ARGS" ${ARGN})
  file(APPEND "${STUB_RECORD}" "unittest=${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT}\\n")
endmacro()
"""
STUB_GENERATE_CONFIG = """
foreach(_stub_key HOMEPAGE CATEGORY CONTRIBUTORS DESCRIPTION ICONURL SCREENSHOTURLS DEPENDS)
  string(REPLACE "\\n" " " _stub_value "${EXTENSION_${_stub_key}}")
  file(APPEND "${STUB_RECORD}" "EXTENSION_${_stub_key}=${_stub_value}\\n")
endforeach()
"""
STUB_CPACK = """
file(APPEND "${STUB_RECORD}" "cpack=1\\n")
"""


def _run(command, cwd):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (f"{' '.join(map(str, command))} failed:\n"
                                    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def _tree(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def cmake_install(tmp_path_factory):
    """Configure, build and install the extension against the stand-in; (build dir, install prefix, record)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        pytest.skip("project() needs a C/C++ compiler, none is installed")
    work = tmp_path_factory.mktemp("cmake")
    stub, build, prefix = work / "SlicerStub", work / "build", work / "install"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(STUB_CONFIG)
    (stub / "UseSlicer.cmake").write_text(STUB_USE_FILE.replace("@SCRIPTED@", SCRIPTED_MODULES_DIR))
    (stub / "GenerateConfig.cmake").write_text(STUB_GENERATE_CONFIG)
    (stub / "CPack.cmake").write_text(STUB_CPACK)
    _run(["cmake", "-S", ROOT, "-B", build, f"-DSlicer_DIR={stub}", f"-DCMAKE_INSTALL_PREFIX={prefix}"], work)
    _run(["cmake", "--build", build], work)
    _run(["cmake", "--install", build], work)
    record = {}
    for entry in (build / "stub-record.txt").read_text().splitlines():
        key, _, value = entry.partition("=")
        record.setdefault(key, []).append(value)
    return build, prefix, record


def _expected_installed():
    """{path under qt-scripted-modules/: source file}."""
    lists = expected_lists()
    files = {p: MODULE_DIR / p for p in lists["MODULE_PYTHON_SCRIPTS"]}
    files.update({p: ROOT / p for p in lists["MODULE_LIBRARY_PYTHON_SCRIPTS"] + lists["MODULE_PYTHON_RESOURCES"]})
    return files


@pytest.mark.slow
def test_cmake_install_puts_library_and_resources_next_to_the_module(cmake_install):
    build, prefix, record = cmake_install
    expected = _expected_installed()
    installed_root = prefix / SCRIPTED_MODULES_DIR
    installed = _tree(prefix)
    outside = [p for p in installed if not p.startswith(SCRIPTED_MODULES_DIR + "/")]
    assert not outside, f"installed outside {SCRIPTED_MODULES_DIR}/: {outside}"
    installed = _tree(installed_root)
    missing = sorted(set(expected) - set(installed))
    assert not missing, f"not installed next to {MODULE_NAME}.py: {missing}"
    extra = sorted(set(installed) - set(expected))
    assert not extra, f"installed but not part of the package: {extra}"
    different = [p for p, source in expected.items() if not filecmp.cmp(source, installed_root / p, shallow=False)]
    assert not different, f"installed copies differ from the sources: {different}"

    # The build tree (what Slicer loads when run from the build) has the same layout, and no copy
    # escaped from qt-scripted-modules/ (a "../" path would land beside it).
    build_lib = build / Path(SCRIPTED_MODULES_DIR).parent
    escaped = [p for p in _tree(build_lib) if not p.startswith(Path(SCRIPTED_MODULES_DIR).name + "/")]
    assert not escaped, f"copied into {build_lib.relative_to(build)} outside qt-scripted-modules/: {escaped}"
    not_built = sorted(set(expected) - set(_tree(build / SCRIPTED_MODULES_DIR)))
    assert not not_built, f"not copied into the build tree's {SCRIPTED_MODULES_DIR}/: {not_built}"

    assert record.get("module") == [MODULE_NAME], f"scripted modules built: {record.get('module')}"
    assert record.get("unittest") == [str(MODULE_FILE)], "the module's self-test is not registered"
    assert record.get("cpack") == ["1"]
    meta = _extension_metadata()
    assert record["EXTENSION_CATEGORY"] == meta["EXTENSION_CATEGORY"] == ["Segmentation"]
    assert "PyTorch" in _depends(record["EXTENSION_DEPENDS"])
    assert record["EXTENSION_HOMEPAGE"] == [HOMEPAGE]


@pytest.mark.slow
def test_installed_module_finds_library_registry_and_weights(cmake_install, tmp_path):
    _, prefix, _ = cmake_install
    installed_root = (prefix / SCRIPTED_MODULES_DIR).resolve()
    installed_module = installed_root / f"{MODULE_NAME}.py"

    # The module file's own lookup, run on its installed copy (when it still has one).
    tree = ast.parse(installed_module.read_text(encoding="utf-8"))
    finder = next((node for node in tree.body
                   if isinstance(node, ast.FunctionDef) and node.name == "_libraryRoot"), None)
    if finder is not None:
        namespace = {"os": os, "__file__": str(installed_module)}
        exec(compile(ast.Module(body=[finder], type_ignores=[]), str(installed_module), "exec"), namespace)
        found_root = Path(namespace["_libraryRoot"]()).resolve()
        assert found_root == installed_root, f"the installed module's _libraryRoot() gives {found_root}"

    # The installed package, its model registry (validated against the installed schema) and the
    # checksummed demo weights resolve inside the installed folder, not in this checkout.
    probe = textwrap.dedent("""
        import json, BreastDCESegLib
        from BreastDCESegLib.models import registry
        loaded = registry.load_registry(include_user=False)
        weights = [str(registry.resolve_weights(s)) for s in loaded.list() if s.weights]
        print(json.dumps({"package": BreastDCESegLib.__file__, "registry": str(registry.default_registry_path()),
                          "weights": weights}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREASTDCESEG_") and k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(installed_root), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1",
               HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).resolve().is_relative_to(installed_root), found["package"]
    assert Path(found["registry"]).resolve() == installed_root / "BreastDCESegLib" / "models" / "shipped" / "models.json", (
        f"the installed registry reads {found['registry']}")
    models = json.loads((ROOT / "BreastDCESegLib" / "models" / "shipped" / "models.json").read_text(encoding="utf-8"))["models"]
    assert len(found["weights"]) == sum(1 for m in models if m.get("weights")) > 0, (
        f"weights resolved: {found['weights']}")
    for path in found["weights"]:
        assert Path(path).resolve().is_relative_to(installed_root), path


# ----------------------------------------------------------------------------- catalog entry
CATALOG_SCHEMA = {  # the fields of Slicer's slicer-extension-catalog-entry-schema v1.0.1
    "type": "object",
    "required": ["$schema", "category", "scm_url"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"enum": [1, 3, 5]},
    },
}


def test_catalog_entry():
    assert CATALOG.is_file(), f"{CATALOG.name} (the Extensions Index catalog entry) is missing"
    try:
        entry = json.loads(CATALOG.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        pytest.fail(f"{CATALOG.name} is not valid JSON: {exc}")
    jsonschema = pytest.importorskip("jsonschema")
    errors = [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}"
              for e in jsonschema.Draft7Validator(CATALOG_SCHEMA).iter_errors(entry)]
    assert not errors, f"{CATALOG.name} does not follow the catalog entry schema: {errors}"
    assert re.fullmatch(r"https://raw\.githubusercontent\.com/Slicer/Slicer/main/Schemas/"
                        r"slicer-extension-catalog-entry-schema-v\d+\.\d+\.\d+\.json#?", entry["$schema"]), (
        f"$schema {entry['$schema']} is not a Slicer catalog entry schema")

    meta = _extension_metadata()
    assert [entry["category"]] == meta["EXTENSION_CATEGORY"], "category differs from EXTENSION_CATEGORY"
    assert "PyTorch" in entry.get("build_dependencies", []), "build_dependencies must name the PyTorch extension"
    assert sorted(entry["build_dependencies"]) == sorted(_depends(meta["EXTENSION_DEPENDS"])), (
        "build_dependencies differ from EXTENSION_DEPENDS")
    assert re.sub(r"(\.git)?/?$", "", entry["scm_url"]) == meta["EXTENSION_HOMEPAGE"][0], (
        f"scm_url {entry['scm_url']} is not the repository of EXTENSION_HOMEPAGE")
    assert entry.get("scm_revision"), "scm_revision (branch, tag or hash to build) is not set"
    assert (ROOT / entry.get("build_subdirectory", ".") / "CMakeLists.txt").is_file(), (
        f"build_subdirectory {entry.get('build_subdirectory', '.')!r} has no CMakeLists.txt")


# ----------------------------------------------------------------------------- the panel (.ui)
def _ui_tree():
    try:
        return ET.parse(UI_FILE)
    except ET.ParseError as exc:
        pytest.fail(f"{_rel(UI_FILE)} is not well-formed XML: {exc}")


def _ui_widgets():
    """The named widgets of the .ui below its top-level widget (what childWidgetVariables sees)."""
    top = _ui_tree().getroot().find("widget")
    assert top is not None, "the .ui has no top-level widget"
    return [w for w in top.iter("widget") if w is not top]


def _string_property(widget, name):
    prop = next((p for p in widget.findall("property") if p.get("name") == name), None)
    return None if prop is None else (prop.findtext("string") or "")


def test_ui_is_well_formed_with_unique_names():
    root = _ui_tree().getroot()
    assert root.tag == "ui"
    top = root.find("widget")
    assert top is not None and top.get("name") == MODULE_NAME
    names = [e.get("name") for e in top.iter() if e.tag in ("widget", "layout", "action", "spacer")]
    assert all(names), "a .ui element has no name"
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"names used twice in the .ui: {duplicates}"


def _python_files():
    return [ROOT / p for p in _files_under(MODULE_DIR) + _files_under(LIBRARY_DIR) if p.endswith(".py")]


def _ui_uses():
    """``(name, file, line)`` for every ``ui.<name>`` / ``<obj>.ui.<name>`` in the module code."""
    uses = []
    for path in _python_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except SyntaxError as exc:
            pytest.fail(f"{_rel(path)} does not parse: {exc}")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            if ((isinstance(owner, ast.Name) and owner.id == "ui")
                    or (isinstance(owner, ast.Attribute) and owner.attr == "ui")):
                uses.append((node.attr, _rel(path), node.lineno))
    return uses


def test_ui_has_every_widget_the_code_uses():
    uses = _ui_uses()
    assert any(path == MODULE_FILE.relative_to(ROOT).as_posix() for _, path, _ in uses), "no ui.<name> found at all"
    top = _ui_tree().getroot().find("widget")
    known = {e.get("name") for e in top.iter() if e.tag in ("widget", "layout", "action") and e is not top}
    missing = sorted({f"{name} ({path}:{line})" for name, path, line in uses if name not in known})
    assert not missing, f"{_rel(UI_FILE)} has no widget named: {', '.join(missing)}"


def test_resources_the_module_opens_exist():
    """``resourcePath("<relative>")`` calls of the module name files that are shipped."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
             and node.func.id == "resourcePath" and node.args and isinstance(node.args[0], ast.Constant)]
    assert calls, "BreastDCESeg.py opens no resourcePath(...)"
    shipped = set(expected_lists()["MODULE_PYTHON_RESOURCES"])
    missing = [f"{c.args[0].value} (line {c.lineno})" for c in calls
               if f"Resources/{c.args[0].value}" not in shipped]
    assert not missing, f"the module opens resources that are not shipped: {missing}"


# Widget classes each field type can be bound to, as in Slicer's parameterNodeWrapper GUI
# connectors (slicer/parameterNodeWrapper/guiConnectors.py; the widget's class must match exactly,
# a QComboBox needs a Choice annotation for plain types). Extend when Slicer adds connectors.
BINDABLE = {
    "bool": {"QCheckBox", "QPushButton"},
    "int": {"QSpinBox", "QSlider"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget"},
    "str": {"QLineEdit", "QTextEdit"},
    "path": {"ctkPathLineEdit", "ctkDirectoryButton"},
    "node": {"qMRMLNodeComboBox", "qMRMLSubjectHierarchyTreeView"},
}
PATH_TYPES = {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"}


def _type_info(annotation):
    """(kind, node classes, has Choice) of a parameter-node field annotation."""
    choice = False
    if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value).split(".")[-1] == "Annotated":
        items = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        annotation = items[0]
        choice = any(isinstance(meta, ast.Call) and ast.unparse(meta.func).split(".")[-1] == "Choice"
                     for meta in items[1:])
    members = [annotation]
    if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value).split(".")[-1] in ("Optional", "Union"):
        members = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
    elif isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        members = [annotation.left, annotation.right]
    names = [ast.unparse(m).split(".")[-1] for m in members if ast.unparse(m) != "None"]
    if names and all(n.startswith("vtkMRML") for n in names):
        return "node", names, choice
    if len(names) == 1 and names[0] in ("bool", "int", "float", "str"):
        return names[0], [], choice
    if len(names) == 1 and names[0] in PATH_TYPES:
        return "path", [], choice
    return "other", [], choice  # an Enum (binds to a QComboBox), a parameter pack, a list...


def _parameter_node_fields():
    """{field: (kind, node classes, has Choice)} of the ``@parameterNodeWrapper`` class, read with ast."""
    classes = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("ParameterNode") and any(
                    ast.unparse(d).split(".")[-1].split("(")[0] == "parameterNodeWrapper" for d in node.decorator_list):
                classes.append((path, node))
    assert len(classes) == 1, f"expected one @parameterNodeWrapper ...ParameterNode class, found {len(classes)}"
    _, cls = classes[0]
    fields = {node.target.id: _type_info(node.annotation) for node in cls.body
              if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    assert fields, f"{cls.name} has no annotated fields"
    return fields


def test_ui_parameter_bindings_match_the_parameter_node():
    fields = _parameter_node_fields()
    problems, bound = [], {}
    for widget in _ui_widgets():
        parameter = _string_property(widget, "SlicerParameterName")
        if parameter is None:
            continue
        name, cls = widget.get("name"), widget.get("class")
        bound.setdefault(parameter, []).append(name)
        if parameter not in fields:
            problems.append(f"{name}: SlicerParameterName '{parameter}' is not a field of the parameter node")
            continue
        kind, node_classes, choice = fields[parameter]
        allowed = set(BINDABLE.get(kind, ()))
        if choice or kind == "other":
            allowed.add("QComboBox")
        if cls not in allowed:
            problems.append(f"{name}: a {cls} cannot bind field '{parameter}' ({kind}{', Choice' if choice else ''}); "
                            f"use one of {sorted(allowed) or 'no widget'}")
        if kind == "node" and cls == "qMRMLNodeComboBox":
            prop = next((p for p in widget.findall("property") if p.get("name") == "nodeTypes"), None)
            ui_types = [] if prop is None else [s.text for s in prop.iter("string")]
            if not set(node_classes) <= set(ui_types):
                problems.append(f"{name}: nodeTypes {ui_types} do not match field '{parameter}' ({node_classes})")
    problems += [f"'{p}' is bound by several widgets: {names}" for p, names in bound.items() if len(names) > 1]
    assert bound, "no widget of the .ui has a SlicerParameterName"
    assert not problems, f"{_rel(UI_FILE)}: " + "; ".join(problems)


# ----------------------------------------------------------------------------- icon
def test_icon_is_a_sane_png():
    data = ICON.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{_rel(ICON)} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, "the first PNG chunk is not IHDR"
    header = data[16:29]
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF, "IHDR checksum is wrong"
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert 16 <= width <= 256 and 16 <= height <= 256, f"icon is {width}x{height}; Slicer module icons are ~128x128"
    assert abs(width - height) <= width // 8, f"icon is {width}x{height}, not square"
    assert depth in (8, 16) and colour in (2, 6), (
        f"icon is not 8/16-bit RGB(A) (bit depth {depth}, colour type {colour})")
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", "the PNG does not end with an IEND chunk (truncated?)"


# ----------------------------------------------------------------------------- updating the lists
def rewrite_lists(text):
    """``text`` of BreastDCESeg/CMakeLists.txt with each list set to the files on disk."""
    for name, files in expected_lists().items():
        pattern = re.compile(r"(^[ \t]*set\(" + name + r"[ \t]*\n)(.*?)(^[ \t]*\)[ \t]*$)", re.M | re.S)
        if not pattern.search(text):
            raise SystemExit(f"BreastDCESeg/CMakeLists.txt has no 'set({name}' block with the ')' on its own line")
        text = pattern.sub(lambda m: m.group(1) + "".join(f"  {p}\n" for p in files) + m.group(3), text, count=1)
    return text


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Print, or write into BreastDCESeg/CMakeLists.txt, the file lists "
                                                 "of the extension as found on disk.")
    parser.add_argument("--write", action="store_true", help="rewrite the lists in BreastDCESeg/CMakeLists.txt")
    if parser.parse_args().write:
        old = MODULE_CMAKE.read_text(encoding="utf-8")
        new = rewrite_lists(old)
        MODULE_CMAKE.write_text(new, encoding="utf-8")
        print("BreastDCESeg/CMakeLists.txt " + ("updated" if new != old else "already up to date"))
    else:
        for list_name, paths in expected_lists().items():
            print(f"set({list_name}\n" + "".join(f"  {p}\n" for p in paths) + "  )\n")
