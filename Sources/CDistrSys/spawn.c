#define _GNU_SOURCE
#include "CDistrSys.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
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

// What the child does between its birth and execve. Only async-signal-safe system calls run
// here, on the parent's memory. Returns only on failure, with errno set.
static void child_exec(const char *path, char *const argv[], char *const envp[], const char *dir, const int *fd_sources,
                       const int *fd_targets, int fd_count, int stdin_devnull, int parent_death_signal, int cgroup_procs_fd,
                       pid_t parent) {
    struct kernel_sigaction dfl = {SIG_DFL, 0, NULL, 0};
    // Ignored signals (SIGPIPE in the worker) stay ignored across exec: give them back.
    for (int s = 1; s < NSIG; s++) {
        if (s != SIGKILL && s != SIGSTOP) syscall(SYS_rt_sigaction, s, &dfl, NULL, sizeof(unsigned long));
    }
    if (setpgid(0, 0) != 0) return;
    // Join the job's cgroup before the program runs: nothing it starts can be outside.
    if (cgroup_procs_fd >= 0 && write(cgroup_procs_fd, "0", 1) != 1) return;
    if (parent_death_signal > 0) {
        if (prctl(PR_SET_PDEATHSIG, parent_death_signal, 0, 0, 0) != 0) return;
        // The parent may have died before the request took effect.
        if (getppid() != parent) {
            errno = ESRCH;
            return;
        }
    }
    // Move every source above every target first (close-on-exec), so that no dup2 below
    // overwrites a source that is still needed.
    int moved[16];
    if (fd_count > 16) {
        errno = EMFILE;
        return;
    }
    int floor = 3;
    for (int i = 0; i < fd_count; i++) floor = fd_targets[i] >= floor ? fd_targets[i] + 1 : floor;
    for (int i = 0; i < fd_count; i++) {
        moved[i] = fcntl(fd_sources[i], F_DUPFD_CLOEXEC, floor);
        if (moved[i] < 0) return;
    }
    if (stdin_devnull) {
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0) return;
    }
    // dup2 clears close-on-exec on the target.
    for (int i = 0; i < fd_count; i++) {
        if (dup2(moved[i], fd_targets[i]) < 0) return;
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
    if (dir != NULL && chdir(dir) != 0) return;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(path, argv, envp);
}

// The kernel's struct clone_args up to `cgroup` (clone3 takes its size, so older headers and
// newer kernels agree).
struct cdistr_clone_args {
    unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
        cgroup;
};
#define CDISTR_CLONE_VM 0x00000100ULL
#define CDISTR_CLONE_VFORK 0x00004000ULL
#define CDISTR_CLONE_INTO_CGROUP 0x200000000ULL

// clone3 as vfork uses it: the child runs on the parent's memory and stack until it calls
// execve or _exit, while the parent waits. Returns the raw result (the pid, 0 in the child, or
// -errno). Like glibc's vfork it is written in assembly: the child must not leave a return
// address on the shared stack that the parent would then return through. On x86-64 the
// return address is popped into a register that the system call preserves and pushed back
// after it (as glibc's vfork does); on AArch64 it stays in the link register, which is the
// child's own. No shadow stack is involved: Swift binaries are not built for one.
#if defined(__x86_64__) || defined(__aarch64__)
#define CDISTR_HAVE_CLONE3_VFORK 1
long cdistr_clone3_vfork(struct cdistr_clone_args *args, unsigned long size) __attribute__((returns_twice));
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl cdistr_clone3_vfork\n"
        ".hidden cdistr_clone3_vfork\n"
        ".type cdistr_clone3_vfork,@function\n"
        "cdistr_clone3_vfork:\n"
        "    popq %rdx\n"
        "    movl $435, %eax\n"
        "    syscall\n"
        "    pushq %rdx\n"
        "    ret\n"
        ".size cdistr_clone3_vfork, .-cdistr_clone3_vfork\n");
#else
__asm__(".text\n"
        ".globl cdistr_clone3_vfork\n"
        ".hidden cdistr_clone3_vfork\n"
        ".type cdistr_clone3_vfork,%function\n"
        "cdistr_clone3_vfork:\n"
        "    mov x8, #435\n"
        "    svc #0\n"
        "    ret\n"
        ".size cdistr_clone3_vfork, .-cdistr_clone3_vfork\n");
#endif
#endif

// The child side of a spawn cannot be written in Swift: between vfork and exec only
// async-signal-safe system calls may run, on the parent's memory. Everything else (the PATH
// search, the argument arrays, the bookkeeping) is done in Swift by the caller.
//
// With a cgroup directory the child is born inside the cgroup (clone3 with
// CLONE_INTO_CGROUP). Writing its pid to `cgroup.procs` instead migrates it, and the kernel
// makes a migration wait for an RCU grace period under a lock shared by the whole machine:
// milliseconds per rank, one rank after another across every worker of the machine. Where
// clone3 cannot do it (an old kernel, a seccomp filter, another architecture) the child is
// started with vfork and moves itself through `cgroup_procs_fd`.
pid_t cdistr_spawn(const char *path, char *const argv[], char *const envp[], const char *dir, const int *fd_sources,
                   const int *fd_targets, int fd_count, int stdin_devnull, int parent_death_signal, int cgroup_procs_fd,
                   int cgroup_dir_fd) {
    sigset_t all, old;
    sigfillset(&all);
    // Blocked around the fork so that no handler of the parent's runs in the child.
    pthread_sigmask(SIG_SETMASK, &all, &old);
    volatile int child_errno = 0;
    pid_t parent = getpid();
    long pid = -ENOSYS;
#ifdef CDISTR_HAVE_CLONE3_VFORK
    if (cgroup_dir_fd >= 0) {
        struct cdistr_clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = CDISTR_CLONE_VM | CDISTR_CLONE_VFORK | CDISTR_CLONE_INTO_CGROUP;
        args.exit_signal = SIGCHLD;
        args.cgroup = (unsigned long long)cgroup_dir_fd;
        pid = cdistr_clone3_vfork(&args, sizeof args);
        if (pid == 0) {
            child_exec(path, argv, envp, dir, fd_sources, fd_targets, fd_count, stdin_devnull, parent_death_signal, -1,
                       parent);
            child_errno = errno;
            _exit(127);
        }
    }
#endif
    // ENOSYS: no clone3 (or filtered); E2BIG or EINVAL: a kernel before CLONE_INTO_CGROUP
    // (5.7); EPERM: a filter that refuses rather than hides it.
    if (pid == -ENOSYS || pid == -E2BIG || pid == -EINVAL || pid == -EPERM) {
        pid = vfork();
        if (pid == 0) {
            child_exec(path, argv, envp, dir, fd_sources, fd_targets, fd_count, stdin_devnull, parent_death_signal,
                       cgroup_procs_fd, parent);
            child_errno = errno;
            _exit(127);
        }
        if (pid < 0) pid = -errno;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        errno = (int)-pid;
        return -1;
    }
    if (child_errno != 0) {
        // The child has exited; whoever reaps children of this process collects it.
        errno = child_errno;
        return -1;
    }
    return (pid_t)pid;
}
