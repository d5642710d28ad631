/* The floor of the boot row ("smss's own work less module loading"), for bench/boot.py: the
 * kernel work of smss's own-work phases in the demo image (initramfs/smss.toml on the disk
 * initramfs/build.sh makes), done as directly as the kernel allows, as /init of the same image.
 * No configuration is parsed (the file is only read), nothing is validated, no uevent is
 * awaited (the disk's node exists once virtio_blk's finit_module returns), and the only console
 * output is what interface.md section 7 asks for: one "phase NAME done in N us" line per phase,
 * to the console and /dev/kmsg. Module loading (the demo's coldplug result and the volume's file
 * system, hard-coded here) is timed apart and left out, as the row leaves it out.
 *
 * In order: every signal blocked, the 7 early mounts (the mount table read once, after /proc), the console and kmsg
 * opened, printk_devkmsg, /etc/hostname and sethostname, /proc/cmdline, the configuration file
 * read; an epoll with a signalfd and the control socket (/run/smss/control, listening, mode
 * 0666); the volume: /sys/class/block listed, the disk's size and superblock read, mounted
 * read-only (noatime); the object directories (umask 022); the 7 dos-device symlinks (each made
 * under a temporary name and renamed over); /run/smss/sessions; the remount read-write; the
 * 4-entry rename queue (flock, claim by rename, directory fsync, read, 3 renameat2 (one
 * replacing, one refused with EEXIST) and an unlink, the claimed file removed, directory
 * fsync); the generated environment file (uname, cpuinfo, written, fsynced, renamed into place,
 * directory fsynced). Then one line, "bootfloor: own work N us, lines L us, modules M us (file
 * systems F us), K failed" (K: calls that failed where smss's do not), and power off. Not an
 * init to use. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/reboot.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/epoll.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static int console = -1, kmsg = -1;
static long long lines_us, modules_us, fs_us;
/* calls that failed where smss's would not: a floor that skipped work would be no floor */
static int failed;
#define CHK(call) ((call) < 0 ? failed++ : 0)

static long long now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

static void line(const char *text)
{
    char buf[256];
    long long t = now_us();
    int n = snprintf(buf, sizeof buf, "<7>smss[1]: %s\n", text);
    if (console >= 0 && write(console, buf + 3, n - 3) < 0)
        ;
    if (kmsg >= 0 && write(kmsg, buf, n) < 0)
        ;
    lines_us += now_us() - t;
}

static long long phase_start;

static void phase_done(const char *name)
{
    char buf[128];
    snprintf(buf, sizeof buf, "phase %s done in %lld us", name, now_us() - phase_start);
    line(buf);
    phase_start = now_us();
}

static void mkdirs(const char *path, mode_t mode)
{
    char p[256];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, mode);
            *s = '/';
        }
    mkdir(p, mode);
}

static ssize_t read_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    if (fd < 0)
        return -1;
    n = read(fd, buf, len);
    close(fd);
    return n;
}

static void load(const char *rel)
{
    static char dir[128];
    char path[256];
    long long t = now_us();
    int fd;
    if (!dir[0]) {
        struct utsname u;
        uname(&u);
        snprintf(dir, sizeof dir, "/lib/modules/%s", u.release);
    }
    snprintf(path, sizeof path, "%s/kernel/%s.ko", dir, rel);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
            failed++;
        close(fd);
    }
    modules_us += now_us() - t;
}

static void fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHK(fd);
    if (fd >= 0) {
        CHK(fsync(fd));
        close(fd);
    }
}

/* The parent of `path`, opened without following a symlink (what smss's hardened walk gets). */
static int parent(const char *path, const char **name)
{
    char dir[256];
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    *name = slash + 1;
    return syscall(SYS_openat2, AT_FDCWD, dir[0] ? dir : "/", &how, sizeof how);
}

static void queue_rename(const char *from, const char *to, int noreplace)
{
    const char *a, *b;
    int fa = parent(from, &a), fb = parent(to, &b);
    long r = syscall(SYS_renameat2, fa, a, fb, b, noreplace ? RENAME_NOREPLACE : 0);
    /* keep.new -> keep is refused (keep exists): the demo's queue asks for that */
    if (r < 0 && !(noreplace && errno == EEXIST && strstr(to, "/keep")))
        failed++;
    close(fa);
    close(fb);
}

int main(void)
{
    static const struct {
        const char *src, *dst, *type, *data;
        unsigned long flags;
    } early[] = {
        {"proc", "/proc", "proc", "", MS_NOSUID | MS_NODEV | MS_NOEXEC},
        {"sysfs", "/sys", "sysfs", "", MS_NOSUID | MS_NODEV | MS_NOEXEC},
        {"devtmpfs", "/dev", "devtmpfs", "mode=0755", MS_NOSUID},
        {"devpts", "/dev/pts", "devpts", "gid=5,mode=620,ptmxmode=666", MS_NOSUID | MS_NOEXEC},
        {"tmpfs", "/dev/shm", "tmpfs", "mode=1777", MS_NOSUID | MS_NODEV},
        {"tmpfs", "/run", "tmpfs", "mode=0755", MS_NOSUID | MS_NODEV},
        {"cgroup2", "/sys/fs/cgroup", "cgroup2", "nsdelegate", MS_NOSUID | MS_NODEV | MS_NOEXEC},
    };
    static const char *links[][2] = {
        {"/run/smss/dosdevices/C:", "/"},
        {"/run/smss/dosdevices/D:", "/var"},
        {"/run/smss/dosdevices/NUL", "/dev/null"},
        {"/run/smss/dosdevices/CON", "/dev/console"},
        {"/run/smss/dosdevices/COM1", "/dev/ttyS0"},
        {"/run/smss/dosdevices/COM2", "/dev/ttyS1"},
        {"/dev/disk-var", "/dev/vda"},
    };
    static char buf[65536];
    const char *q = "/var/lib/smss/pending-renames", *qp = "/var/lib/smss/pending-renames.processing";
    const char *demo = "/var/lib/smss/demo/";
    char tmp[256], a[256], b[256];
    struct stat st;
    struct utsname u;
    struct sockaddr_un addr = {.sun_family = AF_UNIX, .sun_path = "/run/smss/control"};
    struct epoll_event ev = {.events = EPOLLIN};
    sigset_t all;
    long long start = now_us(), own;
    ssize_t n;
    int fd, i;

    phase_start = start;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (i = 0; i < 7; i++) {
        if (i == 1)
            read_file("/proc/self/mounts", buf, sizeof buf);
        mkdirs(early[i].dst, 0755);
        CHK(mount(early[i].src, early[i].dst, early[i].type, early[i].flags, early[i].data));
    }
    console = open("/dev/console", O_WRONLY | O_NONBLOCK | O_NOCTTY | O_APPEND | O_CLOEXEC);
    kmsg = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    fd = open("/proc/sys/kernel/printk_devkmsg", O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && write(fd, "on\n", 3) < 0)
        ;
    close(fd);
    phase_done("early-mounts");
    n = read_file("/etc/hostname", buf, 64);
    if (n > 0)
        sethostname(buf, strcspn(buf, "\n"));
    read_file("/proc/cmdline", buf, sizeof buf);
    fd = open("/etc/smss/smss.toml", O_RDONLY | O_CLOEXEC);
    fstat(fd, &st);
    if (read(fd, buf, sizeof buf) < 0)
        ;
    close(fd);
    /* the event loop: a signalfd and the control socket (interface.md section 4) in an epoll */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int sfd = signalfd(-1, &all, SFD_NONBLOCK | SFD_CLOEXEC);
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
    mkdirs("/run/smss", 0755);
    int ctl = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHK(bind(ctl, (struct sockaddr *)&addr, sizeof addr));
    CHK(listen(ctl, 128));
    chmod(addr.sun_path, 0666);
    epoll_ctl(ep, EPOLL_CTL_ADD, ctl, &ev);

    /* boot-drivers: what coldplug loads in the demo (the row leaves the phase out) */
    load("drivers/virtio/virtio_ring");
    load("drivers/virtio/virtio");
    load("drivers/virtio/virtio_pci_modern_dev");
    load("drivers/virtio/virtio_pci_legacy_dev");
    load("drivers/virtio/virtio_pci");
    load("drivers/block/virtio_blk");
    phase_start = now_us();

    /* volumes: find LABEL=smssvar, load its file system (left out), mount it read-only */
    DIR *d = opendir("/sys/class/block");
    struct dirent *e;
    while (d && (e = readdir(d)))
        ;
    if (d)
        closedir(d);
    read_file("/sys/class/block/vda/size", buf, 64);
    fd = open("/dev/vda", O_RDONLY | O_CLOEXEC);
    if (pread(fd, buf, 1024, 1024) < 0)
        ;
    close(fd);
    read_file("/sys/class/block/vda/partition", buf, 64);
    fs_us = modules_us;
    load("crypto/crc32c_generic");
    load("fs/jbd2/jbd2");
    load("fs/mbcache");
    load("lib/crc16");
    load("fs/ext4/ext4");
    fs_us = modules_us - fs_us;
    mkdirs("/var", 0755);
    read_file("/proc/self/mounts", buf, sizeof buf);
    CHK(mount("/dev/vda", "/var", "ext4", MS_RDONLY | MS_NOATIME, ""));
    phase_done("volumes");

    umask(022);
    mkdirs("/run/smss/objects", 0755);
    mkdirs("/run/smss/objects/BaseNamedObjects", 0755);
    phase_done("object-directories");
    phase_done("environment");
    mkdirs("/run/smss/dosdevices", 0755);
    for (i = 0; i < 7; i++) {
        const char *slash = strrchr(links[i][0], '/');
        snprintf(tmp, sizeof tmp, "%.*s/.%s.tmp", (int)(slash - links[i][0]), links[i][0], slash + 1);
        unlink(tmp);
        CHK(symlink(links[i][1], tmp));
        CHK(rename(tmp, links[i][0]));
    }
    phase_done("dos-devices");
    mkdirs("/run/smss/sessions", 0755);
    phase_done("sessions-directory");

    /* (boot-execute: commands, left out) */
    phase_start = now_us();
    CHK(mount(NULL, "/var", "ext4", MS_REMOUNT | MS_NOATIME, ""));
    phase_done("volumes-read-write");

    lstat(qp, &st);
    fd = open(q, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    CHK(flock(fd, LOCK_EX | LOCK_NB));
    CHK(rename(q, qp));
    fsync_dir("/var/lib/smss");
    close(fd);
    fd = open(qp, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    fstat(fd, &st);
    while (read(fd, buf, sizeof buf) > 0)
        ;
    close(fd);
    snprintf(a, sizeof a, "%srenamed.new", demo), snprintf(b, sizeof b, "%srenamed", demo);
    queue_rename(a, b, 1);
    snprintf(a, sizeof a, "%sreplacement", demo), snprintf(b, sizeof b, "%sreplaced", demo);
    queue_rename(a, b, 0);
    {
        const char *name;
        snprintf(a, sizeof a, "%sobsolete", demo);
        fd = parent(a, &name);
        CHK(unlinkat(fd, name, 0));
        close(fd);
    }
    snprintf(a, sizeof a, "%skeep.new", demo), snprintf(b, sizeof b, "%skeep", demo);
    queue_rename(a, b, 1);
    CHK(unlink(qp));
    fsync_dir("/var/lib/smss");
    phase_done("pending-renames");

    /* (paging-files: the swap file, left out) */
    phase_start = now_us();
    uname(&u);
    sysconf(_SC_NPROCESSORS_ONLN);
    read_file("/proc/cpuinfo", buf, sizeof buf);
    mkdirs("/run/smss", 0755);
    fd = open("/run/smss/.environment.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    n = snprintf(buf, sizeof buf,
                 "PATH=/usr/sbin:/usr/bin:/sbin:/bin\nTEMP=/tmp\nTMP=/tmp\nSMSS_VAR=/var/lib/smss\n"
                 "SMSS_DEMO=/var/lib/smss/demo\nSMSS_UNDEFINED=%%NOT_DEFINED%%/stays\nTERM=vt100\n"
                 "OS=Linux\nPROCESSOR_ARCHITECTURE=%s\nNUMBER_OF_PROCESSORS=1\n", u.machine);
    CHK(write(fd, buf, n));
    CHK(fsync(fd));
    close(fd);
    CHK(rename("/run/smss/.environment.tmp", "/run/smss/environment"));
    fsync_dir("/run/smss");
    phase_done("generated-environment");

    own = now_us() - start - modules_us;
    snprintf(buf, sizeof buf,
             "bootfloor: own work %lld us, lines %lld us, modules %lld us (file systems %lld us), "
             "%d failed\n",
             own, lines_us, modules_us, fs_us, failed);
    if (write(console, buf, strlen(buf)) < 0)
        ;
    sync();
    reboot(LINUX_REBOOT_CMD_POWER_OFF);
    return 0;
}
