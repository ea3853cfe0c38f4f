"""Dockerfile lint checks with BuildKit's rule names (docs.docker.com/go/dockerfile/rule/<name>/).

Owns: `lint(dockerfile, build_args=..., base_env=...) -> list[LintWarning]`, the rules
JSONArgsRecommended, StageNameCasing, FromAsCasing, DuplicateStageName, UndefinedVar,
UndefinedArgInFrom, MaintainerDeprecated, ConsistentInstructionCasing, WorkdirRelativePath,
SecretsUsedInArgOrEnv, MultipleInstructionsDisallowed, NoEmptyContinuation (from the parser),
honouring `# check=skip=A,B` / `skip=all`; and `enforce(warnings, dockerfile, force)` which
raises LintError when `# check=error=true` or `--check` asks for warnings to be errors.
The same list serves `pybuild lint` and build-time warnings.
Must not: print, or need a base image (UndefinedVar takes the base image's Env if known).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from builder.dockerfile import ast as A
from builder.dockerfile.expand import expand
from builder.errors import DockerfileError, InstructionError, SourceSpan
from runtime.record import Record

URL = "https://docs.docker.com/go/dockerfile/rule/{}/"
RULES = ("JSONArgsRecommended", "StageNameCasing", "FromAsCasing", "DuplicateStageName", "UndefinedVar",
         "UndefinedArgInFrom", "MaintainerDeprecated", "ConsistentInstructionCasing", "WorkdirRelativePath",
         "SecretsUsedInArgOrEnv", "MultipleInstructionsDisallowed", "NoEmptyContinuation")
_SECRET = re.compile(r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)")
_NOT_SECRET = re.compile(r"(?i)(?:_|^)(?:public)(?:_|$)")
# Variables every Linux base image defines; used when the base image's Env is not known.
DEFAULT_BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


class LintWarning(Record):
    rule: str
    message: str
    span: SourceSpan | None
    url: str

    def render(self) -> str:
        where = f"{self.span.file}:{self.span.line}:{self.span.column}: " if self.span else ""
        return f"{where}warning: {self.rule}: {self.message}\n  see {self.url}"


class LintError(InstructionError):
    """Lint findings treated as errors (`# check=error=true` or `--check`)."""


def _kebab(rule: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", rule).lower()


def _w(rule: str, message: str, span: SourceSpan | None) -> LintWarning:
    return LintWarning(rule, message, span, URL.format(_kebab(rule)))


def parser_warnings(raw: tuple, filename: str, lines: tuple[str, ...]) -> tuple[LintWarning, ...]:
    out = []
    for w in raw:
        text = lines[w.line - 1] if 0 < w.line <= len(lines) else ""
        out.append(LintWarning("NoEmptyContinuation", w.short, SourceSpan(filename, w.line, 1, None, text), w.url))
    return tuple(out)


def lint(dockerfile: A.Dockerfile, build_args: Mapping[str, str] | None = None,
         base_env: Mapping[str, str] | None = None) -> list[LintWarning]:
    build_args = dict(build_args or {})
    out: list[LintWarning] = list(dockerfile.warnings)
    ins_all = dockerfile.instructions
    out += _casing(ins_all)
    meta: dict[str, str | None] = {}
    seen_names: dict[str, A.From] = {}
    stage_ins: list[A.Instruction] = []
    current: A.From | None = None

    def close() -> None:
        if current is not None:
            out.extend(_stage_checks(current, stage_ins, meta, build_args, base_env, dockerfile.escape))

    for ins in ins_all:
        if isinstance(ins, A.From):
            close()
            current, stage_ins = ins, []
            out += _from_checks(ins, meta, seen_names)
        elif current is None:
            if isinstance(ins, A.Arg):
                out += _secret_check(ins, [d.key for d in ins.args])
                for d in ins.args:
                    meta[d.key] = d.value
        else:
            stage_ins.append(ins)
    close()
    for i in ins_all:
        if isinstance(i, A.Maintainer):
            out.append(_w("MaintainerDeprecated", "Maintainer instruction is deprecated in favor of using label",
                          i.span))
    check = dockerfile.directives.check
    out = [w for w in out if not check.skips(w.rule)]
    return sorted(out, key=lambda w: (w.span.line if w.span else 0, RULES.index(w.rule) if w.rule in RULES else 99))


def enforce(warnings: list[LintWarning], dockerfile: A.Dockerfile, force: bool = False) -> None:
    """Raise LintError for the first warning when checks are errors (`--check` or check=error=true)."""
    if warnings and (force or dockerfile.directives.check.error):
        w = warnings[0]
        more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
        raise LintError(f"lint {w.rule}: {w.message}{more}", w.span, hint=f"see {w.url}")


def _casing(ins_all) -> list[LintWarning]:
    def words(i):
        yield i, (i.original.split(None, 1)[0] if i.original else i.name)
        if isinstance(i, A.Onbuild) and i.instruction is not None and i.expression:
            yield i, i.expression.split(None, 1)[0]

    kws = [(i, kw) for top in ins_all for i, kw in words(top) if kw]
    upper = sum(1 for _, k in kws if k == k.upper())
    lower = sum(1 for _, k in kws if k == k.lower())
    majority_upper = upper >= lower
    out = []
    for i, k in kws:
        if (majority_upper and k != k.upper()) or (not majority_upper and k != k.lower()):
            case = "uppercase" if majority_upper else "lowercase"
            out.append(_w("ConsistentInstructionCasing",
                          f"Command '{k}' should match the case of the command majority ({case})", i.span))
    return out


def _from_checks(ins: A.From, meta: dict, seen: dict) -> list[LintWarning]:
    out = []
    kw = ins.original.split(None, 1)[0] if ins.original else "FROM"
    if ins.as_keyword is not None:
        if (kw.isupper() and not ins.as_keyword.isupper()) or (kw.islower() and not ins.as_keyword.islower()):
            out.append(_w("FromAsCasing", f"'{ins.as_keyword}' and '{kw}' keywords' casing do not match", ins.span))
    if ins.stage_name_as_written is not None:
        if ins.stage_name_as_written != ins.stage_name_as_written.lower():
            out.append(_w("StageNameCasing", f"Stage name '{ins.stage_name_as_written}' should be lowercase", ins.span))
        if ins.stage_name in seen:
            out.append(_w("DuplicateStageName",
                          f"Duplicate stage name '{ins.stage_name}', stage names should be unique", ins.span))
        seen[ins.stage_name] = ins
    from builder.dockerfile.stages import PLATFORM_ARGS

    env = {k: (v or "") for k, v in meta.items()} | {p: "" for p in PLATFORM_ARGS}
    for word in (ins.base, ins.platform or ""):
        try:
            r = expand(word, env)
        except DockerfileError:
            continue
        for name in sorted(r.unmatched):
            out.append(_w("UndefinedArgInFrom", f"FROM argument '{name}' is not declared", ins.span))
    return out


def _secret_check(ins, names) -> list[LintWarning]:
    out = []
    for n in names:
        if _SECRET.search(n) and not _NOT_SECRET.search(n):
            out.append(_w("SecretsUsedInArgOrEnv",
                          f'Do not use ARG or ENV instructions for sensitive data ({ins.name} "{n}")', ins.span))
    return out


def _stage_checks(frm: A.From, body: list, meta: dict, build_args: dict, base_env, escape: str) -> list[LintWarning]:
    from builder.dockerfile.stages import PROXY_ARGS

    out: list[LintWarning] = []
    counts: dict[str, list] = {"CMD": [], "ENTRYPOINT": [], "HEALTHCHECK": []}
    defined: set[str] = set(base_env if base_env is not None else DEFAULT_BASE_ENV) | set(PROXY_ARGS)
    absolute_workdir = False
    for ins in body:
        if ins.name in counts:
            counts[ins.name].append(ins)
        if isinstance(ins, (A.Cmd, A.Entrypoint)) and ins.prepend_shell:
            out.append(_w("JSONArgsRecommended", f"JSON arguments recommended for {ins.name} to prevent unintended "
                          "behavior related to OS signals", ins.span))
        if isinstance(ins, A.Workdir):
            path = ins.path
            if path.startswith("/") or path.startswith("$"):
                absolute_workdir = True
            elif not absolute_workdir:
                out.append(_w("WorkdirRelativePath", f"Relative workdir \"{path}\" can have unexpected results "
                              "if the base image changes", ins.span))
        for name in _unmatched(ins, defined, escape):
            import difflib

            close = difflib.get_close_matches(name, sorted(defined), n=1, cutoff=0.6)
            hint = f" (did you mean ${close[0]}?)" if close else ""
            out.append(_w("UndefinedVar", f"Usage of undefined variable '${name}'{hint}", ins.span))
        if isinstance(ins, A.Env):
            out += _secret_check(ins, [p.key for p in ins.pairs])
            defined.update(p.key for p in ins.pairs)
        elif isinstance(ins, A.Arg):
            out += _secret_check(ins, [d.key for d in ins.args])
            defined.update(d.key for d in ins.args)
    for name, items in counts.items():
        for extra in items[:-1]:
            out.append(_w("MultipleInstructionsDisallowed", f"Multiple {name} instructions should not be used in "
                          "the same stage because only the last one will be used", extra.span))
    return out


def _unmatched(ins: A.Instruction, defined: set[str], escape: str) -> list[str]:
    seen: list[str] = []

    class _Recorder(dict):
        # Records each name looked up that is not defined; values are never empty, so
        # `${x:?}` does not fail while probing.
        def __contains__(self, k):
            if k not in defined and k not in seen:
                seen.append(k)
            return k in defined

        def __getitem__(self, k):
            return "x"

    try:
        ins.expand(_Recorder(), escape)
    except DockerfileError:
        return []
    return seen
