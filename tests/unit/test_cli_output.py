"""What the command prints: colour decisions, tags, tables, ages."""

import io

from meshkit.basis.instance import Instance
from meshkit.cli.output import (
    RESET,
    Console,
    Tagger,
    format_age,
    format_table,
    format_tag,
    tag_text,
    use_color,
)
from meshkit.cli.services_cmd import render_json, render_table, rows


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_unless_told():
    assert use_color(FakeTTY(), environ={}) is True
    assert use_color(io.StringIO(), environ={}) is False
    assert use_color(FakeTTY(), no_color=True, environ={}) is False
    assert use_color(FakeTTY(), environ={"NO_COLOR": "1"}) is False
    assert use_color(io.StringIO(), environ={"FORCE_COLOR": "1"}) is True
    assert use_color(io.StringIO(), environ={"MESHKIT_COLOR": "always"}) is True
    assert use_color(FakeTTY(), environ={"MESHKIT_COLOR": "never"}) is False
    # --no-color wins over forcing
    assert use_color(io.StringIO(), no_color=True, environ={"FORCE_COLOR": "1"}) is False


def test_tag_text_shortens_the_instance_number():
    assert tag_text("catalog", "catalog-2") == "catalog/2"
    assert tag_text("catalog", "host-123") == "catalog/host-123"


def test_plain_tag_is_padded_with_a_bar():
    assert format_tag("catalog/1", 12, "36", color=False) == "catalog/1    │ "


def test_coloured_tag_wraps_the_text_in_escapes():
    assert format_tag("sso/1", 5, "35", color=True) == "\x1b[35msso/1 │" + RESET + " "


def test_tagger_gives_stable_distinct_colours_and_one_width():
    tagger = Tagger(["meshkit", "catalog/1", "catalog/2"], color=True)
    one, two = tagger.prefix("catalog/1"), tagger.prefix("catalog/2")
    assert one != two and one == tagger.prefix("catalog/1")
    plain = Tagger(["meshkit", "catalog/1"], color=False)
    assert plain.line("meshkit", "hi") == "meshkit   │ hi"
    assert plain.line("catalog/1", "x") == "catalog/1 │ x"


def test_console_writes_whole_lines_behind_tags():
    out = io.StringIO()
    console = Console(out, color=False, tags=["catalog/1"])
    console.note("starting nats…")
    console.child("catalog/1", "listening")
    console.error("boom")
    assert out.getvalue().splitlines() == ["meshkit   │ starting nats…", "catalog/1 │ listening", "meshkit   │ boom"]


def test_console_survives_a_closed_pipe():
    class Broken(io.StringIO):
        def write(self, s):
            raise BrokenPipeError

    Console(Broken(), color=False).note("nobody reads this")


def test_age_format():
    assert [format_age(s) for s in (0, 42.9, 60, 192, 3600 + 5 * 60, 86400 * 4 + 3 * 3600)] == [
        "0s", "42s", "1m00s", "3m12s", "1h05m", "4d03h",
    ]
    assert format_age(-5) == "0s"


def test_table_aligns_text_left_and_numbers_right():
    table = format_table(
        [{"service": "catalog", "port": 8080}, {"service": "sso", "port": 80}],
        ["service", "port"],
    )
    assert table.splitlines() == [
        "SERVICE  PORT",
        "catalog  8080",
        "sso        80",
    ]


def test_services_rows_are_sorted_naturally_and_render_as_table_and_json():
    now = 1_000_000.0
    instances = [
        Instance("catalog", "catalog-10", "127.0.0.1", 4010, "1.0.0", started_at=now - 5),
        Instance("catalog", "catalog-2", "127.0.0.1", 4002, "1.0.0", started_at=now - 200),
        Instance("audit", "audit-1", "10.0.0.1", 5000, "0.3.0", started_at=now - 1, status="draining"),
    ]
    data = rows(instances, now=now)
    assert [r["instance_id"] for r in data] == ["audit-1", "catalog-2", "catalog-10"]
    assert data[1] == {
        "service": "catalog", "instance_id": "catalog-2", "address": "127.0.0.1", "port": 4002,
        "version": "1.0.0", "status": "up", "age": 200.0, "url": "http://127.0.0.1:4002",
    }
    lines = render_table(data).splitlines()
    assert lines[0].split() == ["SERVICE", "INSTANCE", "ADDRESS", "PORT", "VERSION", "STATUS", "AGE"]
    assert lines[2].split() == ["catalog", "catalog-2", "127.0.0.1", "4002", "1.0.0", "up", "3m20s"]
    assert lines[1].split()[5] == "draining"
    assert render_json(data).startswith('[{"service":"audit"')
    assert render_table([]) == "no services registered"
