/*
 * nexcage-lxc-init: the helper nexcage's LXC backend runs inside (and beside) a container.
 *
 * Built static by scripts/setup-host, so it runs in any rootfs (no shell, no libc needed there).
 * Three modes:
 *
 *   init FILE      lxc.init.cmd. LXC has already switched to lxc.init.uid/gid/groups, set
 *                  lxc.environment and changed to lxc.init.cwd. FILE (NUL-separated records,
 *                  written by nexcage) gives the user's argv and the rest. The helper removes
 *                  the variables LXC adds on its own ("container", PATH), sets the umask, makes a
 *                  pty when process.terminal is true, resolves argv[0], then tells nexcage
 *                  `create` over the inherited socket (fd in FILE) that it is ready - the kernel
 *                  attaches our host pid to the message (SCM_CREDENTIALS) and the pty master
 *                  rides along (SCM_RIGHTS). It then blocks opening the exec FIFO for writing
 *                  until `nexcage start` opens it for reading, writes one byte and execs the
 *                  user's process (runc's exec.fifo, lxcri's sync fifo).
 *
 *   exec [-s FD] [-c CWD] [-u UID] [-g GID] [-G G1,G2] [-b CAPS] [-m UMASK] [-n] [-t]
 *        [-r ROWS -C COLS] [-e K=V]... -- ARGV...
 *                  run by `lxc-attach --clear-env -e CAP -u 0 -g 0` for `nexcage exec`: with
 *                  its capabilities intact it sets up the process as runc does (groups, gid,
 *                  the bounding set of process.capabilities, uid, cwd, env, umask, pty) and
 *                  execs it.
 *
 *   wait CHILD PIDFD HELD
 *                  host side, for a foreground `nexcage exec --console-socket`: nexcage started
 *                  lxc-attach (CHILD) itself to hand the pty master to the console socket, then
 *                  execs this in its own place. CHILD is our child now (children survive
 *                  execve): wait for it and exit with its status, which is the process's;
 *                  forward the signals we get to the process (PIDFD, a pidfd of it; -1: none),
 *                  as runc's foreground exec does. HELD ("15,2" or "-") lists signals nexcage
 *                  caught while setting up; the forwarded ones arrive blocked and pending.
 *
 *   hook           lxc.hook.mount (host side, in the container's mount namespace before
 *                  pivot_root). Reads <dir of $LXC_CONFIG_FILE>/hook and applies what
 *                  LXC has no key for: maskedPaths, readonlyPaths, device nodes, the rootfs
 *                  propagation and a read-only rootfs, in runc's order.
 *
 * Errors are one line on stderr (and, in init mode, over the socket) in runc's wording, so
 * engines that match on "executable file not found" / "no such file or directory" keep working.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_ARGS 4096

extern char **environ;

static int sync_fd = -1;

static void report(const char *fmt, ...)
{
	char msg[PATH_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "nexcage-lxc-init: %s\n", msg);
	if (sync_fd >= 0) {
		char line[sizeof(msg) + 8];
		int n = snprintf(line, sizeof(line), "error %s", msg);
		if (write(sync_fd, line, n) < 0) {
			/* nothing more we can do: stderr has it */
		}
	}
}

static void die(int code, const char *fmt, ...)
{
	char msg[PATH_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	report("%s", msg);
	_exit(code);
}

/* argv[0] as execvp would find it, using PATH from the environment (runc: exec.LookPath). */
static int resolve(const char *name, char *out, size_t len)
{
	if (strchr(name, '/')) {
		if (access(name, F_OK) != 0)
			return ENOENT;
		snprintf(out, len, "%s", name);
		return access(name, X_OK) == 0 ? 0 : EACCES;
	}
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = DEFAULT_PATH;
	int found_noexec = 0;
	while (*path) {
		const char *end = strchrnul(path, ':');
		size_t n = (size_t)(end - path);
		snprintf(out, len, "%.*s%s%s", (int)n, path, n ? "/" : "", name);
		struct stat st;
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
			if (access(out, X_OK) == 0)
				return 0;
			found_noexec = 1;
		}
		path = *end ? end + 1 : end;
	}
	return found_noexec ? EACCES : ENOENT;
}

static void resolve_or_die(const char *name, char *out, size_t len)
{
	int err = resolve(name, out, len);
	if (err == 0)
		return;
	if (strchr(name, '/'))
		die(127, "exec: \"%s\": %s", name, strerror(err));
	die(127, "exec: \"%s\": executable file not found in $PATH", name);
}

/* A pty from the container's devpts; the slave becomes our controlling terminal and stdio. */
static int make_pty(unsigned rows, unsigned cols)
{
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		die(1, "open /dev/ptmx: %s", strerror(errno));
	if (grantpt(master) < 0 || unlockpt(master) < 0)
		die(1, "unlockpt: %s", strerror(errno));
	char name[128];
	if (ptsname_r(master, name, sizeof(name)) != 0)
		die(1, "ptsname: %s", strerror(errno));
	int slave = open(name, O_RDWR | O_NOCTTY);
	if (slave < 0)
		die(1, "open %s: %s", name, strerror(errno));
	if (rows && cols) {
		struct winsize ws = {.ws_row = rows, .ws_col = cols};
		ioctl(slave, TIOCSWINSZ, &ws);
	}
	if (setsid() < 0 && errno != EPERM)
		die(1, "setsid: %s", strerror(errno));
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		die(1, "TIOCSCTTY: %s", strerror(errno));
	for (int fd = 0; fd < 3; fd++)
		if (dup2(slave, fd) < 0)
			die(1, "dup2: %s", strerror(errno));
	if (slave > 2)
		close(slave);
	return master;
}

/* One message to nexcage: text, plus an fd when fd >= 0. The kernel adds our credentials. */
static void send_message(const char *text, int fd)
{
	struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(sync_fd, &msg, MSG_NOSIGNAL) < 0)
		die(1, "cannot reach nexcage: %s", strerror(errno));
}

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static int mode_init(const char *file)
{
	size_t len = 0;
	char *data = read_file(file, &len);
	if (!data)
		die(1, "read %s: %s", file, strerror(errno));
	char *args[MAX_ARGS + 1];
	int nargs = 0, tty = 0;
	unsigned rows = 0, cols = 0;
	const char *fifo = NULL;
	for (char *p = data, *next; p < data + len; p = next) {
		next = p + strlen(p) + 1; /* before the '=' below is cut: values may hold '=' */
		char *v = strchr(p, '=');
		if (!v)
			continue;
		*v++ = '\0';
		if (!strcmp(p, "arg") && nargs < MAX_ARGS)
			args[nargs++] = v;
		else if (!strcmp(p, "sync"))
			sync_fd = atoi(v);
		else if (!strcmp(p, "fifo"))
			fifo = v;
		else if (!strcmp(p, "unset"))
			unsetenv(v);
		else if (!strcmp(p, "env"))
			putenv(v);
		else if (!strcmp(p, "umask"))
			umask((mode_t)strtoul(v, NULL, 8));
		else if (!strcmp(p, "tty"))
			tty = 1;
		else if (!strcmp(p, "rows"))
			rows = (unsigned)atoi(v);
		else if (!strcmp(p, "cols"))
			cols = (unsigned)atoi(v);
	}
	args[nargs] = NULL;
	if (nargs == 0 || !fifo)
		die(1, "%s: no process args or fifo", file);
	int master = tty ? make_pty(rows, cols) : -1;
	char path[PATH_MAX];
	resolve_or_die(args[0], path, sizeof(path));
	if (sync_fd >= 0) {
		send_message("ready", master);
		close(sync_fd);
		sync_fd = -1;
	}
	if (master >= 0)
		close(master);
	/* Blocks until `nexcage start` opens the other end. */
	int fd;
	do
		fd = open(fifo, O_WRONLY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		die(1, "open %s: %s", fifo, strerror(errno));
	if (write(fd, "0", 1) != 1)
		die(1, "write %s: %s", fifo, strerror(errno));
	close(fd);
	execve(path, args, environ);
	die(errno == ENOENT ? 127 : 126, "exec %s: %s", args[0], strerror(errno));
	return 1;
}

static int parse_groups(const char *text, gid_t *out, int max)
{
	int n = 0;
	while (*text && n < max) {
		char *end;
		out[n++] = (gid_t)strtoul(text, &end, 10);
		text = *end == ',' ? end + 1 : end;
		if (end == text && *text)
			break;
	}
	return n;
}

/* Keep only the listed capability numbers in the bounding set (runc: process.capabilities). */
static void drop_bounding(const char *keep)
{
	char have[64] = {0};
	for (const char *p = keep; *p;) {
		char *end;
		unsigned long cap = strtoul(p, &end, 10);
		if (end == p)
			break;
		if (cap < sizeof(have))
			have[cap] = 1;
		p = *end == ',' ? end + 1 : end;
	}
	for (int cap = 0; cap < (int)sizeof(have); cap++) {
		if (have[cap])
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			die(255, "drop capability %d: %s", cap, strerror(errno));
	}
}

static int mode_exec(int argc, char **argv)
{
	const char *cwd = NULL, *groups = NULL, *caps = NULL;
	long uid = 0, gid = 0;
	int tty = 0, nnp = 0, opt;
	unsigned rows = 0, cols = 0;
	mode_t mask = 022;
	int have_mask = 0;
	char **env = calloc((size_t)argc + 1, sizeof(char *));
	int nenv = 0;
	while ((opt = getopt(argc, argv, "+s:c:u:g:G:b:m:ntr:C:e:")) != -1) {
		switch (opt) {
		case 's': sync_fd = atoi(optarg); break;
		case 'c': cwd = optarg; break;
		case 'u': uid = atol(optarg); break;
		case 'g': gid = atol(optarg); break;
		case 'G': groups = optarg; break;
		case 'b': caps = optarg; break;
		case 'm': mask = (mode_t)strtoul(optarg, NULL, 8); have_mask = 1; break;
		case 'n': nnp = 1; break;
		case 't': tty = 1; break;
		case 'r': rows = (unsigned)atoi(optarg); break;
		case 'C': cols = (unsigned)atoi(optarg); break;
		case 'e': env[nenv++] = optarg; break;
		default: die(255, "exec: bad option");
		}
	}
	if (optind >= argc)
		die(255, "exec: no command");
	char **args = argv + optind;
	clearenv();
	for (int i = 0; i < nenv; i++)
		putenv(env[i]);
	int master = tty ? make_pty(rows, cols) : -1;
	gid_t gids[NGROUPS_MAX];
	int ngids = groups ? parse_groups(groups, gids, NGROUPS_MAX) : 0;
	if (setgroups((size_t)ngids, gids) < 0)
		die(255, "setgroups: %s", strerror(errno));
	if (setgid((gid_t)gid) < 0)
		die(255, "setgid %ld: %s", gid, strerror(errno));
	if (caps)
		drop_bounding(caps);
	if (setuid((uid_t)uid) < 0)
		die(255, "setuid %ld: %s", uid, strerror(errno));
	if (cwd && chdir(cwd) < 0)
		die(255, "chdir to cwd (\"%s\") set in config.json failed: %s", cwd, strerror(errno));
	if (have_mask)
		umask(mask);
	if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die(255, "no_new_privs: %s", strerror(errno));
	char path[PATH_MAX];
	int err = resolve(args[0], path, sizeof(path));
	if (err == ENOENT && !strchr(args[0], '/'))
		die(255, "exec failed: unable to start container process: exec: \"%s\": "
			 "executable file not found in $PATH", args[0]);
	if (err)
		die(255, "exec failed: unable to start container process: exec: \"%s\": %s", args[0],
		    strerror(err));
	if (sync_fd >= 0) {
		send_message("ready", master);
		fcntl(sync_fd, F_SETFD, FD_CLOEXEC);
	}
	if (master >= 0)
		close(master);
	execve(path, args, environ);
	die(255, "exec failed: unable to start container process: exec %s: %s", args[0],
	    strerror(errno));
	return 255;
}

/* -- wait mode -------------------------------------------------------------------------- */

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

static int target_pidfd = -1;

static void forward(int sig)
{
	if (target_pidfd >= 0)
		syscall(SYS_pidfd_send_signal, target_pidfd, sig, NULL, 0);
}

static int mode_wait(const char *child_text, const char *pidfd_text, const char *held)
{
	pid_t child = (pid_t)atoi(child_text);
	target_pidfd = atoi(pidfd_text);
	if (child <= 0)
		die(255, "wait: bad pid %s", child_text);
	static const int signals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
		sigaction(signals[i], &sa, NULL);
		sigaddset(&set, signals[i]);
	}
	for (const char *p = held; *p && *p != '-';) {
		char *end;
		long sig = strtol(p, &end, 10);
		if (end == p)
			break;
		forward((int)sig);
		p = *end == ',' ? end + 1 : end;
	}
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	int status = 0;
	for (;;) {
		pid_t got = waitpid(child, &status, 0);
		if (got == child)
			break;
		if (got < 0 && errno != EINTR)
			die(255, "wait for lxc-attach (%d): %s", (int)child, strerror(errno));
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 255;
}

/* -- hook mode -------------------------------------------------------------------------- */

static char rootfs[PATH_MAX];

static void under_root(char *out, size_t len, const char *path)
{
	int n = snprintf(out, len, "%s/%s", rootfs, path + (path[0] == '/'));
	if (n < 0 || (size_t)n >= len)
		die(1, "path too long: %s", path);
}

static void mask_path(const char *path)
{
	char target[PATH_MAX];
	under_root(target, sizeof(target), path);
	struct stat st;
	if (lstat(target, &st) < 0)
		return; /* runc: a masked path that does not exist is fine */
	if (S_ISDIR(st.st_mode)) {
		if (mount("tmpfs", target, "tmpfs", MS_RDONLY, "size=0k") < 0)
			die(1, "mask %s: %s", path, strerror(errno));
	} else if (mount("/dev/null", target, NULL, MS_BIND, NULL) < 0) {
		die(1, "mask %s: %s", path, strerror(errno));
	}
}

static void readonly_path(const char *path)
{
	char target[PATH_MAX];
	under_root(target, sizeof(target), path);
	if (mount(target, target, NULL, MS_BIND | MS_REC, NULL) < 0) {
		if (errno == ENOENT)
			return;
		die(1, "readonly %s: %s", path, strerror(errno));
	}
	if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL) < 0)
		die(1, "readonly %s: %s", path, strerror(errno));
}

/* "<type> <major> <minor> <mode> <uid> <gid> <path>" (runc createDeviceNode). */
static void make_device(const char *spec)
{
	char type;
	unsigned major, minor, mode, uid, gid;
	int off = 0;
	if (sscanf(spec, "%c %u %u %o %u %u %n", &type, &major, &minor, &mode, &uid, &gid, &off) < 6)
		die(1, "bad device record %s", spec);
	char target[PATH_MAX];
	under_root(target, sizeof(target), spec + off);
	mode_t kind = type == 'b' ? S_IFBLK : type == 'p' ? S_IFIFO : S_IFCHR;
	unlink(target);
	if (mknod(target, kind | (mode & 07777), makedev(major, minor)) < 0)
		die(1, "mknod %s: %s", spec + off, strerror(errno));
	if (chown(target, uid, gid) < 0)
		die(1, "chown %s: %s", spec + off, strerror(errno));
}

static int mode_hook(void)
{
	const char *config = getenv("LXC_CONFIG_FILE");
	const char *mnt = getenv("LXC_ROOTFS_MOUNT");
	if (!config || !mnt)
		die(1, "hook: LXC_CONFIG_FILE and LXC_ROOTFS_MOUNT must be set");
	snprintf(rootfs, sizeof(rootfs), "%s", mnt);
	char file[PATH_MAX];
	snprintf(file, sizeof(file), "%s", config);
	char *slash = strrchr(file, '/');
	if (!slash)
		die(1, "hook: odd LXC_CONFIG_FILE %s", config);
	snprintf(slash + 1, sizeof(file) - (size_t)(slash + 1 - file), "hook");
	size_t len = 0;
	char *data = read_file(file, &len);
	if (!data)
		die(1, "read %s: %s", file, strerror(errno));
	unsigned long propagation = 0;
	int root_ro = 0;
	/* Records: "d<device>", "m<path>" masked, "r<path>" read-only, "p<flags>", "R". */
	for (char *p = data; p < data + len; p += strlen(p) + 1) {
		switch (p[0]) {
		case 'd': make_device(p + 1); break;
		case 'm': mask_path(p + 1); break;
		case 'r': readonly_path(p + 1); break;
		case 'p': propagation = strtoul(p + 1, NULL, 10); break;
		case 'R': root_ro = 1; break;
		default: break;
		}
	}
	if (propagation && mount(NULL, rootfs, NULL, propagation, NULL) < 0)
		die(1, "rootfs propagation: %s", strerror(errno));
	if (root_ro && mount(NULL, rootfs, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
		die(1, "read-only rootfs: %s", strerror(errno));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "init"))
		return mode_init(argv[2]);
	if (argc >= 2 && !strcmp(argv[1], "exec"))
		return mode_exec(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "hook"))
		return mode_hook();
	if (argc >= 5 && !strcmp(argv[1], "wait"))
		return mode_wait(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: nexcage-lxc-init init FILE | exec [opts] -- ARGV | hook | "
			"wait PID PIDFD HELD\n");
	return 2;
}
