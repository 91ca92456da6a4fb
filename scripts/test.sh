#!/usr/bin/env bash
# Set up the environment (with the slicer-core wheel and pytest) and run the test suite.
# Without arguments it then runs the scene tests a second time against the oldest slicer-core
# wheel we support (SLICER_CORE_OLDEST), installed with its vtk into .venv-slicer-<version>/, a
# folder put first on PYTHONPATH: the same interpreter and packages, only slicer and vtk replaced
# (never both Slicer versions mixed: the overlay holds its own slicer, slicer_core and vtkmodules).
set -euo pipefail
cd "$(dirname "$0")/.."
#
# The tests run in TEST_WORKERS processes (pytest-xdist, default 2; 0: one process), whole test
# files per process (their session fixtures, such as the shared held-out phantoms, stay in one).
# Each process then runs its numerical libraries (OpenMP, ITK) on one thread that sleeps while it
# waits: two processes with two threads each on two cores spin against each other. The whole
# suite on 2 idle cores: 646 s that way, 507 s with one thread each but OpenMP's spinning wait,
# 351 s with one passive thread each; 531 s in one process with two threads.
bash scripts/setup_env.sh requirements-test.txt
WORKERS="${TEST_WORKERS:-2}"
PARALLEL=()
if [ "$WORKERS" != "0" ]; then
  PARALLEL=(-n "$WORKERS" --dist loadfile --no-loadscope-reorder)  # longest files first: Testing/conftest.py
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" \
    ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="${ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS:-1}"
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest -q "${PARALLEL[@]}" "$@"
fi
.venv/bin/python -m pytest -q "${PARALLEL[@]}"

SLICER_CORE_OLDEST="${SLICER_CORE_OLDEST:-5.12.4.0}"  # Slicer 5.12 (stable); VTK pinned by that wheel
VTK_FOR_OLDEST="${VTK_FOR_OLDEST:-9.6.0}"
OVERLAY=".venv-slicer-${SLICER_CORE_OLDEST%.*.*}"
if [ ! -d "$OVERLAY/slicer_core-${SLICER_CORE_OLDEST}.dist-info" ]; then
  rm -rf "$OVERLAY"
  .venv/bin/pip install --quiet --no-deps --target "$OVERLAY" "slicer-core==${SLICER_CORE_OLDEST}" "vtk==${VTK_FOR_OLDEST}"
fi
SCENE_TESTS=(Testing/test_mrml.py Testing/test_scene_logic.py Testing/test_scene_state.py Testing/test_versions.py
             Testing/test_timing_logic.py Testing/test_maps.py Testing/test_dicom_seg_export.py
             Testing/test_dicom_database.py Testing/test_batch_scene.py Testing/test_terminology.py
             Testing/test_scene_uncertainty.py)
EXISTING=()
for f in "${SCENE_TESTS[@]}"; do [ -f "$f" ] && EXISTING+=("$f"); done
echo "Scene tests on slicer-core ${SLICER_CORE_OLDEST}:"
BREASTDCESEG_EXPECT_SLICER_CORE="$SLICER_CORE_OLDEST" PYTHONPATH="$PWD/$OVERLAY${PYTHONPATH:+:$PYTHONPATH}" \
  .venv/bin/python -m pytest -q -p no:cacheprovider "${PARALLEL[@]}" "${EXISTING[@]}"
