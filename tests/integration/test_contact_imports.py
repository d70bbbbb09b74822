"""Contact imports (issue 13): a CSV file in, contacts out, every refused row with its line and reason."""
import csv
import io

import pytest
from sqlalchemy import text

from scfm.services import contact_imports as import_services

CSV = "text/csv"


def upload(api, body: str | bytes, query: str = "", content_type: str = CSV):
    data = body.encode() if isinstance(body, str) else body
    return api.post(f"/api/contact_imports{query}", data=data, content_type=content_type)


def parse_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def contacts_of(deps) -> dict[str, dict]:
    with deps.engine.connect() as conn:
        return {row.msisdn: row.metadata for row in conn.execute(text("SELECT msisdn, metadata FROM contacts"))}


def test_a_file_with_every_kind_of_bad_row_keeps_the_good_ones(api, deps, run_jobs):
    body = (
        "\ufeffphone;name;address.province;address.district\r\n"   # BOM, semicolons, nested metadata
        "+855 12 345 678;Alice;Kandal;Ta Khmau\r\n"                  # 2: good, spaces in the number
        "012345679;\"Bob; the \"\"second\"\"\";Kampot;\r\n"          # 3: national number, quoted cell
        "12345;Carol;Kandal;x\r\n"                                   # 4: invalid number
        "+85512345678;Alice again;Kandal;x\r\n"                      # 5: duplicate of line 2
        "+85512345680;" + "x" * 2000 + ";Kandal;x\r\n"               # 6: value too long
        "+85512345681;Dan\r\n"                                       # 7: malformed (2 cells)
        "\r\n"                                                       # 8: blank, skipped
        "+85512345682;\"Eve\nwith a line break\";Kep;y\r\n"          # 9-10: good
        "+85512345683;Fa\\y\t;Kep;y\r\n"                           # 11: good, a backslash and a tab
    )
    response = upload(api, body, "?default_country=KH")
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["status"] == "queued" and created["rows_total"] == 8
    assert response.headers["Location"] == f"/api/contact_imports/{created['id']}"
    run_jobs()
    finished = api.get(f"/api/contact_imports/{created['id']}").get_json()
    assert finished["status"] == "finished", finished
    assert (finished["rows_read"], finished["rows_created"], finished["rows_updated"], finished["rows_unchanged"],
            finished["rows_refused"], finished["progress"]) == (8, 4, 0, 0, 4, 1.0)
    contacts = contacts_of(deps)
    assert contacts["+85512345678"] == {"name": "Alice", "address": {"province": "Kandal", "district": "Ta Khmau"}}
    assert contacts["+85512345679"] == {"name": 'Bob; the "second"', "address": {"province": "Kampot"}}
    assert contacts["+85512345682"]["name"] == "Eve\nwith a line break"
    assert contacts["+85512345683"]["name"] == "Fa\\y"  # trimmed
    assert set(contacts) == {"+85512345678", "+85512345679", "+85512345682", "+85512345683"}
    errors = api.get(f"/api/contact_imports/{created['id']}/errors.csv")
    assert errors.status_code == 200 and errors.mimetype == "text/csv"
    rows = parse_csv(errors)
    assert rows[0] == ["line", "phone", "name", "address.province", "address.district", "reason"]
    assert [(row[0], row[-1].split(" (")[0]) for row in rows[1:]] == [
        ("4", "invalid number"), ("5", "duplicate number within the file"), ("6", "value too long"),
        ("7", "malformed line")]
    assert rows[1][1:5] == ["12345", "Carol", "Kandal", "x"]
    assert rows[2][-1] == "duplicate number within the file (first on line 2)"
    assert rows[4][1:-1] == ["+85512345681", "Dan"]


def test_a_multipart_upload_with_options_in_the_form_and_a_reimport(api, deps, run_jobs):
    first = "msisdn,gender,address.city\n+85512345678,f,PP\n+85512345679,m,\n"
    response = api.post("/api/contact_imports", data={"file": (io.BytesIO(first.encode()), "contacts.csv")},
                        content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["filename"] == "contacts.csv"
    run_jobs()
    again = "msisdn,gender,address.zip\n+85512345678,f,120\n+85512345679,m,\n+85512345680,f,\n"
    response = api.post("/api/contact_imports", data={"file": (io.BytesIO(again.encode()), "again.csv"),
                                                      "metadata_merge_mode": "deep_merge"},
                        content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    run_jobs()
    second = api.get(f"/api/contact_imports/{response.get_json()['id']}").get_json()
    assert (second["rows_created"], second["rows_updated"], second["rows_unchanged"], second["rows_refused"]) == (1, 1, 1, 0)
    assert second["metadata_merge_mode"] == "deep_merge"
    contacts = contacts_of(deps)
    assert len(contacts) == 3  # nothing duplicated
    assert contacts["+85512345678"] == {"gender": "f", "address": {"city": "PP", "zip": "120"}}
    # left alone when asked
    response = upload(api, "phone_number,gender\n+85512345678,m\n", "?update_existing=false")
    run_jobs()
    third = api.get(f"/api/contact_imports/{response.get_json()['id']}").get_json()
    assert (third["rows_created"], third["rows_updated"], third["rows_unchanged"]) == (0, 0, 1)
    assert contacts_of(deps)["+85512345678"]["gender"] == "f"
    listed = api.get("/api/contact_imports?q[status]=finished")
    assert listed.status_code == 200 and listed.headers["Total"] == "3"


def test_a_killed_worker_is_resumed_and_the_counts_are_the_same(api, other_api, deps, run_jobs):
    lines = [f"+8551234{5000 + n},p{n % 3}" for n in range(25)] + ["+85512345000,again", "bad,x"]
    body = "msisdn,province\n" + "\n".join(lines) + "\n"
    clean = upload(other_api, body).get_json()["id"]
    run_jobs()
    killed = upload(api, body).get_json()["id"]
    deps.queue.empty()

    class Killed(Exception):
        pass

    def kill_past_line_10(contact_import):
        if contact_import.last_line >= 11:
            raise Killed()

    with pytest.raises(Killed):
        import_services.run_import(deps.uow, killed, chunk_lines=5, after_chunk=kill_past_line_10)
    halfway = api.get(f"/api/contact_imports/{killed}").get_json()
    assert halfway["status"] == "running" and 0 < halfway["progress"] < 1
    assert halfway["rows_read"] == 14  # chunks of five lines: 2 to 5, 6 to 10, 11 to 15
    import_services.run_import(deps.uow, killed, chunk_lines=5)
    resumed = api.get(f"/api/contact_imports/{killed}").get_json()
    reference = other_api.get(f"/api/contact_imports/{clean}").get_json()
    counts = ("status", "rows_read", "rows_created", "rows_updated", "rows_unchanged", "rows_refused")
    assert [resumed[c] for c in counts] == [reference[c] for c in counts] == ["finished", 27, 25, 0, 0, 2]
    with deps.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM contacts WHERE account_id = "
                                 "(SELECT account_id FROM contact_imports WHERE id = :id)"), {"id": killed}).scalar() == 25
        assert conn.execute(text("SELECT count(*) FROM contact_import_errors WHERE contact_import_id = :id"),
                            {"id": killed}).scalar() == 2
        assert conn.execute(text("SELECT to_regclass(:t)"), {"t": f"contact_import_rows_{killed}"}).scalar() is None


def test_a_file_over_the_limit_is_413_and_writes_nothing(api, app, deps, monkeypatch):
    from dataclasses import replace

    monkeypatch.setattr(deps, "settings", replace(deps.settings, max_import_bytes=2000))
    body = "msisdn\n" + "".join(f"+8551234{5000 + n}\n" for n in range(200))
    assert upload(api, body).status_code == 413
    chunked = api.post("/api/contact_imports", input_stream=io.BytesIO(body.encode()), content_type=CSV,
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert chunked.status_code == 413
    multipart = api.post("/api/contact_imports", data={"file": (io.BytesIO(body.encode()), "big.csv")},
                         content_type="multipart/form-data")
    assert multipart.status_code == 413
    assert upload(api, "msisdn\n+85512345678\n").status_code == 201  # under the limit
    with deps.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM contact_imports")).scalar() == 1
    # other routes keep their own limit
    assert api.post("/api/contacts", data={"msisdn": "+85512345678", "metadata[x]": "y" * 2_000_000}).status_code == 413


def test_bad_options_and_headers_are_422_and_another_accounts_callout_404(api, other_api, deps):
    callout = other_api.post("/api/callouts").get_json()
    assert upload(api, "msisdn\n+85512345678\n", f"?callout_id={callout['id']}").status_code == 404
    assert upload(api, "name\nAlice\n").get_json() == {"errors": {"file": ["has no msisdn or phone or phone_number column"]}}
    assert upload(api, "tel,name\n1,2\n", "?msisdn_column=telephone").status_code == 422
    assert upload(api, "").status_code == 422
    assert upload(api, "msisdn,a,a.b\n").status_code == 422
    assert upload(api, "msisdn\n1\n", "?default_country=XX").get_json() == {
        "errors": {"default_country": ["is not included in the list"]}}
    assert upload(api, "msisdn\n1\n", "?metadata_merge_mode=sideways").status_code == 422
    assert upload(api, "msisdn\n1\n", content_type="application/json").status_code == 400
    with deps.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM contact_imports")).scalar() == 0


def test_imported_contacts_join_the_callout(api, deps, run_jobs):
    callout = api.post("/api/callouts").get_json()
    existing = api.post("/api/contacts", data={"msisdn": "+85512345678"}).get_json()
    response = upload(api, "msisdn,x\n+85512345678,1\n+85512345679,2\nnope,3\n", f"?callout_id={callout['id']}")
    assert response.status_code == 201 and response.get_json()["callout_id"] == callout["id"]
    run_jobs()
    participations = api.get(f"/api/callouts/{callout['id']}/callout_participations").get_json()
    assert sorted(p["msisdn"] for p in participations) == ["+85512345678", "+85512345679"]
    assert existing["id"] in {p["contact_id"] for p in participations}


def test_exports_stream_every_match_with_metadata_as_dotted_columns(api, other_api, deps, run_jobs):
    for msisdn, metadata in [("+85512345678", {"gender": "f", "address": {"province": "Kandal"}}),
                             ("+85512345679", {"gender": "m", "tags": ["a", "b"]}),
                             ("+85512345680", {"gender": "f", "age": 20})]:
        api.post("/api/contacts", json={"msisdn": msisdn, "metadata": metadata})
    other_api.post("/api/contacts", json={"msisdn": "+85512345681", "metadata": {"secret": "x"}})
    rows = parse_csv(api.get("/api/contacts.csv"))
    assert rows[0] == ["id", "msisdn", "created_at", "updated_at", "metadata.address.province", "metadata.age",
                       "metadata.gender", "metadata.tags"]
    assert [row[1] for row in rows[1:]] == ["+85512345678", "+85512345679", "+85512345680"]
    assert rows[1][4:] == ["Kandal", "", "f", ""] and rows[2][7] == '["a", "b"]' and rows[3][5] == "20"
    females = parse_csv(api.get("/api/contacts.csv?q[metadata][gender]=f"))
    assert [row[1] for row in females[1:]] == ["+85512345678", "+85512345680"]
    assert "metadata.tags" not in females[0]
    assert api.get("/api/contacts.csv?q[nope]=1").status_code == 422
    # a callout's participations and phone calls
    callout = api.post("/api/callouts", data={"call_flow_logic": "CallFlowLogic::HelloWorld"}).get_json()
    contact_ids = [c["id"] for c in api.get("/api/contacts").get_json()]
    for contact_id in contact_ids[:2]:
        api.post(f"/api/callouts/{callout['id']}/callout_participations", data={"contact_id": contact_id})
    participations = parse_csv(api.get(f"/api/callouts/{callout['id']}/callout_participations.csv"))
    assert len(participations) == 3 and participations[1][4] == "CallFlowLogic::HelloWorld"
    first = api.get(f"/api/callouts/{callout['id']}/callout_participations").get_json()[0]
    api.post(f"/api/callout_participations/{first['id']}/phone_calls", data={"remote_request_params[from]": "1234"})
    calls = parse_csv(api.get(f"/api/callouts/{callout['id']}/phone_calls.csv"))
    assert calls[0][:5] == ["id", "callout_participation_id", "contact_id", "msisdn", "status"]
    assert len(calls) == 2 and calls[1][4] == "created"
    contacts = parse_csv(api.get(f"/api/callouts/{callout['id']}/contacts.csv"))
    assert len(contacts) == 3
    assert other_api.get(f"/api/callouts/{callout['id']}/phone_calls.csv").status_code == 404


def test_the_sweeper_redelivers_an_import_whose_job_was_lost(api, deps, run_jobs):
    from scfm.services import sweeper

    created = upload(api, "msisdn\n+85512345678\n").get_json()
    deps.queue.empty()  # the job is lost
    assert sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings)["contact_imports"] == 0  # not yet stalled
    with deps.engine.begin() as conn:
        conn.execute(text("UPDATE contact_imports SET updated_at = now() - interval '1 hour'"))
    assert sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings)["contact_imports"] == 1
    run_jobs()
    assert api.get(f"/api/contact_imports/{created['id']}").get_json()["status"] == "finished"
    assert sweeper.sweep(deps.uow, deps.jobs, deps.settings.timings)["contact_imports"] == 0
    run_jobs()  # a second delivery of a finished import does nothing
    assert api.get(f"/api/contact_imports/{created['id']}").get_json()["rows_created"] == 1


def test_an_import_that_keeps_failing_ends_failed(api, deps, monkeypatch):
    created = upload(api, "msisdn\n+85512345678\n").get_json()
    deps.queue.empty()

    def broken(*_args, **_kwargs):
        raise RuntimeError("the database is on fire")

    from scfm.adapters.postgres.contact_imports import ContactImportStore

    monkeypatch.setattr(ContactImportStore, "write_chunk", broken)
    for _attempt in range(import_services.MAX_ATTEMPTS):
        with pytest.raises(RuntimeError):
            import_services.run_import(deps.uow, created["id"])
    failed = api.get(f"/api/contact_imports/{created['id']}").get_json()
    assert failed["status"] == "failed" and failed["error_message"] == "stopped after 5 attempts (RuntimeError)"
    assert import_services.run_import(deps.uow, created["id"]) == {"status": "failed"}


def test_the_cli_imports_and_exports_with_a_summary(api, deps, tmp_path, capsys):
    from scfm.entrypoints import cli

    account_id = api.get("/api/account").get_json()["id"]
    source = tmp_path / "contacts.csv"
    source.write_text("phone,gender\n012345678,f\n012345679,m\nnope,f\n")
    refused = tmp_path / "refused.csv"
    assert cli.main(["import", "contacts", str(source), "--account-id", str(account_id), "--default-country", "KH",
                     "--errors", str(refused)]) == 0
    summary = capsys.readouterr().err
    assert "3 rows read, 2 created, 0 updated, 0 unchanged, 1 refused" in summary
    assert refused.read_text().splitlines() == ["line,phone,gender,reason", "4,nope,f,invalid number"]
    target = tmp_path / "export.csv"
    assert cli.main(["export", "contacts", "--account-id", str(account_id), "--filter", "metadata[gender]=f",
                     "-o", str(target)]) == 0
    assert "1 contacts written" in capsys.readouterr().err
    assert target.read_text().splitlines()[1].split(",")[1] == "+85512345678"
    assert cli.main(["import", "contacts", str(source), "--account-id", str(account_id), "--callout-id", "999"]) == 2


def test_export_columns_cover_every_level_of_nesting(api):
    api.post("/api/contacts", json={"msisdn": "+85512345678", "metadata": {"address": "unknown", "a.b": "dotted"}})
    api.post("/api/contacts", json={"msisdn": "+85512345679",
                                    "metadata": {"address": {"geo": {"lat": 11.5}, "city": "PP"}, "a": {"b": "nested"}}})
    rows = parse_csv(api.get("/api/contacts.csv"))
    assert rows[0][4:] == ["metadata.a.b", "metadata.address", "metadata.address.city", "metadata.address.geo.lat"]
    assert rows[1][4:] == ["dotted", "unknown", "", ""]
    assert rows[2][4:] == ["nested", "", "PP", "11.5"]


def test_repeated_numbers_across_chunks_and_merges_over_the_bound_are_refused(api, deps):
    body = ("msisdn,note\n+85512345678,a\\b\t\n+85512345679,x\n855 12 345 678,again\n+85512345680,y\n"
            "+85512345678,third\n+85512345679,z\n")
    first = upload(api, body).get_json()["id"]
    deps.queue.empty()
    import_services.run_import(deps.uow, first, chunk_lines=2)
    done = api.get(f"/api/contact_imports/{first}").get_json()
    assert (done["rows_read"], done["rows_created"], done["rows_refused"]) == (6, 3, 3)
    rows = parse_csv(api.get(f"/api/contact_imports/{first}/errors.csv"))
    assert rows[1:] == [["4", "855 12 345 678", "again", "duplicate number within the file (first on line 2)"],
                        ["6", "+85512345678", "third", "duplicate number within the file (first on line 2)"],
                        ["7", "+85512345679", "z", "duplicate number within the file (first on line 3)"]]
    assert contacts_of(deps)["+85512345678"] == {"note": "a\\b"}
    with deps.engine.begin() as conn:
        conn.execute(text("UPDATE contacts SET metadata = jsonb_build_object('big', repeat('x', 65000)) "
                          "WHERE msisdn = '+85512345680'"))
    callout = api.post("/api/callouts").get_json()
    second = upload(api, "msisdn,note\n+85512345680," + "y" * 1000 + "\n+85512345679,w\n",
                    f"?callout_id={callout['id']}").get_json()["id"]
    deps.queue.empty()
    import_services.run_import(deps.uow, second)
    done = api.get(f"/api/contact_imports/{second}").get_json()
    assert (done["rows_read"], done["rows_updated"], done["rows_refused"]) == (2, 1, 1)
    rows = parse_csv(api.get(f"/api/contact_imports/{second}/errors.csv"))
    assert [row[0] for row in rows[1:]] == ["2"] and rows[1][-1].startswith("value too long (metadata merged")
    participations = api.get(f"/api/callouts/{callout['id']}/callout_participations").get_json()
    assert [p["msisdn"] for p in participations] == ["+85512345679"]


def test_chunks_of_lines_skip_lines_without_rows(api, deps):
    body = 'msisdn,note\n+85512345678,a\n\n\n\n,\n+85512345679,"two\n\n\nlines"\n+85512345680,b\n'
    found = upload(api, body).get_json()["id"]
    deps.queue.empty()
    chunks = []
    import_services.run_import(deps.uow, found, chunk_lines=2, after_chunk=lambda i: chunks.append(i.last_line))
    done = api.get(f"/api/contact_imports/{found}").get_json()
    assert (done["status"], done["rows_read"], done["rows_created"]) == ("finished", 3, 3)
    assert chunks == [2, 8, 12]  # lines 3 to 6 hold no row: the next chunk starts at line 7
    assert contacts_of(deps)["+85512345679"] == {"note": "two\n\n\nlines"}
