"""``python -m trio_sio serve module:app [--workers N] [--redis URL]`` (see ``_launcher``)."""

from __future__ import annotations

from ._launcher import main

raise SystemExit(main())
