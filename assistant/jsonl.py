"""Moved to foundation.records; this alias keeps old imports working until every import names the new place."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("foundation.records")
