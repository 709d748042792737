#ifndef CDISTRSYS_H
#define CDISTRSYS_H

#include <spawn.h>
#include <stdint.h>
#include <sys/types.h>

#include "CDistrSHA256.h"

/// pipe2(fds, O_CLOEXEC).
int cdistr_pipe_cloexec(int fds[2]);
/// accept4(fd, NULL, NULL, SOCK_CLOEXEC).
int cdistr_accept_cloexec(int fd);
/// posix_spawn_file_actions_addchdir_np.
int cdistr_spawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);
/// prctl(PR_SET_CHILD_SUBREAPER, 1).
int cdistr_set_child_subreaper(void);
/// prctl(PR_SET_PDEATHSIG, sig).
int cdistr_set_parent_death_signal(int sig);
/// mallopt(M_ARENA_MAX, count): 1 on success, 0 on error.
int cdistr_malloc_arena_max(int count);
/// Sends `len` bytes and one descriptor over a Unix socket (SCM_RIGHTS). Returns bytes sent or -1.
ssize_t cdistr_send_fd(int sock, int fd, const void *buf, size_t len);
/// Receives up to `len` bytes and at most one descriptor (set to -1 when none came, close-on-exec
/// when one did). Returns bytes received, 0 at end of stream, or -1.
ssize_t cdistr_recv_fd(int sock, int *fd, void *buf, size_t len);
/// The most descriptors one message carries (`cdistr_send_fds`, `cdistr_recv_fds`).
#define CDISTR_MAX_PASSED_FDS 2
/// Sends `len` bytes and `nfds` descriptors (at most CDISTR_MAX_PASSED_FDS) in one message.
ssize_t cdistr_send_fds(int sock, const int *fds, int nfds, const void *buf, size_t len);
/// Receives up to `len` bytes and up to CDISTR_MAX_PASSED_FDS descriptors into `fds` (unused
/// entries -1; close-on-exec; descriptors beyond the limit are closed). Returns bytes received,
/// 0 at end of stream, or -1.
ssize_t cdistr_recv_fds(int sock, int *fds, void *buf, size_t len);
/// memfd_create(name, MFD_CLOEXEC).
int cdistr_memfd_create(const char *name);
/// memcpy with non-temporal stores on x86-64 (the destination's lines are not read into the
/// cache first): for large copies whose destination is not read again soon. memcpy elsewhere.
void cdistr_copy_streaming(void *destination, const void *source, size_t count);
/// process_vm_readv of one range: `len` bytes at `remote` in process `pid` into `local`.
/// Returns the bytes copied (fewer when the remote range ends in unmapped memory) or -1.
ssize_t cdistr_read_process_memory(int pid, void *local, size_t len, uint64_t remote);
/// process_vm_writev of one range: `len` bytes of `local` to `remote` in process `pid`.
/// Returns the bytes copied (fewer when the remote range ends in unmapped memory) or -1.
ssize_t cdistr_write_process_memory(int pid, const void *local, size_t len, uint64_t remote);

/// Atomic accesses to memory shared with another process (a shared-memory ring's indices).
static inline uint64_t cdistr_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void cdistr_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t cdistr_load_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void cdistr_store_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t cdistr_exchange_u32(uint32_t *p, uint32_t v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
/// A full fence: a store before it is seen by the other process before any load after it.
static inline void cdistr_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
/// A hint to the CPU inside a spin loop.
static inline void cdistr_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// futex(FUTEX_WAIT) on a word that may live in memory shared with another process (so not
/// FUTEX_PRIVATE_FLAG): sleeps while `*word == expected`, at most `timeout_ns` nanoseconds.
/// Returns 0 when woken, or -1 with errno (EAGAIN: the word differed; ETIMEDOUT; EINTR).
int cdistr_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns);
/// futex(FUTEX_WAKE): wakes at most `count` threads waiting on `word`. Returns how many, or -1.
int cdistr_futex_wake(uint32_t *word, int count);

/// Bytes received on a socket and not yet read (FIONREAD), or -1.
int cdistr_pending_bytes(int fd);

/// Bytes written to a TCP socket and not acknowledged yet (ioctl SIOCOUTQ); 0 when the
/// connection is closed (TCP_INFO) or it cannot be told.
int cdistr_unacknowledged_bytes(int fd);

/// TCP keepalive with the given idle, interval and probe count.
int cdistr_set_keepalive(int fd, int idle, int interval, int count);

/// Starts `path` (a full path) with vfork and execve: its own process group, every signal
/// disposition default, an empty signal mask, `fd_sources[i]` as descriptor `fd_targets[i]`
/// (at most 16), stdin from /dev/null when `stdin_devnull`, working directory `dir` (NULL:
/// unchanged), `parent_death_signal` (0: none) sent to it when the spawning thread ends, and,
/// when `cgroup_dir_fd` >= 0 (an open cgroup v2 directory), started inside that cgroup
/// (clone3 with CLONE_INTO_CGROUP), or where clone3 cannot do that, moved into it through
/// `cgroup_procs_fd` (its open `cgroup.procs`, if >= 0) before exec.
/// Returns the pid, or -1 with errno set (the exec's errno when the program could not start).
pid_t cdistr_spawn(const char *path, char *const argv[], char *const envp[], const char *dir, const int *fd_sources,
                   const int *fd_targets, int fd_count, int stdin_devnull, int parent_death_signal,
                   int cgroup_procs_fd, int cgroup_dir_fd);

/// pidfd_open(pid, 0): a descriptor that becomes readable when the process exits.
int cdistr_pidfd_open(pid_t pid);
/// prlimit(pid, RLIMIT_CPU): SIGXCPU at `seconds` of CPU time, SIGKILL a second later; 0 or -1
/// with errno.
int cdistr_limit_cpu_seconds(pid_t pid, unsigned long seconds);
/// `renameat2(RENAME_NOREPLACE)`: 0, or -1 with errno (EEXIST when `to` exists).
int cdistr_rename_noreplace(const char *from, const char *to);
/// `flistxattr(fd, NULL, 0)`: the size of the names of the file's extended attributes (0: none).
ssize_t cdistr_xattr_names_size(int fd);

/// epoll_create1(EPOLL_CLOEXEC).
int cdistr_epoll_create(void);
/// epoll_ctl(ADD, MOD or DEL) for read readiness; `armed` 0 leaves the fd registered but silent.
/// The event data is the descriptor itself.
int cdistr_epoll_add(int epfd, int fd);
int cdistr_epoll_arm(int epfd, int fd, int armed);
int cdistr_epoll_del(int epfd, int fd);
/// epoll_wait; fills `fds` with the ready descriptors.
int cdistr_epoll_wait(int epfd, int *fds, int max, int timeout);
/// CPUs this process may run on (sched_getaffinity, CPU_COUNT), or -1.
int cdistr_usable_cpus(void);
/// sched_yield.
int cdistr_yield(void);

/// ppoll on `count` descriptors for `events` (POLLIN or POLLOUT), waiting at most `nanoseconds`
/// (a finer timeout than poll's milliseconds); returns how many are ready, 0 on timeout.
int cdistr_poll_nanoseconds(const int *fds, int count, short events, long nanoseconds);

/// pthread_setname_np(pthread_self(), name) (names longer than 15 bytes are cut).
void cdistr_set_thread_name(const char *name);

/// copy_file_range(in, NULL, out, NULL, len, 0).
ssize_t cdistr_copy_file_range(int in, int out, size_t len);

/// fcntl(fd, F_SETPIPE_SZ, size), then fcntl(fd, F_GETPIPE_SZ): the pipe's capacity in bytes
/// afterwards, or -1 (errno set) when it could not be read.
int cdistr_set_pipe_size(int fd, int size);

#endif
