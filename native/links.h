/* What native/links.cc hands JavaScript: the interfaces of one network namespace as rtnetlink
 * reports them, and the entries created and deleted in watched directories (inotify). A batch is
 * an array of one of these fixed-size records; capture/links-layout.ts mirrors them and
 * test/capture/links-layout.test.ts checks it against this header as the C compiler lays it out. */
#ifndef NETTRAIL_LINKS_H
#define NETTRAIL_LINKS_H

#include <linux/types.h>

#define NT_IFNAME_BYTES 16     /* IFNAMSIZ */
#define NT_DIR_NAME_BYTES 256  /* NAME_MAX + 1 */

/* nt_link_event.kind */
#define NT_LINK_NEW 1       /* RTM_NEWLINK: listed by a dump, appeared, or changed */
#define NT_LINK_DEL 2       /* RTM_DELLINK: gone (deleted, or moved to another namespace) */
#define NT_LINK_DUMP_DONE 3 /* the dump ended: every interface there is was listed before this */
/* The replies of a new dump follow, since the last was inconsistent (NLM_F_DUMP_INTR) or failed:
 * interfaces that no NT_LINK_NEW between this and its NT_LINK_DUMP_DONE reports are gone. */
#define NT_LINK_RESYNC 4
/* As NT_LINK_RESYNC, since notifications were lost: the socket's buffer overflowed (ENOBUFS). */
#define NT_LINK_OVERFLOW 5

/* nt_link_event.link_type values the capture tells apart (ARPHRD_*; links.cc checks them against <linux/if_arp.h>) */
#define NT_ARPHRD_ETHER 1
#define NT_ARPHRD_LOOPBACK 772
#define NT_ARPHRD_NONE 0xFFFE /* no link-layer header: tun, wireguard */

/* nt_link_event.flags bits (IFF_*; links.cc checks them against <linux/if.h>) */
#define NT_IFF_UP 0x1

/* nt_dir_event.kind */
#define NT_DIR_CREATED 1  /* IN_CREATE, IN_MOVED_TO: name appeared in the directory */
#define NT_DIR_DELETED 2  /* IN_DELETE, IN_MOVED_FROM: name left it */
#define NT_DIR_GONE 3     /* IN_DELETE_SELF, IN_MOVE_SELF, IN_UNMOUNT: the directory itself went; name is empty */
#define NT_DIR_OVERFLOW 4 /* IN_Q_OVERFLOW: events were lost, in any watched directory; watch is -1 */

/* One interface of the namespace the watcher was opened in, or a marker (kind). */
struct nt_link_event {
  __u32 kind;
  __u32 ifindex;
  __u32 flags;     /* ifi_flags: IFF_UP, IFF_LOWER_UP, ... */
  __u16 link_type; /* ifi_type: ARPHRD_* */
  __u16 pad;
  char name[NT_IFNAME_BYTES]; /* IFLA_IFNAME, NUL-terminated */
};

/* One entry of a watched directory, or a marker (kind). */
struct nt_dir_event {
  __s32 watch; /* the id watch() returned */
  __u32 kind;
  char name[NT_DIR_NAME_BYTES]; /* NUL-terminated */
};

#ifdef __cplusplus
#include <napi.h>

namespace nettrail {
// Adds the classes LinkWatcher and DirectoryWatcher to the addon's exports.
void InitLinks(Napi::Env env, Napi::Object exports);
}  // namespace nettrail
#endif

#endif /* NETTRAIL_LINKS_H */
