#!/usr/bin/env bash
# Write again the motion estimates the test suite reads (Testing/data/motion_estimates; see
# Testing/conftest.py and BreastDCESegLib/motion_store.py): needed after a change to motion.py, to
# SimpleITK's version or to the phantoms the tests segment, which otherwise register their phases
# again on every run (the suite still passes, slower). Arguments go to pytest (default: the whole suite).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f Testing/data/motion_estimates/*.json
mkdir -p Testing/data/motion_estimates
BREASTDCESEG_TEST_WRITE_MOTION_ESTIMATES=1 TEST_WORKERS="${TEST_WORKERS:-2}" bash scripts/test.sh "${@:-Testing}"
echo "$(ls Testing/data/motion_estimates | wc -l) motion estimates in Testing/data/motion_estimates"
