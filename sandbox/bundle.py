"""The four vendor stand-ins started together, with fresh credentials and matching connections.

Used by the demo, the integration tests, the benchmarks and `python cli.py sandbox`: it
starts each stand-in on a free loopback port, invents credentials for this session only,
and produces the connection documents and the local secrets file that point at them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .braze import BrazeStandIn
from .campaign_monitor import CampaignMonitorStandIn
from .omnisend import OmnisendStandIn
from .server import Faults, StandIn
from .snapchat import SnapchatStandIn

__all__ = ["CONSENT", "Sandbox"]

CONSENT = {"accepted_by": "sandbox@localhost", "accepted_at": "2026-01-01T00:00:00Z"}
AUDIENCE_ID = "sandbox-audience"
LIST_ID = "sandbox-list"


class Sandbox:
    """Snapchat, Braze, Omnisend and Campaign Monitor stand-ins; a context manager."""

    def __init__(self, *, rate_limited: bool = True, faults: Faults | None = None,
                 refuse_emails: Iterable[str] = (), suppressed: Iterable[str] = (), latency_s: float = 0.0,
                 tls: bool = False, echo_credentials: bool = False):
        token = secrets.token_urlsafe
        self.credentials: dict[str, dict[str, str]] = {
            "sandbox-snapchat": {"client_id": token(8), "client_secret": token(16), "refresh_token": token(16)},
            "sandbox-braze": {"api_key": token(24)},
            "sandbox-omnisend": {"api_key": token(24)},
            "sandbox-campaign-monitor": {"api_key": token(24)},
        }
        refuse = list(refuse_emails)
        options = {"rate_limited": rate_limited, "faults": faults, "latency_s": latency_s, "tls": tls,
                   "echo_credentials": echo_credentials}
        self.snapchat = SnapchatStandIn(**self.credentials["sandbox-snapchat"], audience_ids=[AUDIENCE_ID], **options)
        self.braze = BrazeStandIn(api_key=self.credentials["sandbox-braze"]["api_key"], refuse_emails=refuse, **options)
        self.omnisend = OmnisendStandIn(api_key=self.credentials["sandbox-omnisend"]["api_key"], refuse_emails=refuse,
                                        **options)
        self.campaign_monitor = CampaignMonitorStandIn(
            api_key=self.credentials["sandbox-campaign-monitor"]["api_key"], list_ids=[LIST_ID],
            suppressed=suppressed, **options)

    @property
    def stand_ins(self) -> dict[str, StandIn]:
        return {"snapchat": self.snapchat, "braze": self.braze, "omnisend": self.omnisend,
                "campaign_monitor": self.campaign_monitor}

    def start(self) -> Sandbox:
        for stand_in in self.stand_ins.values():
            stand_in.start()
        return self

    def stop(self) -> None:
        for stand_in in self.stand_ins.values():
            stand_in.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def connections(self) -> list[dict[str, Any]]:
        """Connection documents pointing at the stand-ins (they need ALLOW_LOCAL_ENDPOINTS=true)."""
        snap, cm = self.snapchat.url, self.campaign_monitor.url

        def connection(name: str, type_: str, display: str, settings: dict[str, Any]) -> dict[str, Any]:
            return {"name": name, "type": type_, "display_name": display, "usable_by": ["admin", "contributor"],
                    "secret_name": name, "consent": CONSENT, "settings": settings}

        return [
            connection("sandbox-snapchat", "snapchat", "Snapchat (sandbox)",
                       {"api_base": f"{snap}/v1", "token_url": f"{snap}/login/oauth2/access_token"}),
            connection("sandbox-braze", "braze", "Braze (sandbox)", {"rest_endpoint": self.braze.url}),
            connection("sandbox-omnisend", "omnisend", "Omnisend (sandbox)", {"api_base": f"{self.omnisend.url}/api"}),
            connection("sandbox-campaign-monitor", "campaign_monitor", "Campaign Monitor (sandbox)",
                       {"api_base": f"{cm}/api/v3.3", "token_url": f"{cm}/oauth/token"}),
        ]

    def write_ca_bundle(self, path: str) -> None:
        """The stand-ins' CA certificates in one file, for REQUESTS_CA_BUNDLE (when serving TLS)."""
        with open(path, "w", encoding="utf-8") as bundle:
            for stand_in in self.stand_ins.values():
                with open(stand_in.ca_path, encoding="utf-8") as certificate:
                    bundle.write(certificate.read())

    def write_secrets(self, path: str) -> None:
        """The local secrets file (LOCAL_SECRETS_FILE) holding this session's credentials."""
        with open(path, "w", encoding="utf-8") as file:
            json.dump(self.credentials, file, indent=2)

    def write_config(self, folder: str | Path, tls: bool = False) -> None:
        """What a local setup needs to use these stand-ins, in `folder`: `local.secrets.json`,
        `connections.json` (their connections), `ca.pem` (with `tls`), then `stand-ins.json`
        (their URLs), whose presence tells a waiting process that all is written."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.write_secrets(str(folder / "local.secrets.json"))
        if tls:
            self.write_ca_bundle(str(folder / "ca.pem"))
        (folder / "connections.json").write_text(
            json.dumps({"connections": self.connections(), "exports": []}, indent=2), encoding="utf-8")
        # Written last, and whole (renamed into place): written in place, it was seen empty.
        ready = folder / "stand-ins.json.tmp"
        ready.write_text(json.dumps({name: s.url for name, s in self.stand_ins.items()}), encoding="utf-8")
        ready.replace(folder / "stand-ins.json")
