/* A static attack probe for tests/security/test_sandbox_escapes.py: the escapes of issue 14
 * made with raw system calls (busybox has no keyctl and its unshare has no -C).
 * Every mode prints one line "<step>: ok" or "<step>: <errno name>" per step, and exits 0
 * when the attack got all the way through, 1 when a step was refused.
 *
 *   probe addkey-exec DESC PAYLOAD CMD...  (host side) join a new session keyring, add a
 *                                          "user" key DESC=PAYLOAD to it, exec CMD
 *   probe keyread DESC                     find DESC in our session keyring and print it
 *   probe cgroup-escape                    unshare(USER|NS|CGROUP), map root, mount the
 *                                          pids cgroup hierarchy, write max to pids.max
 *   probe clone3                           the clone3 system call (docker: ENOSYS)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KEY_SPEC_SESSION_KEYRING -3
#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEYCTL_READ 11
#define KEYCTL_SEARCH 10

static int report(const char *step, long rc) {
    if (rc < 0) {
        printf("%s: %s\n", step, strerrorname_np(errno) ? strerrorname_np(errno) : "E?");
        fflush(stdout);
        return 1;
    }
    printf("%s: ok\n", step);
    fflush(stdout);
    return 0;
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    int rc = write(fd, text, strlen(text)) < 0 ? -1 : 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "addkey-exec")) {
        if (report("join", syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "pybuild-test"))) return 1;
        long k = syscall(SYS_add_key, "user", argv[2], argv[3], strlen(argv[3]), KEY_SPEC_SESSION_KEYRING);
        if (report("add_key", k)) return 1;
        execvp(argv[4], argv + 4);
        return report("exec", -1);
    }
    if (argc == 3 && !strcmp(argv[1], "keyread")) {
        long k = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", argv[2], 0);
        if (report("search", k)) return 1;
        char buf[256] = {0};
        long n = syscall(SYS_keyctl, KEYCTL_READ, k, buf, sizeof buf - 1);
        if (report("read", n)) return 1;
        printf("payload: %s\n", buf);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "cgroup-escape")) {
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (report("unshare", unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP))) return 1;
        char map[64];
        write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "0 %u 1", uid);
        if (report("uid_map", write_file("/proc/self/uid_map", map))) return 1;
        snprintf(map, sizeof map, "0 %u 1", gid);
        if (report("gid_map", write_file("/proc/self/gid_map", map))) return 1;
        mkdir("/tmp/probe-cg", 0700);
        if (report("mount", mount("none", "/tmp/probe-cg", "cgroup", 0, "pids"))) return 1;
        return report("write", write_file("/tmp/probe-cg/pids.max", "max"));
    }
    if (argc == 2 && !strcmp(argv[1], "clone3")) {
        return report("clone3", syscall(SYS_clone3, NULL, 0));
    }
    fprintf(stderr, "usage: probe addkey-exec|keyread|cgroup-escape|clone3 ...\n");
    return 2;
}
