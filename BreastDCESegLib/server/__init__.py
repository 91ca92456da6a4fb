"""``breastdceseg serve``: an HTTP inference server for the panel and the batch (FastAPI + uvicorn).

The server runs the same worker as the panel (:mod:`BreastDCESegLib.worker_serve`, N warm
processes, models kept loaded), behind a bearer token, with a bounded queue, upload limits and
one directory per job. Modules: :mod:`.config` (settings and limits), :mod:`.uploads` (checks of
submitted files and zips), :mod:`.submit` (form -> job directory), :mod:`.jobs` (queue, workers,
time-to-live), :mod:`.app` (routes), :mod:`.main` (the command). The client side is
:mod:`BreastDCESegLib.remote`. Importing this package needs no FastAPI; the submodules do
(``pip install breastdceseg[server]``).

Usage::

    breastdceseg serve --host 127.0.0.1 --port 8765 --token-file token --device cuda --workers 2
"""

API_VERSION = 1
