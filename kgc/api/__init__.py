"""The JSON API under ``/api/v1/``: the enqueue contract of ``kgc/job_helpers.py`` over HTTP.

* ``urls``: the routes (included at ``/api/v1/``);
* ``views``: enqueueing, the queues' counts, pause and resume, failed jobs, retry and cleanup,
  with the seed's camelCase names; what every view shares (authentication, errors);
* ``preferences``: a member's notification email preferences (the web app's settings screen);
* ``parsing``: request bodies, as pure functions from bytes to the services' arguments;
* ``auth``: bearer tokens (``KGC_API_TOKENS``, several so that one can be rotated);
* ``services``: what the API needs beyond the enqueue contract (a job's queue and name);
* ``openapi``: the OpenAPI description served at ``/api/v1/openapi.json``, built from the
  same constants as the code.

What it guarantees: each request is one transaction, and a request that fails (method,
token, body, validation) changes nothing: bad input is a 400 naming each field that is wrong
where known, an unknown queue or tenant a 404.

What it may import: the queue layer (``kgc.queue``), the project (``kgc.job_helpers``,
``kgc.queues``) and the apps' services, selectors and models. Never the console
(``kgc.console``); the queue layer never imports the API (``tests/kgc/test_layers.py``).
"""
