#define _GNU_SOURCE
#include "CDistrSys.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// The kernel's struct sigaction (the same field order on x86_64 and aarch64). glibc's
// sigaction refuses the signals it reserves (32, 33), but an ignored one stays ignored across
// exec, so every disposition is reset with the system call itself.
struct kernel_sigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};

// Marks descriptors `first`..`last` close-on-exec; ignores kernels without close_range (every
// descriptor distr opens is close-on-exec already; this catches those other code opened).
static void cloexec_range(unsigned int first, unsigned int last) {
    if (first <= last) syscall(SYS_close_range, first, last, CLOSE_RANGE_CLOEXEC);
}

// The child side of a spawn cannot be written in Swift: between vfork and exec only
// async-signal-safe system calls may run, on the parent's memory. Everything else (the PATH
// search, the argument arrays, the bookkeeping) is done in Swift by the caller.
pid_t cdistr_spawn(const char *path, char *const argv[], char *const envp[], const char *dir, const int *fd_sources,
                   const int *fd_targets, int fd_count, int stdin_devnull, int parent_death_signal, int cgroup_procs_fd) {
    sigset_t all, old;
    sigfillset(&all);
    // Blocked around vfork so that no handler of the parent's runs in the child.
    pthread_sigmask(SIG_SETMASK, &all, &old);
    volatile int child_errno = 0;
    pid_t parent = getpid();
    pid_t pid = vfork();
    if (pid == 0) {
        struct kernel_sigaction dfl = {SIG_DFL, 0, NULL, 0};
        // Ignored signals (SIGPIPE in the worker) stay ignored across exec: give them back.
        for (int s = 1; s < NSIG; s++) {
            if (s != SIGKILL && s != SIGSTOP) syscall(SYS_rt_sigaction, s, &dfl, NULL, sizeof(unsigned long));
        }
        if (setpgid(0, 0) != 0) goto fail;
        // Join the job's cgroup before the program runs: nothing it starts can be outside.
        if (cgroup_procs_fd >= 0 && write(cgroup_procs_fd, "0", 1) != 1) goto fail;
        if (parent_death_signal > 0) {
            if (prctl(PR_SET_PDEATHSIG, parent_death_signal, 0, 0, 0) != 0) goto fail;
            // The parent may have died before the request took effect.
            if (getppid() != parent) {
                errno = ESRCH;
                goto fail;
            }
        }
        // Move every source above every target first (close-on-exec), so that no dup2 below
        // overwrites a source that is still needed.
        int moved[16];
        if (fd_count > 16) {
            errno = EMFILE;
            goto fail;
        }
        int floor = 3;
        for (int i = 0; i < fd_count; i++) floor = fd_targets[i] >= floor ? fd_targets[i] + 1 : floor;
        for (int i = 0; i < fd_count; i++) {
            moved[i] = fcntl(fd_sources[i], F_DUPFD_CLOEXEC, floor);
            if (moved[i] < 0) goto fail;
        }
        if (stdin_devnull) {
            int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (null < 0 || dup2(null, 0) < 0) goto fail;
        }
        // dup2 clears close-on-exec on the target.
        for (int i = 0; i < fd_count; i++) {
            if (dup2(moved[i], fd_targets[i]) < 0) goto fail;
        }
        // Nothing but the listed descriptors reaches the program, whoever opened the others.
        unsigned int next = 3;
        for (int pass = 0; pass < fd_count + 1; pass++) {
            unsigned int lowest = ~0U;
            for (int i = 0; i < fd_count; i++) {
                if ((unsigned int)fd_targets[i] >= next && (unsigned int)fd_targets[i] < lowest) lowest = fd_targets[i];
            }
            if (lowest == ~0U) {
                cloexec_range(next, ~0U);
                break;
            }
            if (lowest > next) cloexec_range(next, lowest - 1);
            next = lowest + 1;
        }
        if (dir != NULL && chdir(dir) != 0) goto fail;
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, envp);
    fail:
        child_errno = errno;
        _exit(127);
    }
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        errno = saved;
        return -1;
    }
    if (child_errno != 0) {
        // The child has exited; whoever reaps children of this process collects it.
        errno = child_errno;
        return -1;
    }
    return pid;
}
