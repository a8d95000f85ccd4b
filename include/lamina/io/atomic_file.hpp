// lamina: write a file so that a failed or killed write never destroys the previous one:
// write `path.tmp-<pid>`, flush, fsync, rename over `path`, fsync the directory.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

#include <fcntl.h>
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
}  // namespace detail

inline void write_file_atomically(const std::string& path, const void* data, std::size_t n) {
    std::string tmp = path + ".tmp-" + std::to_string(static_cast<long>(::getpid()));
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw io_error("lamina: cannot create '" + tmp + "': " + std::strerror(errno));
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
}

}  // namespace lamina::io
