/* The floor of a graceful stop, for bench/stop_ab.py: the least an init can do to end a pid
 * namespace whose processes exit on SIGTERM. Runs argv[1..] as its child; on SIGTERM sends
 * kill(-1, SIGTERM) (one syscall for everyone; no /proc, no sparing of the command), reaps
 * until ECHILD and exits with the command's status. `stopfloor --exit CMD...` exits at once
 * instead (what tini and catatonit do: the kernel SIGKILLs the rest). Not an
 * init to use: no forwarding, no grace period, no SIGKILL, no error handling to speak of. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    sigset_t set;
    int sig, st, code = 0;
    pid_t child, p;
    int at_once = argc > 1 && strcmp(argv[1], "--exit") == 0;
    if (at_once)
        argv++, argc--;
    if (argc > 1 && strcmp(argv[1], "--") == 0)
        argv++, argc--;
    if (argc < 2)
        return 2;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    child = fork();
    if (child == 0) {
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            return 1;
        if (sig == SIGTERM)
            break;
        while ((p = waitpid(-1, &st, WNOHANG)) > 0)
            if (p == child)
                code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    if (at_once)
        return 143;
    kill(-1, SIGTERM);
    while ((p = waitpid(-1, &st, 0)) > 0)
        if (p == child)
            code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return code;
}
