"""What an operator reads: error bodies that name the request id (the `twilio` library still parses them), and
`/metrics`, parsed by the Prometheus project's own Python parsers, in the Prometheus text format and in
OpenMetrics, with figures that follow the traffic the `twilio` library made."""
import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as prometheus_families
from twilio.base.exceptions import TwilioRestException

MESSAGES = "/v1/Conversations/{conversation}/Messages"


def test_errors_carry_the_request_id_and_still_parse(server, v1):
    with pytest.raises(TwilioRestException) as err:
        v1.conversations("CH" + "0" * 32).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)
    assert "/Conversations/CH" in err.value.msg
    raw = requests.get(
        f"{server.url}/v1/Conversations/CH{'0' * 32}",
        auth=(server.account_sid, server.auth_token),
        headers={"X-Request-Id": "conformance-1"},
    )
    assert raw.headers["X-Request-Id"] == "conformance-1"
    assert raw.json()["request_id"] == "conformance-1"


def scrape(server, accept=None):
    headers = {"Accept": accept} if accept else {}
    answer = requests.get(f"{server.url}/metrics", auth=(server.account_sid, server.auth_token), headers=headers)
    assert answer.status_code == 200
    return answer


def samples(families, family, **labels):
    return [
        s
        for f in families
        if f.name == family
        for s in f.samples
        if all(s.labels.get(k) == v for k, v in labels.items())
    ]


def test_metrics_parse_with_the_prometheus_parsers_and_count_traffic(server, v1):
    conversation = v1.conversations.create(friendly_name="metered")
    for n in range(3):
        v1.conversations(conversation.sid).messages.create(author="ops", body=f"m{n}")

    text = scrape(server)
    assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = list(prometheus_families(text.text))
    posted = samples(families, "palaver_http_requests", method="POST", route=MESSAGES, status="2xx")
    assert [s.value for s in posted] == [3.0]
    writes = samples(families, "palaver_db_operation_duration_seconds", operation="add_message", kind="write")
    assert any(s.name.endswith("_count") and s.value >= 3 for s in writes)
    kinds = {f.name: f.type for f in families}
    assert kinds["palaver_event_delivery_latency_seconds"] == "histogram"
    assert kinds["palaver_webhook_outbox"] == "gauge"

    # The strict OpenMetrics parser refuses anything out of place (it checks `# EOF`, names, suffixes, buckets).
    open_text = scrape(server, "application/openmetrics-text; version=1.0.0")
    assert open_text.headers["Content-Type"].startswith("application/openmetrics-text")
    families = list(openmetrics_families(open_text.text))
    posted = samples(families, "palaver_http_requests", method="POST", route=MESSAGES, status="2xx")
    assert [s.value for s in posted if s.name.endswith("_total")] == [3.0]
    assert samples(families, "palaver_events_committed", kind="message.added")
