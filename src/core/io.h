/*
 * Reading a file region whole: pread(2) returns short counts (signals,
 * large reads), and every reader of spool files wants all it asked for.
 */
#ifndef POSTERN_CORE_IO_H
#define POSTERN_CORE_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * pread until len bytes, the end of the file or an error, retrying EINTR:
 * the count read (less than len only at the end of the file), or -1 with
 * errno when nothing could be read because of an error.
 */
ssize_t io_pread_full(int fd, void *buf, size_t len, uint64_t off);

#endif
