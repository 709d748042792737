#define _GNU_SOURCE
#include <sys/ioctl.h>
#include "CDistrSys.h"
#include <fcntl.h>
#include <malloc.h>
#include <linux/futex.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <poll.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

int cdistr_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cdistr_accept_cloexec(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

int cdistr_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int cdistr_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int cdistr_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

int cdistr_malloc_arena_max(int count) { return mallopt(M_ARENA_MAX, count); }

ssize_t cdistr_send_fd(int sock, int fd, const void *buf, size_t len) {
    return cdistr_send_fds(sock, &fd, fd >= 0 ? 1 : 0, buf, len);
}

ssize_t cdistr_send_fds(int sock, const int *fds, int nfds, const void *buf, size_t len) {
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int) * CDISTR_MAX_PASSED_FDS)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > CDISTR_MAX_PASSED_FDS) nfds = CDISTR_MAX_PASSED_FDS;
    if (nfds > 0) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL);
}

ssize_t cdistr_recv_fd(int sock, int *fd, void *buf, size_t len) {
    int fds[CDISTR_MAX_PASSED_FDS];
    ssize_t n = cdistr_recv_fds(sock, fds, buf, len);
    *fd = fds[0];
    // Only one was expected: any other that came is not left open.
    for (int i = 1; i < CDISTR_MAX_PASSED_FDS; i++)
        if (fds[i] >= 0) close(fds[i]);
    return n;
}

ssize_t cdistr_recv_fds(int sock, int *fds, void *buf, size_t len) {
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int) * CDISTR_MAX_PASSED_FDS)];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    for (int i = 0; i < CDISTR_MAX_PASSED_FDS; i++) fds[i] = -1;
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    int count = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int got[CDISTR_MAX_PASSED_FDS];
            if (k > CDISTR_MAX_PASSED_FDS) k = CDISTR_MAX_PASSED_FDS;
            memcpy(got, CMSG_DATA(c), k * sizeof(int));
            for (size_t i = 0; i < k; i++) {
                if (count < CDISTR_MAX_PASSED_FDS) fds[count++] = got[i];
                else close(got[i]);
            }
        }
    }
    return n;
}

int cdistr_memfd_create(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int cdistr_set_keepalive(int fd, int idle, int interval, int count) {
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) != 0) return -1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) != 0) return -1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval)) != 0) return -1;
    return setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
}

int cdistr_pending_bytes(int fd) {
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 ? n : -1;
}

int cdistr_unacknowledged_bytes(int fd) {
    struct tcp_info info;
    socklen_t length = sizeof info;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0 || info.tcpi_state == TCP_CLOSE) return 0;
    int n = 0;
    return ioctl(fd, SIOCOUTQ, &n) == 0 ? n : 0;
}

int cdistr_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int cdistr_limit_cpu_seconds(pid_t pid, unsigned long seconds) {
    struct rlimit limit = {.rlim_cur = seconds, .rlim_max = seconds + 1};
    return prlimit(pid, RLIMIT_CPU, &limit, NULL);
}

int cdistr_rename_noreplace(const char *from, const char *to) { return renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE); }

ssize_t cdistr_xattr_names_size(int fd) { return flistxattr(fd, NULL, 0); }

int cdistr_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cdistr_epoll_add(int epfd, int fd) {
    struct epoll_event event = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event);
}

int cdistr_epoll_arm(int epfd, int fd, int armed) {
    struct epoll_event event = {.events = armed ? (EPOLLIN | EPOLLRDHUP) : 0, .data.fd = fd};
    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &event);
}

int cdistr_epoll_del(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int cdistr_epoll_wait(int epfd, int *fds, int max, int timeout) {
    struct epoll_event events[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, events, max, timeout);
    for (int i = 0; i < n; i++) fds[i] = events[i].data.fd;
    return n;
}

int cdistr_yield(void) { return sched_yield(); }

int cdistr_poll_nanoseconds(const int *fds, int count, short events, long nanoseconds) {
    struct pollfd entries[16];
    if (count < 1 || count > 16) {
        errno = EINVAL;
        return -1;
    }
    for (int i = 0; i < count; i++) {
        entries[i].fd = fds[i];
        entries[i].events = events;
        entries[i].revents = 0;
    }
    struct timespec timeout = {nanoseconds / 1000000000L, nanoseconds % 1000000000L};
    return ppoll(entries, (nfds_t)count, &timeout, NULL);
}

void cdistr_set_thread_name(const char *name) {
    char cut[16];
    strncpy(cut, name, 15);
    cut[15] = 0;
    pthread_setname_np(pthread_self(), cut);
}

ssize_t cdistr_copy_file_range(int in, int out, size_t len) { return copy_file_range(in, NULL, out, NULL, len, 0); }

int cdistr_set_pipe_size(int fd, int size) {
    // A refusal (EPERM past the user's pipe quota, EBUSY) leaves the pipe as it was: the caller
    // reads the capacity it has either way.
    (void)fcntl(fd, F_SETPIPE_SZ, size);
    return fcntl(fd, F_GETPIPE_SZ);
}

int cdistr_usable_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
}

ssize_t cdistr_read_process_memory(int pid, void *local, size_t len, uint64_t remote) {
    struct iovec to = {.iov_base = local, .iov_len = len};
    struct iovec from = {.iov_base = (void *)(uintptr_t)remote, .iov_len = len};
    return process_vm_readv((pid_t)pid, &to, 1, &from, 1, 0);
}

ssize_t cdistr_write_process_memory(int pid, const void *local, size_t len, uint64_t remote) {
    struct iovec from = {.iov_base = (void *)local, .iov_len = len};
    struct iovec to = {.iov_base = (void *)(uintptr_t)remote, .iov_len = len};
    return process_vm_writev((pid_t)pid, &from, 1, &to, 1, 0);
}

int cdistr_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    struct timespec timeout = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
    return (int)syscall(SYS_futex, word, FUTEX_WAIT, expected, &timeout, NULL, 0);
}

int cdistr_futex_wake(uint32_t *word, int count) { return (int)syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0); }
