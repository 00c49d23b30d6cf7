"""Loaded by every Python process the test suite starts (``kabar serve``, CLI commands): the test
session puts this directory on ``PYTHONPATH`` and names a file in ``KABAR_SQL_TRACE``; the process
appends the tenant-SQL violations it runs to that file (see ``tenant_sql.py``)."""

import os

if os.environ.get("KABAR_SQL_TRACE"):
    try:
        from tenant_sql import install_writing_to  # type: ignore[import-not-found]
    except ImportError:  # a Python without Kabar installed: nothing of Kabar's to trace
        pass
    else:
        install_writing_to(os.environ["KABAR_SQL_TRACE"])
