/*
 * nexcage-lxc-monitor NAME LXCPATH LOGFILE: run one container in the foreground with liblxc and
 * exit with its init's exit status.
 *
 * Why not `lxc-start -F`: it exits 0 whatever the container's init returned (observed with LXC
 * 5.0.2: "Child <pid> ended on error (7)" in the log, exit status 0), and engines learn a
 * container's exit status by reaping the process named in --pid-file (conmon: waitpid on it;
 * containerd's shim likewise). LXC's init is always a child of its monitor, so this monitor is
 * the process engines reap: it lives exactly as long as the container, LXC forwards the signals
 * it receives to the container's init, and it exits with init's status (128+N for signal N,
 * as conmon and runc report it). liblxc keeps that status in error_num (start.c: exit code
 * << 8, or signal << 8 | 0x7f).
 *
 * The container's stdio is ours: lxc.console.path = none and no daemonizing, so init inherits
 * fds 0-2 (and the preserved fds) from this process. LXC's own messages go to LOGFILE, never to
 * the container's stderr.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <lxc/lxccontainer.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: nexcage-lxc-monitor NAME LXCPATH LOGFILE\n");
		return 2;
	}
	struct lxc_log log = {
		.name = argv[1],
		.lxcpath = argv[2],
		.file = argv[3],
		.level = "ERROR",
		.prefix = "nexcage-lxc-monitor",
		.quiet = true,
	};
	if (lxc_log_init(&log) != 0)
		return 255;
	/* LXC 5.0.2 still prints some errors through stdio's stderr (e.g. for every lxc-attach:
	 * 'Unsupported config key "lxc.seccomp"'); fd 2 must stay the container's stderr, so
	 * only the FILE is pointed at the log. */
	FILE *quiet = fopen(argv[3], "ae");
	if (quiet)
		stderr = quiet;
	struct lxc_container *c = lxc_container_new(argv[1], argv[2]);
	if (!c)
		return 255;
	c->want_daemonize(c, false);
	bool ok = c->start(c, 0, NULL);
	int status = c->error_num;
	lxc_container_put(c);
	if (!ok)
		return 255;
	if ((status & 0x7f) == 0x7f)
		return 128 + ((status >> 8) & 0x7f);
	return (status >> 8) & 0xff;
}
