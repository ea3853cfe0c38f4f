"""The differential cases: each a small Dockerfile + generated context, named for the one
semantic it probes. The reference BuildKit decides what is right (expected/<case>.json).

Bases (see harness): `pdbase` is busybox with users root, daemon, svc (999, primary group
svcgrp 998, also in users 100), alice (1000; also in staff 50, dev 2000, ops 2001), bob (1001;
staff, dev), nohome (1002, home /nonexistent), nobody; /home/alice (1000:1000 0750); /data
(1000:2000 02775); /opt/real/keep.txt with symlinks /opt/absdir -> /opt/real, /opt/reldir ->
real, /opt/dangling -> /opt/nowhere, /opt/tofile -> real/keep.txt. `pdfiles` holds /srv/app
(1000:1000 0750) with a setuid tool, a 0640 1000:2000 conf, a 02770 1001:50 data dir, a
symlink, a hardlink pair (999:998) and a sticky /srv/shared.
"""
from __future__ import annotations

from tests.differential.harness import Archive, Case, D, F, Fifo, H, L

CASES: list[Case] = []


def c(name: str, dockerfile: str, files: dict | None = None, **kw) -> None:
    assert all(x.name != name for x in CASES), name
    CASES.append(Case(name, dockerfile, files, **kw))


STAT = "stat -c '%n %F %a %u:%g %s' "
FROM = "FROM pdbase\n"

# ------------------------------------------------------------ COPY/ADD ownership and modes
c("copy_context_file_owner_reset_to_root", FROM + "COPY f /f\n", {"f": F("x", 0o640, 1000, 2000)})
c("copy_context_file_keeps_mode_0600", FROM + "COPY f /f\n", {"f": F("x", 0o600)})
c("copy_context_file_keeps_exec_bit", FROM + "COPY f /usr/local/bin/f\n", {"f": F("#!/bin/sh\n", 0o755)})
c("copy_context_file_keeps_setuid_bit", FROM + "COPY f /f\n", {"f": F("x", 0o4755)})
c("copy_context_dir_with_special_bits", FROM + "COPY d /d\n",
  {"d": D(0o3775), "d/f": F("x", 0o2755)})
c("copy_dir_mode_onto_new_dest", FROM + "COPY d /newdir\n", {"d": D(0o700), "d/f": "x"})
c("copy_dir_mode_onto_existing_dest_dir", FROM + "COPY d /data/\n", {"d": D(0o700), "d/f": "x"})
c("copy_dir_mode_onto_existing_dest_no_slash", FROM + "COPY d /data\n", {"d": D(0o750), "d/f": "x"})
c("copy_creates_parent_dirs_default", FROM + "COPY f /a/b/c/f\n", {"f": "x"})
c("copy_chown_creates_parent_dirs", FROM + "COPY --chown=1000:1000 f /a/b/f\n", {"f": "x"})
c("copy_chown_dest_dir_slash_created", FROM + "COPY --chown=alice f /newd/sub/\n", {"f": "x"})
c("copy_chmod_creates_parent_dirs", FROM + "COPY --chmod=700 f /p/q/f\n", {"f": "x"})
c("copy_chmod_setuid", FROM + "COPY --chmod=4755 f /f\n", {"f": "x"})
c("copy_chmod_setgid_on_dir", FROM + "COPY --chmod=2775 d /d\n", {"d": D(0o755), "d/f": "x"})
c("copy_chmod_sticky_on_dir", FROM + "COPY --chmod=1777 d /d\n", {"d": D(0o755), "d/f": "x"})
c("copy_chmod_applies_to_dirs_and_files", FROM + "COPY --chmod=640 d /d\n",
  {"d": D(0o755), "d/sub": D(0o700), "d/sub/f": F("x", 0o600)})
c("copy_chmod_symbolic", FROM + "COPY --chmod=u+x,g-r f /f\n", {"f": F("x", 0o644)})
c("copy_chmod_invalid_fails", FROM + "COPY --chmod=999 f /f\n", {"f": "x"})
c("copy_chown_by_name", FROM + "COPY --chown=alice f /f\n", {"f": "x"})
c("copy_chown_name_and_group", FROM + "COPY --chown=alice:dev f /f\n", {"f": "x"})
c("copy_chown_numbers", FROM + "COPY --chown=1234:5678 f /f\n", {"f": "x"})
c("copy_chown_uid_only_numeric", FROM + "COPY --chown=1001 f /f\n", {"f": "x"})
c("copy_chown_name_primary_group_differs", FROM + "COPY --chown=svc f /f\n", {"f": "x"})
c("copy_chown_name_numeric_group", FROM + "COPY --chown=alice:2001 f /f\n", {"f": "x"})
c("copy_chown_numeric_uid_of_named_user", FROM + "COPY --chown=999 f /f\n", {"f": "x"})
c("copy_chown_numeric_user_named_group", FROM + "COPY --chown=4242:ops f /f\n", {"f": "x"})
c("copy_chown_unknown_user_fails", FROM + "COPY --chown=nosuchuser f /f\n", {"f": "x"})
c("copy_chown_unknown_group_fails", FROM + "COPY --chown=alice:nosuchgroup f /f\n", {"f": "x"})
c("copy_chown_dir_tree_recursive", FROM + "COPY --chown=bob:staff d /d\n",
  {"d": D(0o750), "d/s": D(0o700), "d/s/f": F("x", 0o600, 7, 7)})
c("copy_chown_and_chmod_together", FROM + "COPY --chown=alice:ops --chmod=0750 f /srv/f\n", {"f": "x"})
c("copy_chown_arg_expanded", FROM + "ARG U=bob\nCOPY --chown=$U:dev f /f\n", {"f": "x"})
c("copy_from_stage_keeps_uid",
  "FROM pdbase AS s\nRUN mkdir -p /x && echo a > /x/f && chown 1000:2000 /x/f && chmod 640 /x/f && chown 1001:50 /x\n"
  + FROM + "COPY --from=s /x /y\n")
c("copy_from_stage_file_keeps_owner_and_mode",
  "FROM pdbase AS s\nRUN echo a > /f && chown 999:998 /f && chmod 4750 /f\n" + FROM + "COPY --from=s /f /g\n")
c("copy_from_stage_chown_overrides", "FROM pdbase AS s\nRUN echo a > /f && chown 999:998 /f\n"
  + FROM + "COPY --from=s --chown=alice /f /g\n")
c("copy_from_image_keeps_owner_and_modes", FROM + "COPY --from=pdfiles /srv/app /app\n")
c("copy_from_image_dir_into_existing_dir", FROM + "COPY --from=pdfiles /srv/app/ /data/\n")
c("copy_from_image_sticky_dir", FROM + "COPY --from=pdfiles /srv/shared /shared\n")
c("copy_from_image_chown_overrides_tree", FROM + "COPY --from=pdfiles --chown=bob:bob /srv/app /app\n")
c("copy_from_image_chmod_overrides_tree", FROM + "COPY --from=pdfiles --chmod=755 /srv/app /app\n")
c("copy_from_image_keeps_hardlinks", FROM + "COPY --from=pdfiles /srv/app/ /app/\n")
c("copy_from_image_root_parent_created", FROM + "COPY --from=pdfiles /srv/app/conf/app.conf /new/deep/\n")
c("add_context_file_owner_reset", FROM + "ADD f /f\n", {"f": F("x", 0o640, 1000, 1000)})
c("add_archive_keeps_member_owners", FROM + "ADD a.tar /x/\n",
  {"a.tar": Archive({"d": D(0o750, 1000, 2000), "d/f": F("x", 0o4711, 1001, 50)})})
c("add_chown_archive_members", FROM + "ADD --chown=alice a.tar /x/\n",
  {"a.tar": Archive({"d": D(0o750, 1000, 2000), "d/f": F("x", 0o640, 1001, 50)})})
c("add_chmod_archive", FROM + "ADD --chmod=700 a.tar /x/\n",
  {"a.tar": Archive({"d": D(0o755), "d/f": F("x", 0o644)})})
c("copy_file_into_existing_dir_without_slash", FROM + "COPY f /data\n", {"f": "x"})
c("copy_file_replaces_existing_file_keeps_new_mode", FROM + "COPY f /opt/real/keep.txt\n", {"f": F("y", 0o600)})

# ------------------------------------------------------------ symlinks: sources and destinations
c("copy_toplevel_symlink_source_followed", FROM + "COPY ln /x\n", {"f": F("target", 0o640), "ln": L("f")})
c("copy_toplevel_symlink_to_dir_source", FROM + "COPY ln /x\n", {"d": D(), "d/f": "in", "ln": L("d")})
c("copy_symlink_inside_dir_kept", FROM + "COPY d /d\n",
  {"d": D(), "d/f": "x", "d/ln": L("f"), "d/abs": L("/etc/passwd"), "d/up": L("../elsewhere")})
c("copy_wildcard_matched_symlink", FROM + "COPY *.lnk /w/\n", {"f": "x", "a.lnk": L("f"), "b.lnk": L("missing")})
c("copy_wildcard_matched_symlink_to_file", FROM + "COPY *.lnk /w/\n", {"f": F("x", 0o600), "a.lnk": L("f")})
c("copy_wildcard_matched_symlink_to_dir", FROM + "COPY s* /w/\n", {"d": D(), "d/f": "x", "sd": L("d")})
c("copy_dest_through_absolute_symlink_dir", FROM + "COPY f /opt/absdir/f\n", {"f": "x"})
c("copy_dest_through_relative_symlink_dir", FROM + "COPY f /opt/reldir/f\n", {"f": "x"})
c("copy_dest_is_symlink_to_dir_with_slash", FROM + "COPY f /opt/absdir/\n", {"f": "x"})
c("copy_dest_is_symlink_to_dir_without_slash", FROM + "COPY f /opt/reldir\n", {"f": "x"})
c("copy_dest_is_dangling_symlink", FROM + "COPY f /opt/dangling\n", {"f": "x"})
c("copy_dest_is_dangling_symlink_with_slash", FROM + "COPY f /opt/dangling/\n", {"f": "x"})
c("copy_dest_is_symlink_to_file", FROM + "COPY f /opt/tofile\n", {"f": "new"})
c("copy_dir_into_symlinked_dir", FROM + "COPY d/ /opt/reldir/\n", {"d": D(), "d/n": "x", "d/s": D(), "d/s/m": "y"})
c("copy_dir_over_existing_symlink_in_tree", FROM + "COPY d/ /opt/\n", {"d": D(), "d/absdir": D(), "d/absdir/f": "x"})
c("add_archive_into_symlinked_dir", FROM + "ADD a.tar /opt/absdir/\n", {"a.tar": Archive({"n": "x", "s/m": "y"})})
c("add_archive_with_symlink_members", FROM + "ADD a.tar /x/\n",
  {"a.tar": Archive({"f": "x", "ln": L("f"), "abs": L("/etc/group"), "dl": L("nope")})})
c("add_archive_member_through_existing_symlink", FROM + "ADD a.tar /\n",
  {"a.tar": Archive({"opt/absdir/viaarc": "x"})})
c("copy_from_stage_symlink_source_followed", "FROM pdbase AS s\nRUN echo a > /t && ln -s /t /ln\n"
  + FROM + "COPY --from=s /ln /x\n")
c("copy_from_stage_symlink_in_tree_kept", "FROM pdbase AS s\nRUN mkdir /d && echo a > /d/t && ln -s t /d/ln\n"
  + FROM + "COPY --from=s /d /d\n")
c("copy_from_image_path_through_symlink", FROM + "COPY --from=pdbase /opt/absdir/keep.txt /k\n")
c("copy_source_symlink_escaping_context", FROM + "COPY ln /x\n", {"ln": L("../../../../etc/hostname")})
c("workdir_through_symlink", FROM + "WORKDIR /opt/absdir/sub\nRUN pwd > /pwd\n")
c("run_through_symlink_dest_then_copy", FROM + "RUN ln -s /data /linkdata\nCOPY f /linkdata/f\n", {"f": "x"})

# ------------------------------------------------------------ several sources, wildcards
c("copy_two_files_dest_without_slash_fails", FROM + "COPY a b /newdest\n", {"a": "a", "b": "b"})
c("copy_two_files_existing_dir_without_slash", FROM + "COPY a b /data\n", {"a": "a", "b": "b"})
c("copy_two_files_dest_with_slash", FROM + "COPY a b /n/\n", {"a": "a", "b": "b"})
c("copy_wildcard_matching_nothing_fails", FROM + "COPY *.nomatch /d/\n", {"a": "a"})
c("copy_wildcard_nomatch_next_to_real_source", FROM + "COPY *.nomatch a /d/\n", {"a": "a"})
c("copy_wildcard_single_file_dest_without_slash", FROM + "COPY *.txt /out\n", {"one.txt": "1", "x": "x"})
c("copy_wildcard_several_files_dest_without_slash_fails", FROM + "COPY *.txt /out\n", {"a.txt": "1", "b.txt": "2"})
c("copy_wildcard_dirs_copy_their_contents", FROM + "COPY d* /out/\n",
  {"d1": D(), "d1/f": "1", "d2": D(0o700), "d2/g": "2", "d2/sub": D(), "d2/sub/h": "3"})
c("copy_mixed_files_and_dirs", FROM + "COPY a d /m/\n", {"a": "a", "d": D(0o750), "d/f": "f"})
c("copy_dot_into_dir", FROM + "COPY . /app/\n", {"a": "a", "d": D(0o700), "d/f": "f"})
c("copy_char_class_and_question_mark", FROM + "COPY f?.txt [ab].dat /d/\n",
  {"f1.txt": "1", "f22.txt": "no", "a.dat": "a", "c.dat": "no"})
c("copy_wildcard_in_subdir", FROM + "COPY src/*.c /d/\n", {"src/a.c": "a", "src/b.h": "b", "src/c.c": "c"})
c("copy_source_dir_dot_slash_prefix", FROM + "COPY ./d /x\n", {"d": D(), "d/f": "f"})
c("copy_missing_source_fails", FROM + "COPY nope /x\n", {"a": "a"})
c("copy_source_outside_context_dotdot", FROM + "COPY ../a /x\n", {"a": "a"})
c("copy_same_basename_later_wins", FROM + "COPY d1/f d2/f /o/\n", {"d1/f": "one", "d2/f": "two"})
c("copy_wildcard_dir_and_file", FROM + "COPY x* /o/\n", {"xf": "f", "xd": D(), "xd/in": "i"})
c("copy_parents_flag_needs_labs_syntax", FROM + "COPY --parents a/b/f c/f /p/\n",
  {"a/b/f": "1", "c/f": "2"},
  xfail="BuildKit's built-in frontend rejects COPY --parents without a `# syntax=…-labs` frontend "
        "('unknown flag: --parents'); pybuild accepts it always (a documented extension)")
c("copy_exclude_flag", FROM + "COPY --exclude=*.log d /d\n", {"d": D(), "d/keep": "k", "d/drop.log": "l"})

# ------------------------------------------------------------ ADD
_TREE = {"top": D(0o755), "top/f": F("tar content\n", 0o640), "top/sub": D(0o700), "top/sub/g": "g"}
for kind in ("none", "gz", "bz2", "xz", "zst"):
    ext = {"none": "tar", "gz": "tar.gz", "bz2": "tar.bz2", "xz": "tar.xz", "zst": "tar.zst"}[kind]
    c(f"add_archive_{kind}_extracted" if kind != "none" else "add_archive_plain_tar_extracted",
      FROM + f"ADD a.{ext} /x/\n", {f"a.{ext}": Archive(_TREE, kind)})
c("add_gzip_file_not_tar_kept", FROM + "ADD n.gz /x/\n", {"n.gz": F(__import__("gzip").compress(b"plain text\n", mtime=0))})
c("add_bz2_file_not_tar_kept", FROM + "ADD n.bz2 /x/\n", {"n.bz2": F(__import__("bz2").compress(b"plain text\n"))})
c("add_xz_file_not_tar_kept", FROM + "ADD n.xz /x/\n", {"n.xz": F(__import__("lzma").compress(b"plain text\n"))})
c("add_archive_onto_existing_content", FROM + "ADD a.tar /opt/\n",
  {"a.tar": Archive({"real": D(0o700), "real/keep.txt": F("replaced", 0o600), "real/new": "n"})})
c("add_archive_without_extension_detected", FROM + "ADD data.bin /x/\n", {"data.bin": Archive(_TREE, "gz")})
c("add_archive_dest_without_slash", FROM + "ADD a.tar /xd\n", {"a.tar": Archive(_TREE)})
c("add_archive_with_hardlinks", FROM + "ADD a.tar /x/\n",
  {"a.tar": Archive({"f": F("h", 0o600, 5, 5), "g": H("f")})})
c("add_archive_keeps_member_xattrs", FROM + "ADD a.tar /x/\n",
  {"a.tar": Archive({"f": F("x", 0o644, xattrs={"user.pd": b"v1"}), "g": F("y", 0o755, 1000, 1000, xattrs={
      "security.capability": bytes.fromhex("0100000200040000000000000000000000000000")})})})
c("add_chown_archive_keeps_capability", FROM + "ADD --chown=alice a.tar /x/\n",
  {"a.tar": Archive({"g": F("y", 0o755, xattrs={
      "security.capability": bytes.fromhex("0100000200040000000000000000000000000000")})})})
c("add_archive_wildcard", FROM + "ADD *.tar /w/\n",
  {"a.tar": Archive({"a": "1"}), "b.tar": Archive({"b": "2"})})
c("add_archive_file_replaces_dir_entry", FROM + "ADD a.tar /\n",
  {"a.tar": Archive({"opt/real": "now a file"})})
c("add_dir_containing_archive_not_extracted", FROM + "ADD d /x\n", {"d/a.tar": Archive({"n": "1"})})
c("add_empty_gzip_not_tar", FROM + "ADD e.gz /e.gz\n", {"e.gz": F(__import__("gzip").compress(b"", mtime=0))})
c("copy_archive_not_extracted", FROM + "COPY a.tar /x/\n", {"a.tar": Archive({"n": "1"})})

# ------------------------------------------------------------ ARG / ENV
c("env_then_arg_same_name", FROM + "ENV X=fromenv\nARG X=fromarg\nRUN echo \"$X\" > /o\n", args={"X": "cli"})
c("arg_then_env_same_name", FROM + "ARG X=fromarg\nENV X=fromenv\nRUN echo \"$X\" > /o\n", args={"X": "cli"})
c("arg_then_env_referencing_arg", FROM + "ARG V=1\nENV V=${V}.env\nRUN echo \"$V\" > /o\n", args={"V": "9"})
c("build_arg_overrides_default", FROM + "ARG X=def\nRUN echo \"$X\" > /o\n", args={"X": "given"})
c("build_arg_undeclared_not_visible", FROM + "RUN echo \"[$UNDECL]\" > /o\n", args={"UNDECL": "v"})
c("arg_declared_late_not_seen_earlier", FROM + "RUN echo \"[$X]\" > /o1\nARG X=late\nRUN echo \"[$X]\" > /o2\n",
  args={"X": "cli"})
c("arg_empty_default", FROM + "ARG X=\nRUN echo \"[${X-unset}]\" > /o\n")
c("arg_without_default_is_unset", FROM + "ARG X\nRUN echo \"[${X-unset}]\" > /o\n")
c("build_arg_empty_value", FROM + "ARG X=def\nRUN echo \"[$X]\" > /o\n", args={"X": ""})
c("global_arg_needs_redeclare_in_stage", "ARG G=global\n" + FROM + "RUN echo \"[$G]\" > /o1\nARG G\nRUN echo \"[$G]\" > /o2\n")
c("global_arg_in_from", "ARG B=pdbase\nFROM $B\nRUN echo ok > /o\n")
c("env_pairs_quoting", FROM + "ENV A=\"a b\" B=c\\ d C='$$x' D=\"q\\\"q\"\n")
c("env_legacy_space_form", FROM + "ENV A b  c\n")
c("env_refers_to_previous_value_same_line", FROM + "ENV A=1\nENV A=2 B=$A\n")
c("env_expansion_in_copy_dest", FROM + "ENV D=/dd\nCOPY f $D/\n", {"f": "x"})
c("env_default_and_alt_expansion", FROM + "ENV S=set\nENV A=${S:-d} B=${U:-d} C=${S:+alt} E=${U:+alt}\n")
c("arg_not_persisted_in_config_env", FROM + "ARG X=1\nENV Y=$X\n")
c("env_path_override_used_by_run", FROM + "ENV PATH=/opt/bin:$PATH\nRUN echo $PATH > /o\n")
c("arg_in_run_history", FROM + "ARG V=1\nARG W\nRUN echo $V > /o\n", args={"W": "w"})
c("env_escaped_dollar", FROM + "ENV A=\\$HOME B=x\\\\y\n")

# ------------------------------------------------------------ USER
c("user_name_supplementary_groups", FROM + "USER alice\nRUN id > /tmp/id && cp /tmp/id /home/alice/id\nUSER root\nRUN cp /tmp/id /id\n")
c("user_numeric_known_uid", FROM + "USER 1000\nRUN id > /tmp/id\n")
c("user_numeric_unknown_uid", FROM + "USER 4242\nRUN id > /tmp/id\n")
c("user_name_and_group", FROM + "USER alice:ops\nRUN id > /tmp/id\n")
c("user_uid_and_gid_numbers", FROM + "USER 1001:2001\nRUN id > /tmp/id\n")
c("user_root_supplementary_groups", FROM + "RUN id > /id\n")
c("user_primary_group_name_differs", FROM + "USER svc\nRUN id > /tmp/id\n")
c("user_home_from_passwd", FROM + "USER alice\nRUN echo \"$HOME\" > /tmp/home\n")
c("user_home_numeric_unknown", FROM + "USER 4242\nRUN echo \"[$HOME]\" > /tmp/home\n")
c("user_home_nonexistent_dir", FROM + "USER nohome\nRUN echo \"$HOME\" > /tmp/home\n")
c("user_unknown_name_run_fails", FROM + "USER nosuch\nRUN true\n")
c("user_unknown_name_without_run_ok", FROM + "USER nosuch\n")
c("user_creates_file_ownership", FROM + "USER bob:dev\nRUN echo x > /tmp/f\n")
c("user_env_home_not_in_config", FROM + "USER alice\nENV X=1\n")
c("workdir_created_owner_with_user", FROM + "USER alice\nWORKDIR /w/x\n")
c("copy_with_user_set_stays_root", FROM + "USER alice\nCOPY f /f\n", {"f": "x"})

# ------------------------------------------------------------ RUN --mount
c("mount_bind_without_type", FROM + "RUN --mount=target=/m cat /m/f > /o\n", {"f": "ctx"})
c("mount_bind_relative_target", FROM + "WORKDIR /w\nRUN --mount=type=bind,target=m cat m/f > /o\n", {"f": "ctx"})
c("mount_bind_dot_target", FROM + "WORKDIR /w\nRUN --mount=type=bind,target=. ls > /o\n", {"f": "ctx"})
c("mount_bind_without_target_fails", FROM + "RUN --mount=type=bind,source=f true\n", {"f": "ctx"})
c("mount_bind_source_file", FROM + "RUN --mount=type=bind,source=f,target=/mf cat /mf > /o\n", {"f": "ctx"})
c("mount_bind_from_stage", "FROM pdbase AS s\nRUN echo s > /sf\n" + FROM
  + "RUN --mount=from=s,target=/s cat /s/sf > /o\n")
c("mount_bind_from_image_source", FROM + "RUN --mount=from=pdfiles,source=/srv/app/conf,target=/c cat /c/app.conf > /o\n")
c("mount_bind_rw_writes_discarded", FROM + "RUN --mount=type=bind,target=/m,rw echo w > /m/new && cat /m/new > /o\n",
  {"f": "x"})
c("mount_bind_readonly_write_fails", FROM + "RUN --mount=type=bind,target=/m touch /m/new\n", {"f": "x"})
c("mount_bind_dockerignore_applied", FROM + "RUN --mount=target=/m ls -a /m > /o\n",
  {"keep": "k", "secret.txt": "s", "d/x.log": "l", "d/y": "y"}, dockerignore="*.txt\nd/*.log\n")
c("mount_bind_dockerignore_exception_reincludes", FROM + "RUN --mount=target=/m find /m | sort > /o\n",
  {"d/a.log": "a", "d/keep.log": "k", "d/b": "b"}, dockerignore="d/*.log\n!d/keep.log\n")
c("mount_bind_keeps_context_modes", FROM + "RUN --mount=target=/m " + STAT + "/m/f /m/d > /o\n",
  {"f": F("x", 0o600, 1000, 1000), "d": D(0o700)})
c("mount_cache_defaults", FROM + "RUN --mount=type=cache,target=/cache-defaults " + STAT + "/cache-defaults > /o\n")
c("mount_cache_uid_gid_mode", FROM + "RUN --mount=type=cache,target=/cache-ugm,uid=1000,gid=2000,mode=0700 " + STAT + "/cache-ugm > /o\n")
c("mount_cache_as_user", FROM + "USER alice\nRUN --mount=type=cache,target=/tmp/cache-user " + STAT + "/tmp/cache-user > /tmp/o\n")
c("mount_tmpfs_defaults", FROM + "RUN --mount=type=tmpfs,target=/t " + STAT + "/t > /o\n")
c("mount_secret_missing_not_required", FROM + "RUN --mount=type=secret,id=nope ls /run/secrets > /o 2>&1 || echo none > /o\n")
c("mount_secret_required_missing_fails", FROM + "RUN --mount=type=secret,id=nope,required=true true\n")
c("mount_secret_default_mode_and_owner", FROM + "RUN --mount=type=secret,id=s " + STAT
  + "/run/secrets/s > /o && cat /run/secrets/s >> /o\n", secrets={"s": "sekrit\n"})
c("mount_secret_uid_gid_mode", FROM + "RUN --mount=type=secret,id=s,uid=1000,gid=2000,mode=0440 " + STAT
  + "/run/secrets/s > /o\n", secrets={"s": "sekrit\n"})
c("mount_secret_as_user_readable", FROM + "USER alice\nRUN --mount=type=secret,id=s cat /run/secrets/s > /tmp/o\n",
  secrets={"s": "sekrit\n"})
c("mount_secret_custom_target_leaves_nothing", FROM + "RUN --mount=type=secret,id=s,target=/etc/app/key "
  + STAT + "/etc/app/key > /o\n", secrets={"s": "sekrit\n"})
c("mount_secret_as_env", FROM + "RUN --mount=type=secret,id=s,env=TOKEN echo \"[$TOKEN]\" > /o\n",
  secrets={"s": "tok"})
c("mount_secret_id_defaults_to_target_name", FROM + "RUN --mount=type=secret,target=/run/secrets/s cat /run/secrets/s > /o\n",
  secrets={"s": "byname\n"})
c("mount_points_left_in_layer_tmpfs", FROM + "RUN --mount=type=tmpfs,target=/new/deep/t true\n")
c("mount_points_left_in_layer_cache", FROM + "RUN --mount=type=cache,target=/var/cache/x true\n")
c("mount_points_left_in_layer_bind", FROM + "RUN --mount=target=/ctx/mnt true\n", {"f": "x"})
c("mount_points_left_in_layer_secret", FROM + "RUN --mount=type=secret,id=s,target=/sec/s true\n")
c("mount_target_existing_dir_untouched", FROM + "RUN --mount=type=tmpfs,target=/data true\n")
c("mount_bind_from_stage_source_subdir", "FROM pdbase AS s\nRUN mkdir -p /a/b && echo v > /a/b/f\n" + FROM
  + "RUN --mount=from=s,source=/a/b,target=/m cat /m/f > /o\n")
c("mount_ro_flag_accepted", FROM + "RUN --mount=type=bind,target=/m,ro cat /m/f > /o\n", {"f": "x"})
c("mount_cache_target_first_flag", FROM + "RUN --mount=target=/cache-first,type=cache echo ok > /o\n")

# ------------------------------------------------------------ FROM scratch
c("scratch_copy_only_config", "FROM scratch\nCOPY f /f\n", {"f": "x"})
c("scratch_run_mount_points_left",
  "FROM scratch\nCOPY --from=pdbase /bin/busybox /bin/busybox\nRUN [\"/bin/busybox\", \"touch\", \"/made\"]\n")
c("scratch_workdir_created", "FROM scratch\nWORKDIR /app/sub\nCOPY f .\n", {"f": "x"})
c("scratch_env_path_default_in_run",
  "FROM scratch\nCOPY --from=pdbase /bin/busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $PATH > /p\"]\n")

# ------------------------------------------------------------ heredocs, escapes, SHELL, ONBUILD, config
c("heredoc_run", FROM + "RUN <<EOF\necho one > /h1\necho two >> /h1\nEOF\n")
c("heredoc_run_with_shebang", FROM + "RUN <<EOF\n#!/bin/sh -e\necho \"$0\" > /h\nEOF\n")
c("heredoc_copy_file", FROM + "COPY <<EOF /etc/hd.conf\nline $HOSTNAME\nEOF\n")
c("heredoc_copy_chmod", FROM + "COPY --chmod=755 <<EOF /usr/local/bin/hd\n#!/bin/sh\necho hi\nEOF\n")
c("heredoc_quoted_no_expansion", FROM + "ARG A=x\nRUN <<'EOF'\necho \"$A\" > /h\nEOF\n")
c("heredoc_expansion_with_arg", FROM + "ARG A=x\nCOPY <<EOF /h\nval=$A\nEOF\n")
c("heredoc_two_files", FROM + "COPY <<A <<B /hd/\nfirst\nA\nsecond\nB\n")
c("heredoc_dash_strips_tabs", FROM + "RUN <<-EOF\n\techo tab > /h\n\tEOF\n")
c("escape_directive_backtick", "# escape=`\n" + FROM + "RUN echo a `\n  b > /e\nENV W=c:\\dir\n")
c("line_continuation_with_comment_lines", FROM + "RUN echo a \\\n# a comment\n  b > /e\n")
c("shell_instruction_used_by_run", FROM + "SHELL [\"/bin/sh\", \"-ec\"]\nRUN echo $0 > /s\n")
c("shell_instruction_used_by_cmd", FROM + "SHELL [\"/bin/ash\", \"-c\"]\nCMD echo hi\nENTRYPOINT run me\n")
c("onbuild_recorded_in_config", FROM + "ONBUILD RUN echo trig > /t\nONBUILD COPY f /f\n")
c("onbuild_triggers_run_in_child_stage", "FROM pdbase AS p\nONBUILD RUN echo trig > /t\nFROM p\nRUN echo child > /c\n")
c("healthcheck_all_options", FROM + "HEALTHCHECK --interval=5s --timeout=3s --start-period=1s --start-interval=2s --retries=4 CMD [\"true\"]\n")
c("healthcheck_shell_form", FROM + "HEALTHCHECK CMD curl -f http://localhost/ || exit 1\n")
c("healthcheck_none", FROM + "HEALTHCHECK NONE\n")
c("stopsignal_name_and_number", FROM + "STOPSIGNAL SIGKILL\nFROM pdbase\nSTOPSIGNAL 9\n")
c("volume_json_and_plain", FROM + "VOLUME [\"/v1\", \"/v2\"]\nVOLUME /v3 /v4\n")
c("volume_declared_dir_not_created", FROM + "VOLUME /vol\nRUN echo x > /vol/f\n")
c("volume_then_run_changes_kept", FROM + "RUN mkdir /vol\nVOLUME /vol\nRUN echo x > /vol/f && echo y > /other\n")
c("expose_ports_and_protocols", FROM + "EXPOSE 80 443/tcp 53/udp\nEXPOSE 8080/TCP\n")
c("expose_with_arg", FROM + "ARG P=9000\nEXPOSE $P\n")
c("workdir_trailing_slash_kept_in_config", FROM + "WORKDIR /app/\n")
c("workdir_relative_chain", FROM + "WORKDIR a\nWORKDIR b\nRUN pwd > /pwd\n")
c("workdir_with_env", FROM + "ENV D=/srv/dd\nWORKDIR $D/x\n")
c("workdir_existing_not_touched", FROM + "WORKDIR /data\n")
c("label_quoting", FROM + "LABEL a=\"x y\" \"b c\"=d e=f\\ g\nLABEL multi=\"l1 \\\n l2\"\n")
c("label_override_and_base_labels", FROM + "LABEL a=1 b=2\nLABEL a=3\n")
c("maintainer_becomes_label", FROM + "MAINTAINER someone <s@example.com>\n")
c("cmd_shell_form", FROM + "CMD echo \"hi there\"\n")
c("cmd_json_form", FROM + "CMD [\"echo\", \"a b\"]\n")
c("entrypoint_resets_inherited_cmd", FROM + "ENTRYPOINT [\"/bin/echo\"]\n")
c("entrypoint_keeps_cmd_of_same_stage", FROM + "CMD [\"x\"]\nENTRYPOINT [\"/bin/echo\"]\n")
c("entrypoint_shell_form", FROM + "ENTRYPOINT exec top -b\n")
c("cmd_empty_json", FROM + "CMD []\n")
c("history_created_by_mixed", FROM + "ENV A=1\nRUN echo r > /r\nCOPY f /f\nADD f /g\nWORKDIR /w\nUSER 1\nLABEL l=v\n",
  {"f": "x"})
c("copy_from_stage_index", FROM + "RUN echo zero > /z\n" + FROM + "COPY --from=0 /z /z\n")
c("stage_name_case_insensitive", "FROM pdbase AS Build\nRUN echo b > /b\n" + FROM + "COPY --from=build /b /b\n")
c("unused_stage_base_not_resolved", "FROM pdnonexistent:never AS unused\nRUN false\n" + FROM + "RUN echo ok > /o\n")
c("unused_stage_failing_run_not_built", "FROM pdbase AS bad\nRUN exit 3\n" + "FROM pdbase AS good\nRUN echo ok > /o\n")
c("target_selects_intermediate_stage", "FROM pdbase AS a\nRUN echo a > /a\n" + "FROM pdbase AS b\nRUN echo b > /b\n",
  target="a")
c("target_skips_stage_with_missing_base", "FROM pdbase AS a\nRUN echo a > /a\nFROM pdnonexistent:never AS b\n", target="a")
c("from_missing_image_fails", "FROM pdnonexistent:never\n")
c("run_failing_fails", FROM + "RUN exit 7\n")
c("run_exec_form_no_shell", FROM + "RUN [\"/bin/sh\", \"-c\", \"echo $0 > /x\"]\n")
c("run_removes_base_file_whiteout", FROM + "RUN rm /opt/real/keep.txt && rm -r /srv\n")
c("run_replaces_dir_with_file", FROM + "RUN rm -r /opt/real && echo f > /opt/real\n")

# ------------------------------------------------------------ context modes, special files, .dockerignore
c("context_dirs_umask002_0775", FROM + "COPY src /src\n",
  {"src": D(0o775), "src/pkg": D(0o775), "src/pkg/m.py": F("m", 0o664), "src/run.sh": F("r", 0o775)})
c("context_dir_0700_and_file_0400", FROM + "COPY . /ctx/\n", {"p": D(0o700), "p/f": F("x", 0o400)})
c("context_empty_dir_kept", FROM + "COPY d /d\n", {"d": D(), "d/empty": D(0o770)})
c("context_hardlinks_kept", FROM + "COPY d /d\n", {"d/a": F("same", 0o640), "d/b": H("d/a")})
c("context_xattrs_not_copied", FROM + "COPY f /f\n", {"f": F("x", 0o644, xattrs={"user.pd": b"v1"})})
c("context_fifo_source", FROM + "COPY d /d\n", {"d/f": "x", "d/p": Fifo()})
c("dockerignore_excludes_from_copy_dot", FROM + "COPY . /c/\n",
  {"keep": "k", "drop.tmp": "t", "sub/drop.tmp": "t2", "sub/keep": "k2"}, dockerignore="*.tmp\n")
c("dockerignore_doublestar", FROM + "COPY . /c/\n",
  {"keep": "k", "drop.tmp": "t", "sub/drop.tmp": "t2", "sub/keep": "k2"}, dockerignore="**/*.tmp\n")
c("dockerignore_exception_reincludes_file", FROM + "COPY . /c/\n",
  {"logs/a.log": "a", "logs/keep.log": "k"}, dockerignore="logs/*\n!logs/keep.log\n")
c("dockerignore_dir_excluded_then_file_reincluded", FROM + "COPY . /c/\n",
  {"dir/a": "a", "dir/sub/b": "b"}, dockerignore="dir\n!dir/sub/b\n")
c("dockerignore_excluded_source_fails", FROM + "COPY secret /s\n", {"secret": "s", "a": "a"}, dockerignore="secret\n")
c("dockerignore_excludes_dockerfile_still_builds", FROM + "COPY . /c/\n", {"a": "a"},
  dockerignore="Dockerfile\n.dockerignore\n")
c("dockerignore_leading_slash_and_dot", FROM + "COPY . /c/\n", {"a": "a", "b": "b", "c/d": "d"},
  dockerignore="/a\n./c/d\n")

# ------------------------------------------------------------ more angles
c("copy_wildcard_hardlinked_matches", FROM + "COPY *.bin /d/\n", {"a.bin": F("same", 0o640), "b.bin": H("a.bin")})
c("copy_two_sources_hardlinked", FROM + "COPY a.bin b.bin /d/\n", {"a.bin": F("same", 0o640), "b.bin": H("a.bin")})
c("copy_link_flag", FROM + "COPY --link f /l/\n", {"f": "x"})
c("copy_link_onto_symlinked_dest", FROM + "COPY --link f /opt/absdir/\n", {"f": "x"},
  xfail="the reference (docker 28's classic image store) writes a COPY --link through the image's "
        "symlinked /opt/absdir; pybuild's --link layer never looks at the image below it (that is what "
        "lets its cache record be reused on another base), so it makes /opt/absdir a directory")
c("add_link_archive", FROM + "ADD --link a.tar /x/\n", {"a.tar": Archive({"d/f": F("x", 0o600, 1000, 1000)})})
c("copy_chmod_symbolic_on_dir", FROM + "COPY --chmod=go-rwx d /d\n", {"d": D(0o755), "d/f": F("x", 0o644)})
c("copy_heredoc_with_chown", FROM + "COPY --chown=alice <<EOF /home/alice/f\nx\nEOF\n")
c("add_heredoc", FROM + "ADD <<EOF /added\nviaadd\nEOF\n")
c("run_heredoc_as_stdin", FROM + "RUN cat <<EOF > /f\nhello $HOSTNAME\nEOF\n")
c("copy_from_stage_wildcard", "FROM pdbase AS s\nRUN mkdir /src && echo 1 > /src/a.txt && echo 2 > /src/b.log\n"
  + FROM + "COPY --from=s /src/*.txt /d/\n")
c("copy_from_stage_wildcard_nomatch", "FROM pdbase AS s\nRUN mkdir /src\n" + FROM + "COPY --from=s /src/*.none /d/\n")
c("copy_from_stage_missing_path_fails", "FROM pdbase AS s\n" + FROM + "COPY --from=s /nope /d/\n")
c("copy_from_unknown_image_fails", FROM + "COPY --from=pdnonexistent:never /x /x\n")
c("mount_cache_sharing_locked", FROM + "RUN --mount=type=cache,target=/cache-locked,sharing=locked " + STAT
  + "/cache-locked > /o\n")
c("mount_ssh_missing_not_required", FROM + "RUN --mount=type=ssh echo ok > /o\n")
c("mount_tmpfs_size_option", FROM + "RUN --mount=type=tmpfs,target=/tsz,size=1048576 " + STAT + "/tsz > /o\n")
c("expose_port_range", FROM + "EXPOSE 8000-8002/udp 9000\n")
c("healthcheck_inherited_then_none", "FROM pdbase AS p\nHEALTHCHECK CMD true\nFROM p\nHEALTHCHECK NONE\n")
c("env_and_shell_inherited_from_stage", "FROM pdbase AS p\nENV A=1\nSHELL [\"/bin/sh\", \"-ec\"]\nFROM p\nCMD echo $A\n")
c("stopsignal_from_arg", FROM + "ARG S=SIGTERM\nSTOPSIGNAL $S\n")
c("dockerignore_everything_but_one_dir", FROM + "COPY . /c/\n", {"keep/a": "a", "drop/b": "b", "top": "t"},
  dockerignore="*\n!keep\n")
c("dockerignore_comments_and_blank_lines", FROM + "COPY . /c/\n", {"a": "a", "b": "b"},
  dockerignore="# a comment\n\n  b  \n")
c("workdir_relative_with_user_owner", FROM + "USER bob\nWORKDIR rel/dir\n")
c("user_then_workdir_existing_owner_unchanged", FROM + "USER alice\nWORKDIR /srv\n")
c("arg_meta_overridden_by_build_arg_in_from", "ARG IMG=nope\nFROM $IMG\nRUN echo ok > /o\n", args={"IMG": "pdbase"})
c("copy_chown_into_existing_dir", FROM + "COPY --chown=bob d/ /data/\n", {"d/f": "x"})
c("copy_chmod_into_existing_dir", FROM + "COPY --chmod=700 d/ /data/\n", {"d/f": "x"})
c("copy_dir_onto_existing_file_fails", FROM + "COPY d /opt/real/keep.txt\n", {"d/f": "x"})
c("copy_dir_dest_with_trailing_slash_created", FROM + "COPY d /newd/\n", {"d": D(0o700), "d/f": "x"})
c("copy_empty_dir_source", FROM + "COPY e /e\n", {"e": D(0o711)})
c("copy_star_includes_dockerfile", FROM + "COPY * /all/\n", {"a": "a", "sub/b": "b"})
c("copy_file_mode_0000", FROM + "COPY f /f\n", {"f": F("x", 0o000)})
c("add_archive_member_dotdot_fails", FROM + "ADD a.tar /x/\n", {"a.tar": Archive({"../escape": "x"})})
c("copy_chown_group_only_name", FROM + "COPY --chown=:dev f /f\n", {"f": "x"})
c("mount_bind_source_subdir_relative_target", FROM + "WORKDIR /w\nRUN --mount=source=sub,target=m ls m > /o\n",
  {"sub/a": "a", "sub/b": "b", "other": "o"})
c("mount_bind_target_existing_file", FROM + "RUN --mount=source=f,target=/opt/real/keep.txt cat /opt/real/keep.txt > /o\n",
  {"f": "over"})
c("mount_cache_shared_between_runs", FROM + "RUN --mount=type=cache,id=pdiff-shared-x,target=/c1 echo v > /c1/f\n"
  "RUN --mount=type=cache,id=pdiff-shared-x,target=/c2 cat /c2/f > /o\n")
c("mount_cache_from_stage_seed", "FROM pdbase AS s\nRUN mkdir /seed && echo seeded > /seed/f\n" + FROM
  + "RUN --mount=type=cache,id=pdiff-seed-y,target=/cs,from=s,source=/seed cat /cs/f > /o\n")
c("mount_tmpfs_relative_target", FROM + "WORKDIR /w\nRUN --mount=type=tmpfs,target=t " + STAT + "/w/t > /o\n")
c("mount_bind_from_stage_rw_not_persisted", "FROM pdbase AS s\nRUN mkdir /d && echo s > /d/f\n" + FROM
  + "RUN --mount=from=s,source=/d,target=/m,rw echo changed > /m/f && cat /m/f > /o\n"
  "RUN --mount=from=s,source=/d,target=/m cat /m/f > /o2\n")
c("mount_secret_and_bind_together", FROM + "RUN --mount=type=secret,id=s --mount=target=/m cat /run/secrets/s /m/f > /o\n",
  {"f": "ctx\n"}, secrets={"s": "sec\n"})
