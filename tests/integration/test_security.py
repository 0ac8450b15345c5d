"""Security: secrets stay in their blocks, input stays data, transports stay verified.

One pipeline run uses three test secrets, each in a block and each really used:
a CRM token (the stand-in demands it), an SMTP password (aiosmtpd demands the login) and a
BI token (the recording BI server gets it). Afterwards none of them may appear in the logs
(captured in-process at DEBUG, and as stored by Prefect), the artifacts, the run records,
the staging area, the outputs, the e-mail as received, or the persisted task results.
The same run carries a spreadsheet formula and an HTML script as customer names, which
must arrive inert. Then: exception texts when a server echoes a credential, SQL injection
in filter values (bound) and identifiers (rejected), TLS verification and plain-http rules.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import sqlite3
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr, ValidationError

from blocks.bi_api import BiApiCredentials
from blocks.crm_api import CrmApiCredentials
from demo.crm_server import CrmStandIn
from tasks.config import ConfigError
from tasks.config_file import load_config
from tasks.extract_api import ApiError
from tasks.filter_sql import compile_filter
from tasks.filtering import Condition, FilterSpec
from tasks.smtp_delivery import EmailDeliveryError
from tasks.staging import SUFFIX
from tests.fixtures.pipeline import (
    DEMO_CONFIG,
    config_dict,
    crm_block_source,
    csv_path,
    read_csv_rows,
    run_flow,
    shared_demo,
    unique_block_name,
    write_config,
)
from tests.fixtures.servers import capture_logs, echoing_server, https_server, recording_server
from tests.fixtures.smtp import save_smtp_block, smtp_server

pytestmark = [
    pytest.mark.integration,
    # The test SMTP server takes a login without TLS on purpose (loopback, no certificate).
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

CRM_TOKEN, SMTP_PASSWORD, BI_TOKEN = "tok-SECRET-123", "pw-SECRET-456", "bi-SECRET-789"
SMTP_USER = "reporter"
FORMULA = '=HYPERLINK("http://x","y")'
SCRIPT = '<script>alert("x")</script>'
RUN_ID = "secure-run"


def wire_forms(secret: str) -> list[str]:
    """The secret as text and as the encodings that carry it on the wire (AUTH PLAIN, basic)."""
    encoded = [f"\0{SMTP_USER}\0{secret}", f"{SMTP_USER}:{secret}"]
    return [secret] + [base64.b64encode(text.encode()).decode() for text in encoded]


SECRET_FORMS = [form for secret in (CRM_TOKEN, SMTP_PASSWORD, BI_TOKEN) for form in wire_forms(secret)]


def leaks(text: str | bytes, forms: list[str] = SECRET_FORMS) -> list[str]:
    blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return [form for form in forms if form in blob]


@dataclass
class SecureRun:
    workdir: Path
    config_path: Path
    config: dict[str, Any]
    logs: list[str]
    started: float
    crm_requests: list[Any]
    mail: list[Any]
    bi_requests: list[Any]


def _sources_with_hostile_names(folder: Path) -> Path:
    """A copy of the demo's sources in which the top July buyers carry a script and a
    formula as their names (so they appear in the dashboard's top-10 table)."""
    shutil.copytree(shared_demo(), folder)
    with sqlite3.connect(folder / "sales.db") as sales:
        top = [row[0] for row in sales.execute(
            "SELECT customer_id FROM transactions WHERE status = 'completed' AND order_date "
            "LIKE '2025-07-%' GROUP BY customer_id ORDER BY sum(amount) DESC LIMIT 2")]
    sales.close()
    with sqlite3.connect(folder / "customers.db") as customers:
        for customer_id, name in zip(top, (SCRIPT, FORMULA), strict=True):
            customers.execute("UPDATE customers SET name = ? WHERE customer_id = ?", (name, customer_id))
    customers.close()
    return folder


@pytest.fixture(scope="module")
def secure_run(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> SecureRun:
    workdir = tmp_path_factory.mktemp("secure")
    data = _sources_with_hostile_names(workdir / "sources")
    config = config_dict(workdir, data)
    config["demo_data"] = None
    started = time.time()
    with (CrmStandIn.from_db(data / "crm.db", token=CRM_TOKEN) as crm,
          smtp_server(username=SMTP_USER, password=SMTP_PASSWORD) as (smtp_port, mailbox),
          recording_server() as bi):
        crm_block, smtp_block, bi_block = (unique_block_name(p) for p in ("crm", "smtp", "bi"))
        CrmApiCredentials(base_url=crm.base_url, token=SecretStr(CRM_TOKEN)).save(crm_block)
        save_smtp_block(smtp_block, smtp_port, username=SMTP_USER, password=SMTP_PASSWORD)
        BiApiCredentials(base_url=bi.url, token=SecretStr(BI_TOKEN)).save(bi_block)
        config["sources"]["interactions"] = crm_block_source(crm_block)
        config["destinations"]["email"]["smtp_block"] = smtp_block
        config["destinations"]["dashboard"]["bi_api_block"] = bi_block
        path = write_config(workdir, config)
        with capture_logs() as logs:
            run_flow(path, run_id=RUN_ID)
    return SecureRun(workdir, path, config, list(logs), started, list(crm.requests),
                     list(mailbox.received), list(bi.requests))


# --- secrets ---------------------------------------------------------------------------------

def test_the_run_really_used_every_secret(secure_run: SecureRun) -> None:
    # Without this, 'no secret found' below could pass because a secret was never read.
    assert secure_run.crm_requests and all(r.status == 200 for r in secure_run.crm_requests)
    assert len(secure_run.mail) == 1  # the server only takes mail after a good login
    assert [r.headers.get("Authorization") for r in secure_run.bi_requests] == [f"Bearer {BI_TOKEN}"]
    assert len(secure_run.logs) > 100  # DEBUG capture did capture


def test_no_secret_in_the_logs_captured_in_process(secure_run: SecureRun) -> None:
    assert leaks("\n".join(secure_run.logs)) == []


def _read_all(read: Any) -> list[str]:
    """Every record a paginated client read returns, as JSON text (nothing left unread)."""
    found: list[str] = []
    while batch := read(limit=200, offset=len(found)):
        found += [item.model_dump_json() for item in batch]
    return found


def test_no_secret_in_what_prefect_stored(secure_run: SecureRun) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        stored = {
            "logs": _read_all(client.read_logs),
            "artifacts": _read_all(client.read_artifacts),
            "flow runs": _read_all(client.read_flow_runs),  # parameters, state messages
            "task runs": _read_all(client.read_task_runs),
        }
    assert all(stored.values())
    assert {kind: leaks("\n".join(texts)) for kind, texts in stored.items()} == {
        kind: [] for kind in stored}


def test_no_secret_in_staging_outputs_email_or_persisted_results(secure_run: SecureRun) -> None:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    files = [p for p in secure_run.workdir.rglob("*") if p.is_file() and p.name != "config.yaml"]
    results = Path(PREFECT_LOCAL_STORAGE_PATH.value())
    if results.exists():  # task results persisted since the run started
        files += [p for p in results.rglob("*") if p.is_file()
                  and p.stat().st_mtime >= secure_run.started - 1]
    assert any(p.suffix == SUFFIX for p in files) and any(p.suffix == ".csv" for p in files)
    assert {str(p): leaks(p.read_bytes()) for p in files if leaks(p.read_bytes())} == {}
    assert leaks(secure_run.mail[0].content) == []
    assert leaks(b"".join(r.body for r in secure_run.bi_requests)) == []


def test_a_rejected_smtp_login_does_not_echo_the_password(
    secure_run: SecureRun, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rerun only the delivery with a server that wants another password and, failing the
    # login, echoes back the one it got (as careless servers do).
    from flows.stages import deliver

    config = dict(secure_run.config)
    config["destinations"] = {**config["destinations"],
                              "dashboard": {**config["destinations"]["dashboard"], "bi_api_block": None}}
    with smtp_server(username=SMTP_USER, password="a-different-one") as (port, mailbox):
        block = unique_block_name("smtp-reject")
        save_smtp_block(block, port, username=SMTP_USER, password=SMTP_PASSWORD)
        config["destinations"]["email"] = {**config["destinations"]["email"], "smtp_block": block}
        path = write_config(secure_run.workdir, config, name="reject.yaml")
        with capture_logs() as logs, pytest.raises(EmailDeliveryError, match="rejected the login") as failure:
            deliver(str(path), "2025-07", RUN_ID)
    assert mailbox.received == []
    text = "".join(traceback.format_exception(failure.value))
    assert leaks(text) == [] and leaks(repr(failure.value)) == []
    assert leaks("\n".join(logs)) == []
    console = capsys.readouterr().err.splitlines()  # minus the test SMTP server's own lines
    assert leaks("\n".join(line for line in console if "mail.log" not in line)) == []


def test_a_crm_echoing_the_token_in_its_error_does_not_leak_it(
    tmp_path: Path, prefect_harness: None
) -> None:
    token = "tok-ECHO-999"  # its own secret: a leak here must not spoil the checks above
    config = config_dict(tmp_path, shared_demo())
    with echoing_server() as crm:
        block = unique_block_name("crm-echo")
        CrmApiCredentials(base_url=crm.url, token=SecretStr(token)).save(block)
        config["sources"]["interactions"] = crm_block_source(block)
        with capture_logs() as logs, pytest.raises(ApiError, match="401") as failure:
            run_flow(write_config(tmp_path, config))
    assert crm.requests[0].headers["Authorization"] == f"Bearer {token}"  # it was sent
    text = "".join(traceback.format_exception(failure.value))
    assert token not in text
    assert token not in "\n".join(logs)


# --- hostile input ---------------------------------------------------------------------------

def test_formulas_and_markup_in_names_arrive_inert(secure_run: SecureRun) -> None:
    out = secure_run.workdir / "out"
    names = {row["name"] for row in read_csv_rows(csv_path(out, "customer_performance"))}
    assert "'" + FORMULA in names and FORMULA not in names  # neutralised, not dropped
    assert SCRIPT in names  # text is text: only the HTML renderers must escape it
    page = (out / "dashboard_july2025.html").read_text(encoding="utf-8")
    assert html.escape(SCRIPT, quote=True) in page  # shown in the top-customers table...
    assert "<script>alert" not in page  # ...as text, never as markup
    assert "<script>alert" not in secure_run.mail[0].content.decode("utf-8", "replace")


INJECTIONS = [
    "C1' OR '1'='1",
    "x'); DROP TABLE people; --",
    "\\' OR 1=1 -- ",  # MySQL's backslash escape trick
    "%",  # a LIKE wildcard must match itself only
]


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def people_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A tiny table in each dialect: C1, C2 and O'Brien (a quote that is data)."""
    url = {"sqlite": lambda: f"sqlite:///{tmp_path / 'people.db'}",
           "postgresql": lambda: request.getfixturevalue("pg_url"),
           "mariadb": lambda: request.getfixturevalue("mysql_url")}[request.param]()
    engine = sa.create_engine(url)
    table = sa.Table("people", sa.MetaData(), sa.Column("customer_id", sa.String(64)))
    table.create(engine)
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"customer_id": v} for v in ("C1", "C2", "O'Brien")])
    yield engine, table
    engine.dispose()


def _select(engine: sa.Engine, table: sa.Table, operator: str, value: Any) -> list[str]:
    spec = FilterSpec(conditions=[Condition(field="customer_id", operator=operator, value=value)],
                      caseSensitive=True)
    where = compile_filter(spec, {"customer_id": table.c.customer_id}, engine.dialect.name)
    with engine.connect() as connection:
        return sorted(connection.execute(sa.select(table.c.customer_id).where(where)).scalars())


def test_injection_strings_in_filter_values_are_bound_as_data(people_engine: Any) -> None:
    engine, table = people_engine
    for text in INJECTIONS:
        assert _select(engine, table, "equals", text) == []  # matches no id, runs no SQL
        assert _select(engine, table, "contains", text) == []
    assert _select(engine, table, "in", ["C1", INJECTIONS[1]]) == ["C1"]
    assert _select(engine, table, "not_in", INJECTIONS) == ["C1", "C2", "O'Brien"]
    assert _select(engine, table, "equals", "O'Brien") == ["O'Brien"]
    with engine.connect() as connection:  # nothing was dropped or changed
        assert connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 3


@pytest.mark.parametrize(("where", "hostile"), [
    (("sources", "customers", "table"), "customers; DROP TABLE customers"),
    (("sources", "customers", "table"), 'customers" OR 1=1 --'),
    (("sources", "transactions", "column_map"), {"amount": "amount) FROM x; --"}),
    (("sources", "transactions", "column_map"), {"amount": "amount`, (SELECT 1)"}),
    (("sources", "customers", "query"), "SELECT * FROM customers; DROP TABLE customers"),
    (("destinations", "analytics", "schema"), 'public"; DROP SCHEMA public; --'),
])
def test_injection_in_identifiers_is_rejected_by_config_validation(
    tmp_path: Path, where: tuple[str, ...], hostile: Any
) -> None:
    import yaml

    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    section = raw
    for key in where[:-1]:
        section = section[key]
    if where[-1] == "query":
        section.pop("table")
    section[where[-1]] = hostile
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError) as failure:
        load_config(path)
    assert ".".join(where[:2]) in str(failure.value)  # names the field at fault


# --- transport -------------------------------------------------------------------------------

def test_crm_and_bi_clients_verify_tls_by_default(tmp_path: Path) -> None:
    with https_server(tmp_path / "tls") as server:
        blocks = [CrmApiCredentials(base_url=server.url, token=SecretStr("t")),
                  BiApiCredentials(base_url=server.url, token=SecretStr("t"))]
        for block in blocks:
            assert block.verify_tls is True
            with block.get_client() as client, pytest.raises(httpx.ConnectError,
                                                             match="CERTIFICATE_VERIFY_FAILED"):
                client.get("/interactions")
        # Only an explicit opt-out talks to a self-signed server (tests, never production).
        for block in blocks:
            block.verify_tls = False
            with block.get_client() as client:
                assert client.get("/interactions").status_code == 200
    assert len(server.requests) == 2  # the verified attempts never got as far as a request


@pytest.mark.parametrize("make", [
    lambda url, **kw: CrmApiCredentials(base_url=url, token=SecretStr("t"), **kw),
    lambda url, **kw: BiApiCredentials(base_url=url, token=SecretStr("t"), **kw),
], ids=["crm", "bi"])
def test_plain_http_is_refused_for_non_loopback_hosts_unless_allowed(make: Any) -> None:
    for remote in ("http://crm.example.com", "http://10.0.0.7:8080/api"):
        with pytest.raises(ValidationError, match="plain http"):
            make(remote)
        assert make(remote, allow_insecure_http=True).base_url == remote
    for loopback in ("http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"):
        assert make(loopback).base_url == loopback
    assert make("https://crm.example.com").base_url == "https://crm.example.com"


def test_secret_fields_are_masked_in_block_reprs() -> None:
    crm = CrmApiCredentials(base_url="https://crm.example.com", token=SecretStr(CRM_TOKEN))
    bi = BiApiCredentials(base_url="https://bi.example.com", token=SecretStr(BI_TOKEN))
    shown = repr(crm) + str(crm) + repr(bi) + str(bi) + json.dumps(crm.model_dump(mode="json"))
    assert leaks(shown) == []
