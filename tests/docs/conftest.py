"""The docs' tests run their HTTP examples on the apps tests/http builds (`make_api`).

The API fixtures live in tests/http/conftest.py, which pytest applies to tests/http only;
this module loads it under its own name and offers its `make_api` here too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # the tests import the helpers beside them (`import examples`)


def _load_api_fixtures() -> object:
    path = HERE.parent / "http" / "conftest.py"
    spec = importlib.util.spec_from_file_location("charpente_docs_api_fixtures", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


_api = _load_api_fixtures()
make_api = _api.make_api  # type: ignore[attr-defined]
