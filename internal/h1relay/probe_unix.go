//go:build unix

package h1relay

import (
	"net"
	"syscall"
)

// peekIdle looks at an idle connection without waiting and without taking
// anything from it (MSG_PEEK | MSG_DONTWAIT): it is dead if the peer
// closed it or wrote to it. ok is false for a connection that is not a
// socket, which alive checks another way.
func peekIdle(c net.Conn) (dead, ok bool) {
	sc, isSock := c.(syscall.Conn)
	if !isSock {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var (
		b    [1]byte
		n    int
		rerr error
	)
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // one look, never a wait
	}); err != nil {
		return true, true
	}
	if rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK {
		return false, true // open, and nothing to read
	}
	_ = n // n > 0: stray bytes; n == 0: closed; or an error
	return true, true
}
