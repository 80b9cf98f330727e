"""The JSON API under ``/api/v1/``: the enqueue contract of ``kgc/job_helpers.py`` over HTTP."""
