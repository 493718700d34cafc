// SPDX-License-Identifier: MIT
#include "access_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "bridge/detail/os/unique_fd.hpp"
#include "log.hpp"

namespace bridged {

namespace protocol = bridge::protocol;
using bridge::os::UniqueFd;

namespace {

bool write_all(int fd, const std::string& text) {
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

std::string directory_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

AccessStore::Records AccessStore::load() const {
  Records records;
  std::ifstream in(path_);
  if (!in) return records;
  const nlohmann::json state = nlohmann::json::parse(in, nullptr, false);
  if (!state.is_object()) {
    log_warn(path_ + " is unreadable; every segment is now owned by the daemon's user");
    return records;
  }
  for (const auto& [key, value] : state.items()) {
    try {
      Record record;
      record.name = value.at("name").get<std::string>();
      record.owner_uid = value.at("owner_uid").get<std::uint32_t>();
      for (const auto& g : value.at("grants")) {
        const auto access = bridge::access_from_string(g.at("access").get<std::string>());
        if (access && *access != bridge::Access::none) {
          record.grants[g.at("uid").get<std::uint32_t>()] = *access;
        }
      }
      records[std::stoull(key)] = std::move(record);
    } catch (const std::exception&) {
      log_warn("ignoring the unreadable record " + key + " in " + path_);
    }
  }
  return records;
}

void AccessStore::save(const Records& records) const {
  nlohmann::json state = nlohmann::json::object();
  for (const auto& [id, record] : records) {
    nlohmann::json grants = nlohmann::json::array();
    for (const auto& [uid, access] : record.grants) {
      grants.push_back({{"uid", uid}, {"access", bridge::to_string(access)}});
    }
    state[std::to_string(id)] = {
        {"name", record.name}, {"owner_uid", record.owner_uid}, {"grants", std::move(grants)}};
  }
  const std::string text = state.dump(1) + "\n";
  // The temporary file is created exclusively and private from the start,
  // whatever the umask: nobody else may hold it open.
  const std::string temp = path_ + ".tmp";
  ::unlink(temp.c_str());
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  bool ok = static_cast<bool>(fd) && ::fchmod(fd.get(), 0600) == 0 && write_all(fd.get(), text) &&
            ::fsync(fd.get()) == 0;
  fd.reset();
  ok = ok && std::rename(temp.c_str(), path_.c_str()) == 0;
  if (!ok) {
    log_warn("cannot write " + path_ + " (" + std::strerror(errno) +
             "); owners and grants will not survive a restart");
    ::unlink(temp.c_str());
    return;
  }
  // The rename itself is durable only once the directory is.
  UniqueFd dir(::open(directory_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
}

void AccessStore::remove() const {
  ::unlink(path_.c_str());
}

}  // namespace bridged
