// lamina: write a file so that a failed or killed write never destroys the previous one:
// write `path.tmp-<pid>`, flush, fsync, rename over `path`, fsync the directory. A killed
// save leaves its `path.tmp-<pid>` behind; the next successful save of the same path removes
// those whose process is gone (remove_stale_temp_files).
#pragma once

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/error.hpp"

namespace lamina::io {

namespace detail {
/// Test hook: called before each chunk is written with the bytes written so far; a test
/// makes it throw (an injected write failure) or kill the process midway.
inline std::function<void(std::size_t)>& write_fault_hook() {
    static std::function<void(std::size_t)> hook;
    return hook;
}
/// The pid in a directory entry named exactly `<prefix><digits>` (decimal as std::to_string
/// writes it: no sign, no leading zero, at most INT_MAX), else 0.
inline long temp_file_pid(const char* entry, const std::string& prefix) {
    if (std::strncmp(entry, prefix.c_str(), prefix.size()) != 0) return 0;
    const char* d = entry + prefix.size();
    if (*d < '1' || *d > '9') return 0;
    long pid = 0;
    for (; *d; ++d) {
        if (*d < '0' || *d > '9') return 0;
        const int digit = *d - '0';
        if (pid > (INT_MAX - digit) / 10) return 0;  // checked before it could overflow
        pid = pid * 10 + digit;
    }
    return pid;
}
}  // namespace detail

/// Removes `<path>.tmp-<pid>` files left by killed saves of `path`: only names of exactly that
/// form, only regular files, only when kill(pid, 0) fails with ESRCH (no such process here) and
/// no one holds the file's lock (write_file_atomically locks its temporary file, so a writer on
/// another host of a shared file system, whose pid means nothing here, keeps its file where the
/// file system supports flock). Best effort: errors are ignored.
inline void remove_stale_temp_files(const std::string& path) noexcept {
    try {
        const std::size_t slash = path.find_last_of('/');
        const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
        const std::string dir_prefix = slash == std::string::npos ? "" : path.substr(0, slash + 1);
        const std::string prefix = path.substr(slash == std::string::npos ? 0 : slash + 1) + ".tmp-";
        std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
        if (!d) return;
        const long self = static_cast<long>(::getpid());
        while (const dirent* e = ::readdir(d.get())) {
            const long pid = detail::temp_file_pid(e->d_name, prefix);
            if (pid <= 0 || pid == self) continue;
            if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
            const std::string file = dir_prefix + e->d_name;
            int fd = ::open(file.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
            if (fd < 0) continue;
            struct stat st;
            const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
            const bool locked = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
            if (regular && !locked) ::unlink(file.c_str());
            ::close(fd);
        }
    } catch (...) {
        // Only std::string allocation can throw here; cleanup is never worth failing a save.
    }
}

inline void write_file_atomically(const std::string& path, const void* data, std::size_t n) {
    std::string tmp = path + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw io_error("lamina: cannot create '" + tmp + "': " + std::strerror(errno));
    // Held until close: tells remove_stale_temp_files of other processes that this file is live.
    (void)::flock(fd, LOCK_EX | LOCK_NB);
    auto error_for = [&](const std::string& what) {
        return io_error("lamina: " + what + " '" + tmp + "' (for '" + path + "'): " + std::strerror(errno) +
                        "; the previous file is untouched");
    };
    auto p = static_cast<const char*>(data);
    std::size_t done = 0;
    const std::size_t chunk = std::size_t(1) << 20;
    try {
        while (done < n) {
            if (auto& hook = detail::write_fault_hook()) hook(done);
            std::size_t k = std::min(chunk, n - done);
            ssize_t w = ::write(fd, p + done, k);
            if (w < 0) {
                if (errno == EINTR) continue;
                throw error_for("write failed on");
            }
            done += static_cast<std::size_t>(w);
        }
        if (::fsync(fd) != 0) throw error_for("fsync failed on");
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::close(fd) != 0) {
        ::unlink(tmp.c_str());
        throw io_error("lamina: closing '" + tmp + "' failed: " + std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        throw io_error("lamina: cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(e));
    }
    // Make the rename itself durable.
    std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.find_last_of('/'));
    if (dir.empty()) dir = "/";
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    remove_stale_temp_files(path);
}

}  // namespace lamina::io
