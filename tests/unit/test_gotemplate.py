"""builder.gotemplate against docker's documented examples and docker's own output.

The `DOCKER_28` cases were run through `docker version --format` / `docker image inspect
--format` / `docker images --format` of docker 28.5 (the reference on this machine) and their
output recorded here; the `DOCS` cases are the examples of docs.docker.com/config/formatting/
and of `docker inspect`'s reference page, over an inspect-shaped document.
"""
from __future__ import annotations

import pytest

from builder.errors import UsageError
from builder.gotemplate import TemplateError, TemplateParseError, format_rows, gostr, parse, render, tabwrite

CONTAINER = {
    "Name": "/Web_App",
    "Image": "nginx:1.25",
    "Args": ["-g", "daemon off;"],
    "LogPath": "/var/lib/docker/containers/abc/abc-json.log",
    "Mounts": [{"Type": "volume", "Source": "/v", "Destination": "/data", "RW": True}],
    "Config": {"Env": ["A=1", "B=2"], "Cmd": ["sh", "-c", "x"], "Labels": {"x": "y"}, "Entrypoint": None},
    "NetworkSettings": {
        "Networks": {"bridge": {"IPAddress": "172.17.0.2"}, "front": {"IPAddress": "10.0.0.5"}},
        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                  "8787/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18787"}]},
    },
    "Size": 3,
}

DOCS = [
    ('{{join .Args " , "}}', "-g , daemon off;"),
    ("{{json .Mounts}}", '[{"Type":"volume","Source":"/v","Destination":"/data","RW":true}]'),
    ("{{lower .Name}}", "/web_app"),
    ('{{split .Image ":"}}', "[nginx 1.25]"),
    ("{{title .Name}}", "/Web_App"),
    ("{{upper .Name}}", "/WEB_APP"),
    ("{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}", "172.17.0.2\n10.0.0.5\n"),
    ("{{.LogPath}}", "/var/lib/docker/containers/abc/abc-json.log"),
    ("{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}",
     " 80/tcp -> 8080  8787/tcp -> 18787 "),
    ('{{(index (index .NetworkSettings.Ports "8787/tcp") 0).HostPort}}', "18787"),
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "172.17.0.210.0.0.5"),
    ("{{json .Config}}", '{"Env":["A=1","B=2"],"Cmd":["sh","-c","x"],"Labels":{"x":"y"},"Entrypoint":null}'),
]

DOCKER_28 = [
    # docker image inspect --format over an image with ENV A=1 B=2, LABEL x=y, CMD ["sh","-c","x"]
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Size}}", "3"),
    ("{{.Config.Labels}}", "map[x:y]"),
    ("{{.Config.Labels.x}}", "y"),
    ('{{index .Config.Labels "x"}}', "y"),
    ("{{.Config.Cmd}}", "[sh -c x]"),
    ("{{range .Config.Env}}[{{.}}]{{end}}", "[A=1][B=2]"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}{{end}}", "x=y"),
    ("{{json .Config.Entrypoint}}", "null"),
    ("{{if .Config.Entrypoint}}y{{else}}n{{end}}", "n"),
    ("{{.Image}}{{$.Image}}", "nginx:1.25nginx:1.25"),
    # docker version --format
    ('{{title "hello world"}}', "Hello World"),
    ('{{title "hello-world foo_bar aB"}}', "Hello-World Foo_bar AB"),
    ('{{split "a:b:c" ":"}}', "[a b c]"),
    ('{{len "abc"}}', "3"),
    ('{{range $i, $e := split "a:b" ":"}}{{$i}}={{$e}} {{end}}', "0=a 1=b "),
    ('{{join (split "a:b" ":") ","}}', "a,b"),
    ('{{pad "x" 1 2}}|{{truncate "abcdef" 3}}', " x  |abc"),
    ('{{println "a" "b"}}|', "a b\n|"),
    ('{{.Image}} {{- " x " -}} y', "nginx:1.25 x y"),
    ('{{eq 1 1}} {{lt 1 2}} {{ne "a" "b"}}', "true true true"),
    ("{{with .Config}}{{.Cmd}}{{end}}", "[sh -c x]"),
    ('{{printf "%5s|%-4d|%v" "a" 3 .Image}}', "    a|3   |nginx:1.25"),
    ('{{printf "%v %s %d %5.2f %x %q %t %%" 1.5 "s" 42 3.14159 255 "q\\"" true}}',
     '1.5 s 42  3.14 ff "q\\"" true %'),
    ('{{slice "abcdef" 1 3}}', "bc"),
    ('{{ $x := "v" }}{{$x}}{{ $x = "w" }}{{$x}}', "vw"),
    ('{{range $i, $e := split "a:b:c" ":"}}{{if $i}},{{end}}{{$e}}{{end}}', "a,b,c"),
    ("{{/* c */}}ok", "ok"),
    ('{{and 1 0}} {{or 0 "x"}} {{not 0}}', "0 x true"),
    ('{{eq "a" "b" "a"}}', "true"),
    ('{{index "abc" 1}}', "98"),
    ('{{print "a" 1 2 "b"}}', "a1 2b"),
    ('{{range split "a:b" ":"}}{{.}}{{break}}{{end}}', "a"),
    ('{{.Image | upper | printf "%s!"}}', "NGINX:1.25!"),
    ('{{"a" | len}}', "1"),
    ("{{1e3}} {{0x10}} {{1.50}}", "1000 16 1.5"),
    ("{{'a'}}", "97"),
    ('{{printf "%v" 1.5e6}} {{printf "%v" 1234567.5}} {{printf "%v" 1.5e21}} {{printf "%v" 0.00001}} '
     '{{printf "%v" 123456789012.0}} {{printf "%g" 1.5e6}} {{1.5e6}} {{- /* x */ -}} |{{/* y */}}|',
     "1.5e+06 1.2345675e+06 1.5e+21 1e-05 1.23456789012e+11 1.5e+06 1.5e+06||"),
]


@pytest.mark.parametrize("tpl,want", DOCS + DOCKER_28, ids=[t for t, _ in DOCS + DOCKER_28])
def test_matches_docker(tpl, want):
    assert render(tpl, CONTAINER) == want


def test_missing_field_prints_no_value():
    # docker 20.10's inspect (and Go's default): `<no value>`; pybuild keeps that, exit 0
    assert render("{{.Nope}}|{{.Config.Nope}}|{{.Nope.Deeper}}", CONTAINER) == "<no value>|<no value>|<no value>"
    assert render("{{if .Nope}}y{{else}}n{{end}}", CONTAINER) == "n"


def test_if_else_if_chain_and_range_else():
    tpl = "{{if eq .Size 1}}one{{else if eq .Size 3}}three{{else}}other{{end}}"
    assert render(tpl, CONTAINER) == "three"
    assert render("{{range .Config.Entrypoint}}x{{else}}empty{{end}}", CONTAINER) == "empty"
    assert render("{{range $i, $e := .Args}}{{if eq $i 1}}{{continue}}{{end}}{{$e}}{{end}}", CONTAINER) == "-g"


@pytest.mark.parametrize("tpl,msg", [
    ("{{.Client.Version", "template parsing error: template: :1: unclosed action"),
    ("{{foo .Client}}", 'template parsing error: template: :1: function "foo" not defined'),
    ("{{if}}{{end}}", "template parsing error: template: :1: missing value for if"),
    ("{{end}}", "template parsing error: template: :1: unexpected {{end}}"),
    ("{{if 1}}x", "template parsing error: template: :1: unexpected EOF"),
    ("{{break}}", "outside {{range}}"),
])
def test_parse_errors_are_usage_errors_with_dockers_words(tpl, msg):
    with pytest.raises(TemplateParseError) as e:
        parse(tpl)
    assert isinstance(e.value, UsageError) and e.value.exit_code == 2
    assert msg in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("tpl,msg", [
    ('{{lt 1 "a"}}', "incompatible types for comparison: int and string"),
    ("{{index .Args 5}}", "index out of range: 5"),
    ("{{range .Image}}{{end}}", "range can't iterate over nginx:1.25"),
    ("{{.Image.Tag}}", "can't evaluate field Tag in type string"),
    ('{{.Image "x"}}', "can't give argument to non-function .Image"),
])
def test_execution_errors_name_the_action(tpl, msg):
    with pytest.raises(TemplateError) as e:
        render(tpl, CONTAINER)
    assert msg in str(e.value) and "executing at <" in str(e.value)
    assert e.value.exit_code == 1


def test_gostr_is_gos_percent_v():
    assert gostr({"b": [1, True], "a": None}) == "map[a:<nil> b:[1 true]]"
    assert gostr(2.0) == "2" and gostr(0.5) == "0.5" and gostr(-3e-7) == "-3e-07"


def test_tabwriter_like_gos_with_dockers_settings():
    # docker: tabwriter.NewWriter(out, 10, 1, 3, ' ', 0); the last cell of a line is not padded
    text = "REPOSITORY\tTAG\tIMAGE ID\n<none>\t<none>\ta71da7f7da81\ntpltest\t1\tcf8c071900c6\n"
    assert tabwrite(text) == ("REPOSITORY   TAG       IMAGE ID\n"
                              "<none>       <none>    a71da7f7da81\n"
                              "tpltest      1         cf8c071900c6\n")
    # a column block ends at a line without that column (Go's recursive column blocks)
    assert tabwrite("a\tb\tc\nxxxxxxxxxxxxxxx\nd\te\n") == "a         b\tc\nxxxxxxxxxxxxxxx\nd         e\n".replace(
        "b\tc", "b         c")


ROWS = [{"Repository": "<none>", "Tag": "<none>", "ID": "a71da7f7da81", "CreatedSince": "3 seconds ago",
         "Size": "1.98MB"},
        {"Repository": "tpltest", "Tag": "1", "ID": "cf8c071900c6", "CreatedSince": "16 seconds ago", "Size": "3B"}]
HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED", "Size": "SIZE"}
DEFAULT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"


def test_table_output_is_dockers_byte_for_byte():
    # `docker images` of docker 28.5 for these two images
    assert format_rows(None, ROWS, HEADERS, DEFAULT) == (
        "REPOSITORY   TAG       IMAGE ID       CREATED          SIZE\n"
        "<none>       <none>    a71da7f7da81   3 seconds ago    1.98MB\n"
        "tpltest      1         cf8c071900c6   16 seconds ago   3B\n")
    # `docker images --format 'table {{.Repository}}\t{{.Size}}\t{{.ID}}'` (a literal backslash-t)
    assert format_rows("table {{.Repository}}\\t{{.Size}}\\t{{.ID}}", ROWS, HEADERS, DEFAULT) == (
        "REPOSITORY   SIZE      IMAGE ID\n"
        "<none>       1.98MB    a71da7f7da81\n"
        "tpltest      3B        cf8c071900c6\n")
    # `docker images --format '{{.Repository}}\t{{.Tag}}|'`: no header, a real tab
    assert format_rows("{{.Repository}}\\t{{.Tag}}|", ROWS, HEADERS, DEFAULT) == "<none>\t<none>|\ntpltest\t1|\n"


def test_json_format_escapes_like_go_json_marshal():
    out = format_rows("json", ROWS[:1], HEADERS, DEFAULT)
    assert out == ('{"Repository":"\\u003cnone\\u003e","Tag":"\\u003cnone\\u003e","ID":"a71da7f7da81",'
                   '"CreatedSince":"3 seconds ago","Size":"1.98MB"}\n')
    assert format_rows("{{json .}}", ROWS[:1], HEADERS, DEFAULT) == out
    assert render('{{json "<a>&"}}', {}) == '"<a>&"'  # docker's json func itself does not escape


def test_printf_star_width_and_bad_numeric_args_are_template_errors():
    assert render('{{printf "%*d|%.*f" 4 2 1 2.25}}', {}) == "   2|2.2"
    for tpl in ('{{pad "x" "a" 1}}', '{{truncate "x" "a"}}', '{{printf "%*d" "w" 1}}'):
        with pytest.raises(TemplateError):
            render(tpl, {})
    with pytest.raises(TemplateError):
        render("{{" + "(" * 600 + "1" + ")" * 600 + "}}", {})
