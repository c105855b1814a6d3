"""These modules run only under Triton's interpreter, in their own process.

``tests/trtdet_centernet/test_dcn_triton.py`` starts ``pytest tests/trtdet_centernet/interpreted``
with ``TRITON_INTERPRET=1``: Triton reads it when a kernel is decorated (at import), so setting it
in the main session would turn every Triton kernel there into the interpreter's. Collected in
any other session, they are ignored.
"""

import os

if os.environ.get("TRITON_INTERPRET") != "1":
    collect_ignore_glob = ["test_*.py"]
