"""Campaign Monitor (API v3.3): subscribers imported into the list the export names.

Up to 1,000 subscribers per `import.json` call, `ConsentToTrack` always set, and
`Resubscribe` false unless the export says so: people who unsubscribed stay
unsubscribed. A partial import is a 400 with Code 210 whose `FailureDetails` name each
refused address (invalid, suppressed, unsubscribed, bounced); the others were imported.
Credentials: an API key (HTTP Basic), or OAuth access + refresh tokens.
"""

from __future__ import annotations

import base64
import json as _json
from collections.abc import Mapping, Sequence
from typing import Any

from shared.config import DestinationSpec, Setting
from shared.http import RefreshingBearer, Response, StaticKey, TokenSource, json_body, vendor_message
from shared.profiles import consent_answers, normalise_email

from .base import JSON_STRING, Destination, Rows, Template, json_column, too_long

MAX_FIELD_CHARS = 250  # Campaign Monitor's limit for a custom field value
CONSENT_BY_ANSWER = {"yes": '"Yes"', "no": '"No"', "": '"Unchanged"', "?": '"Unchanged"'}
UNCLEAR_CONSENT = ("consent value neither yes nor no, read as no answer: ConsentToTrack Unchanged (what the person "
                   "told Campaign Monitor stays)")

SPEC = DestinationSpec(
    type="campaign_monitor",
    display_name="Campaign Monitor",
    identifier="email",
    secret_fields=("api_key",),
    settings=(
        Setting("api_base", "API base URL", default="https://api.createsend.com/api/v3.3",
                hosts=(r"api\.createsend\.com",)),
        Setting("token_url", "OAuth token endpoint (OAuth credentials only)",
                default="https://api.createsend.com/oauth/token", hosts=(r"api\.createsend\.com",)),
    ),
    target=(
        Setting("list_id", "Campaign Monitor list id the subscribers are imported into", required=True),
        Setting("resubscribe", "re-add people who unsubscribed, were deleted or bounced, where the consent column "
                "says yes (default: never)", kind=bool, default=False),
        # Not "Yes": consent to track is given per person, in a consent column.
        Setting("consent_to_track", "ConsentToTrack sent when no consent column is mapped", default="Unchanged",
                choices=("Unchanged", "No")),
    ),
    accepts_consent=True,
    need_consent=("resubscribe",),
    batch_size=1000,
    max_batch_size=1000,
    requests_per_second=10.0,  # not published for subscriber endpoints: an assumption, see README
    rate_window_s=1.0,  # assumed with it
)


class CampaignMonitor(Destination):
    SPEC = SPEC

    @classmethod
    def credentials_problem(cls, credentials: Mapping[str, Any]) -> str | None:
        if credentials.get("api_key") or (credentials.get("access_token") and credentials.get("refresh_token")):
            return None
        return "lacks the field api_key (or access_token and refresh_token for OAuth)"

    def items(self, keys: Sequence[str], rows: Rows) -> tuple[list[str | None], dict[int, str]]:
        """Subscribers as JSON text; a custom field over 250 characters refuses its row."""
        custom = {name: index for name, index in self.attribute_columns.items() if name != "name"}
        name = self.attribute_columns.get("name")
        names = ['""'] * len(rows) if name is None else rows.json(name)
        consent_column = self.columns.get("consent")
        if consent_column is None:
            consent = [JSON_STRING(self.target["consent_to_track"])] * len(rows)
        else:
            # Yes for an explicit yes, No for an explicit no; a blank cell says nothing, and a
            # value not understood ("ja") is no answer either: what the person told Campaign
            # Monitor before stays (Unchanged), where a No overwrote a Yes. The report counts those.
            answers = consent_answers(rows.values(consent_column))
            consent = [CONSENT_BY_ANSWER[answer] for answer in answers]
        refused = too_long({name: rows.trimmed(index) for name, index in custom.items()}, MAX_FIELD_CHARS,
                           f"custom field {{name}} longer than {MAX_FIELD_CHARS} characters")
        if consent_column is not None and (unclear := sum(answer == "?" and at not in refused
                                                          for at, answer in enumerate(answers))):
            self.notes[UNCLEAR_CONSENT] += unclear  # of the rows it prepares (not those refused here)
        fields = {name: rows.json(index) for name, index in custom.items()}
        return self.render([json_column(keys), names, consent], fields, refused)

    def template(self, custom: tuple[str, ...]) -> Template:
        template = Template().text('{"EmailAddress":').hole().text(',"Name":').hole().text(',"ConsentToTrack":').hole()
        if custom:
            template.text(',"CustomFields":[')
            for number, name in enumerate(custom):
                template.text(("," if number else "") + '{"Key":' + JSON_STRING(name) + ',"Value":').hole().text("}")
            template.text("]")
        return template.text("}")

    def send(self, keys: Sequence[str], items: bytes) -> dict[int, str]:
        if not self.target["resubscribe"]:
            return self._import(keys, items, resubscribe=False)
        # Resubscribe is a whole import's flag: only the people whose consent cell said yes
        # (ConsentToTrack "Yes") go in an import that re-adds; the others in one that does not.
        subscribers = _json.loads(items)
        refused = {}
        for resubscribe in (True, False):
            chosen = [at for at, subscriber in enumerate(subscribers)
                      if (subscriber.get("ConsentToTrack") == "Yes") is resubscribe]
            if chosen:
                part = _json.dumps([subscribers[at] for at in chosen], separators=(",", ":")).encode()
                outcome = self._import([keys[at] for at in chosen], part, resubscribe=resubscribe)
                refused.update({chosen[at]: reason for at, reason in outcome.items()})
        return refused

    def _import(self, keys: Sequence[str], items: bytes, *, resubscribe: bool) -> dict[int, str]:
        url = f"{self.settings['api_base']}/subscribers/{self.target['list_id']}/import.json"
        tail = (f',"Resubscribe":{"true" if resubscribe else "false"},"QueueSubscriptionBasedAutoresponders":false,'
                '"RestartSubscriptionBasedAutoresponders":false}').encode()
        response = self.http.request("POST", url, auth=self._auth(), data=b'{"Subscribers":' + items + tail,
                                     headers={"Content-Type": "application/json"}, accept=_partial_import)
        answer = json_body(response, "Campaign Monitor")
        result = answer.get("ResultData", answer) if response.status_code == 400 else answer
        position = {email: index for index, email in enumerate(keys)}
        refused = {}
        for failure in result.get("FailureDetails") or []:
            index = position.get(normalise_email(str(failure.get("EmailAddress", ""))))
            if index is not None:
                refused[index] = f"Campaign Monitor: {failure.get('Message', 'refused')} (code {failure.get('Code')})"
        return refused

    @staticmethod
    def describe(response: Response) -> str:
        return vendor_message(response, "Message", "error_description", "error")

    def _auth(self) -> TokenSource:
        if self.credentials.get("api_key"):
            basic = base64.b64encode(f"{self.credentials['api_key']}:x".encode()).decode()
            return StaticKey({"Authorization": f"Basic {basic}"})
        form = {"grant_type": "refresh_token", "refresh_token": self.credentials["refresh_token"]}
        # The grant goes to the API's own host (api.createsend.com), so it takes a slot of
        # the pacer like any request (Snapchat's goes to another service and does not).
        return RefreshingBearer.shared(self.connection.name, "Campaign Monitor", self.settings["token_url"], form,
                                       self.http)


def _partial_import(response: Response) -> bool:
    """Code 210 is a partial success: the other subscribers were imported."""
    if response.status_code != 400:
        return False
    try:
        return response.json().get("Code") == 210
    except (ValueError, AttributeError):
        return False

