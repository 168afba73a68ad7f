"""boto3 sessions that share botocore's loaded service models.

A new ``boto3.session.Session()`` gets a new botocore data loader, which reads and parses botocore's
JSON models again for its first client (``endpoints.json``, the service's ``service-2.json`` and
rule set): ~0.15-0.2 s of CPU and ~10^4 objects in reference cycles per session (measured,
botocore 1.44: 0.20 s for a DynamoDB and a Streams client from a fresh session, 0.02 s with the
loader shared). :func:`new_session` makes a session exactly as boto3 does -- credentials, region,
profile, config files and endpoint settings read now, from the environment as it is -- with only
the loader (the parsed models, which botocore treats as read-only) shared by every session made
here in this process. Used by the ``replicator`` CLI's clients (``cli/endpoints.py``) and the
harness's (``harness.backends.moto_source.make_client``).
"""

from __future__ import annotations

import threading
from typing import Any

#: the shared data loader per ``data_path`` (``AWS_DATA_PATH``: a session made with another one
#: gets its own loader, as it would without sharing)
_loaders: dict[Any, Any] = {}
_lock = threading.Lock()


def new_session(botocore_session: Any = None, **options: Any) -> Any:
    """A ``boto3.session.Session(botocore_session=..., **options)`` (``options``: region_name,
    aws_access_key_id, ... as boto3 takes them) whose botocore data loader is shared. Raises
    ImportError without boto3."""
    import boto3.session
    import botocore.session

    core = botocore_session if botocore_session is not None else botocore.session.Session()
    data_path = core.get_config_variable("data_path")
    key = tuple(data_path) if isinstance(data_path, list) else data_path
    with _lock:
        loader = _loaders.get(key)
        if loader is None:
            loader = _loaders[key] = core.get_component("data_loader")
        else:
            core.register_component("data_loader", loader)
        session = boto3.session.Session(botocore_session=core, **options)
        # boto3 appends its own data folder to the loader's search paths for every session
        paths = loader.search_paths
        paths[:] = list(dict.fromkeys(paths))
    return session
