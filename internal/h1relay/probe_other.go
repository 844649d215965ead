//go:build !unix

package h1relay

import "net"

// peekIdle has no way to look at a socket without reading it here: alive
// reads with a short deadline instead.
func peekIdle(net.Conn) (dead, ok bool) { return false, false }
